"""The request class: Flask's, with the body limit enforced on chunked uploads too.

With `Content-Length`, Werkzeug refuses a body over `MAX_CONTENT_LENGTH` before reading it. A chunked
upload (no `Content-Length`: streaming clients, `requests` with a generator body) has its stream capped
at the limit instead, and reading it whole (`get_data()`, `get_json()`) quietly stops there: an image
over the limit would arrive truncated and be reported as a corrupt image. Here reading it whole checks
that nothing follows the limit and answers 413 otherwise.
"""

from __future__ import annotations

from typing import IO

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream


class _CappedStream(LimitedStream):
    """A stream capped at the body limit whose `readall` fails if the body goes on past the cap."""

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted and self._stream.read(1):
            raise RequestEntityTooLarge()
        return data


class BoundedRequest(Request):
    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        if self.content_length is None and limit is not None and "wsgi.input_terminated" in self.environ:
            return _CappedStream(self.environ["wsgi.input"], limit, is_max=True)  # type: ignore[return-value]
        return super().stream
