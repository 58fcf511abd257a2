"""The one error every document and image decoder raises.

Decoders sit below the HTTP layer and must not know about Flask; the HTTP layer maps a `DecodeError`
to its JSON error response (`{"error": code, "message": message, "details": details}` with `status`).
"""

from __future__ import annotations

from typing import Any


class DecodeError(Exception):
    """Input that cannot be read: an HTTP status (always 4xx), a stable code, a message for people."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def __repr__(self) -> str:
        return f"DecodeError({self.status}, {self.code!r}, {self.message!r}, **{self.details!r})"
