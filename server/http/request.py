"""The request class: Flask's, with the body limit enforced on chunked uploads too.

With `Content-Length`, Werkzeug refuses a body over `MAX_CONTENT_LENGTH` before reading it. A chunked
upload (no `Content-Length`: streaming clients, `requests` with a generator body) has its stream capped
at the limit instead, and reading it whole (`get_data()`, `get_json()`) quietly stops there: an image
over the limit would arrive truncated and be reported as a corrupt image. Here reading it whole checks
that nothing follows the limit and answers 413 otherwise.

JSON bodies are parsed with a depth limit: no request of this API nests deeper than a few levels, and
a deeply nested one (`[[[[...]]]]`) made the parser raise RecursionError, answered 500; one just under
the interpreter's limit parsed, then broke whatever walked it (a `repr` in an error message). Both are
400 `invalid_json` here, before any handler sees the body.

A body that does not arrive in time (the deadline OCR_BODY_TIMEOUT_S of `gunicorn_config.pre_request`)
is 408 `body_timeout`: Werkzeug would report the timeout as a disconnected client (400), which it is not.
"""

from __future__ import annotations

from typing import IO, Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream

from server.http.errors import ApiError

# The deepest a JSON body may nest (an OCR request nests 2 levels: {"images": [...]}).
MAX_JSON_DEPTH = 32


class _StallGuard:
    """The WSGI input, with a read that timed out raised as 408 `body_timeout` (not an OSError, which
    Werkzeug's stream would take for a disconnect)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def _guarded(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._raw, method)(*args)
        except TimeoutError:
            raise ApiError(408, "body_timeout", "the request body did not arrive in time (OCR_BODY_TIMEOUT_S); "
                           "send it at once, or through a proxy that buffers uploads") from None

    def read(self, *args: Any) -> bytes:
        return self._guarded("read", *args)

    def readline(self, *args: Any) -> bytes:
        return self._guarded("readline", *args)


class _CappedStream(LimitedStream):
    """A stream capped at the body limit whose `readall` fails if the body goes on past the cap."""

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted and self._stream.read(1):
            raise RequestEntityTooLarge()
        return data


def _too_deep(value: Any, limit: int) -> bool:
    """Whether `value` nests more than `limit` containers deep (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _nested_too_deep() -> ApiError:
    return ApiError(400, "invalid_json", f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")


class BoundedRequest(Request):
    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        """Werkzeug's, refusing a body nested deeper than MAX_JSON_DEPTH with 400 `invalid_json`."""
        try:
            value = super().get_json(force=force, silent=silent, cache=cache)
        except RecursionError:
            raise _nested_too_deep() from None
        if _too_deep(value, MAX_JSON_DEPTH):
            raise _nested_too_deep()
        return value

    @cached_property
    def stream(self) -> IO[bytes]:
        if "wsgi.input" in self.environ:
            self.environ["wsgi.input"] = _StallGuard(self.environ["wsgi.input"])
        limit = self.max_content_length
        if self.content_length is None and limit is not None and "wsgi.input_terminated" in self.environ:
            return _CappedStream(self.environ["wsgi.input"], limit, is_max=True)  # type: ignore[return-value]
        return super().stream
