"""The one error every decoder of client documents raises: what is wrong with the input, as data.

It carries the HTTP status and the stable error code the API answers with, but no web framework:
decoding is also used by the quality gate and the benchmarks, and the HTTP layer maps this error to its
JSON response in one place.
"""

from __future__ import annotations

from typing import Any


class DecodeError(Exception):
    """Input that cannot be read: `status` (4xx), stable `code`, human `message`, optional `details`."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
