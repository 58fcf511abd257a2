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

from server.config import Settings
from server.http import instrumentation
from server.http.api import audit, feedback, health, metrics, models, ocr, openapi, whoami
from server.http.console import pages as console  # its routes and the console's views, on one blueprint
from server.http.context import EXTENSION_KEY, ServerContext, current_context
from server.http.errors import register_error_handlers
from server.http.request import BoundedRequest

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _assign_request_id() -> None:
    """Honour a sane client-supplied X-Request-Id (for tracing across services), else make one."""
    supplied = request.headers.get("X-Request-Id", "")
    g.request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex


def _tag_response(response: Response) -> Response:
    """Every response (errors too) names its request and the model version: the one that served it
    (`instrumentation.model_chosen`; it may differ from the active one during a swap), else the one
    active now; absent only while no version has loaded."""
    response.headers["X-Request-Id"] = g.get("request_id", "")
    version = g.get("model_version")
    if version is None:
        active = current_context().lifecycle.active
        version = active.version if active is not None else None
    if version is not None:
        response.headers["X-Model-Version"] = version
    return response


def create_app(settings: Settings | None = None, context: ServerContext | None = None, start: bool = True) -> Flask:
    """Build the app. `context` lets tests pass pre-built services; `start=False` skips model loading."""
    settings = settings or Settings.from_env()
    context = context or ServerContext.build(settings)
    logging.getLogger("server").setLevel(settings.log_level.upper())

    app = Flask("server")
    app.request_class = BoundedRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION_KEY] = context
    app.before_request(_assign_request_id)
    app.after_request(_tag_response)
    register_error_handlers(app)
    instrumentation.install(app, settings)
    app.register_blueprint(health.bp)
    app.register_blueprint(ocr.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(models.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(whoami.bp)
    if settings.console:
        app.register_blueprint(console.bp)

    if start:
        context.lifecycle.start()
    return app
