"""What is wrong with a client's input, as data: the error every decoder of client documents raises.

It carries the HTTP status and the stable error code the API answers with, but no web framework:
decoding is also used by the quality gate and the benchmarks, and the HTTP layer maps these errors to
its JSON response in one place.
"""

from __future__ import annotations

from typing import Any


class InputError(Exception):
    """Input that cannot be used: `status` (4xx), stable `code`, human `message`, optional `details`."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers: dict[str, str] = {}  # protocol headers the answer needs (e.g. Retry-After)


class DecodeError(InputError):
    """A document or image that cannot be read."""
