"""JSON errors: every failure the API reports has a stable `error` code and a human `message`.

Clients branch on the code; people read the message; support staff find the request in the logs by its
`request_id`. Bad input is always a 4xx from here, never a 500: the layers below raise their own
errors (`InputError`s such as `DecodeError` for documents, `Refused` for lifecycle commands), mapped to responses here, in one place. Errors raised by Flask and Werkzeug
themselves (unknown path, wrong method, body over the limit) get the same JSON shape and keep their
protocol headers (`Allow` on a 405).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

from server.documents.errors import InputError
from server.lifecycle import Refused

log = logging.getLogger(__name__)


class ApiError(InputError):
    """A client-facing failure found by the HTTP layer itself."""


def error_response(status: int, code: str, message: str, **details: Any) -> Response:
    body: dict[str, Any] = {"error": code, "message": message}
    if details:
        body["details"] = details
    if has_request_context() and "request_id" in g:
        body["request_id"] = g.request_id
    response = jsonify(body)
    response.status_code = status
    return response


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

# How a refused lifecycle command is answered.
_REFUSED_STATUS = {"invalid": 400, "not_found": 404, "conflict": 409, "unavailable": 503}

# Protocol headers of Werkzeug's exceptions worth keeping; its Content-Type (HTML) is not.
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def _too_large_message(app: Flask) -> str:
    """413 comes from the body limit, or from a multipart form over Werkzeug's form limits."""
    limit = app.config["MAX_CONTENT_LENGTH"]
    length = request.content_length
    if length is not None and limit is not None and length <= limit:
        return (f"the multipart form exceeds its limits (a non-file field over {app.config['MAX_FORM_MEMORY_SIZE']}"
                f" bytes, or over {app.config['MAX_FORM_PARTS']} parts); send images as file parts"
                " (curl -F image=@photo.jpg)")
    return f"request body exceeds the limit of {limit} bytes (OCR_MAX_BODY_BYTES)"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(InputError)
    def _input_error(exc: InputError) -> Response:
        response = error_response(exc.status, exc.code, exc.message, **exc.details)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(Refused)
    def _refused(exc: Refused) -> Response:
        return error_response(_REFUSED_STATUS[exc.kind], exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 413:
            message = _too_large_message(app)
        elif status == 404:
            message = f"no endpoint at {request.path}"
        elif status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        else:
            message = exc.description or exc.name
        response = error_response(status, _HTTP_CODES.get(status, "http_error"), message)
        for name, value in exc.get_headers():
            if name in _KEPT_HEADERS:
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
