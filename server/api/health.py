"""Liveness and readiness: `/healthz` says the process answers, `/readyz` that a warmed model serves."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from server.context import current_context
from server.errors import error_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    ctx = current_context()
    model = ctx.manager.active
    if model is None:
        response = error_response(503, "not_ready", "no model version has finished loading and warming up")
        response.headers["Retry-After"] = "5"
        return response
    return jsonify({"status": "ready", "model": {"name": model.name, "version": model.version}})
