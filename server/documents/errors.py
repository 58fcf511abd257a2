"""What is wrong with a client's input, as data: the error every decoder of client documents raises.

It carries the HTTP status and the stable error code the API answers with, but no web framework:
decoding is also used by the quality gate and the benchmarks, and the HTTP layer maps these errors to
its JSON response in one place.
"""

from __future__ import annotations

import reprlib
from typing import Any

_SHOWN = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict = 80, 80, 2, 4, 4


def shown(value: Any) -> str:
    """A client's value as an error message quotes it: its repr, cut short (a 10 MB option is not
    echoed back, and a deeply nested one is not walked to the bottom)."""
    return _SHOWN.repr(value)


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
