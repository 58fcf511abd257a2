"""The Flask application factory.

`create_app` builds everything a worker needs from a `Settings` object and starts loading the model in
the background. Gunicorn calls it in each worker after fork (the master never imports Paddle), so no
model, thread or runtime state is created at import time.
"""

from __future__ import annotations

import logging
import re
import uuid

from flask import Flask, Response, g, request

from server.api import health, models, ocr
from server.config import Settings
from server.context import EXTENSION_KEY, ServerContext
from server.errors import register_error_handlers

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _assign_request_id() -> None:
    """Honour a sane client-supplied X-Request-Id (for tracing across services), else make one."""
    supplied = request.headers.get("X-Request-Id", "")
    g.request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex


def _tag_response(response: Response) -> Response:
    response.headers["X-Request-Id"] = g.get("request_id", "")
    return response


def create_app(settings: Settings | None = None, context: ServerContext | None = None, start: bool = True) -> Flask:
    """Build the app. `context` lets tests pass pre-built services; `start=False` skips model loading."""
    settings = settings or Settings.from_env()
    context = context or ServerContext.build(settings)
    logging.getLogger("server").setLevel(settings.log_level.upper())

    app = Flask("server")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION_KEY] = context
    app.before_request(_assign_request_id)
    app.after_request(_tag_response)
    register_error_handlers(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(ocr.bp)
    app.register_blueprint(models.bp)

    if start:
        context.controller.start()
    return app
