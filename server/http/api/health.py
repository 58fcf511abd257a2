"""Liveness and readiness: `/healthz` says the process answers, `/readyz` that a warmed model serves.

A load balancer or Kubernetes routes traffic on `/readyz` and restarts on `/healthz`, so `/healthz`
never depends on the model: a worker still loading its first version is alive, just not ready.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from server.http.context import current_context
from server.http.errors import error_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    ctx = current_context()
    model = ctx.manager.active
    if model is None:
        rejected = {s.version: s.reason for s in ctx.controller.statuses() if s.state == "rejected"}
        details = {"rejected_versions": rejected} if rejected else {}
        response = error_response(503, "model_not_ready",
                                  "no model version has finished loading and warming up", **details)
        response.headers["Retry-After"] = "5"
        return response
    return jsonify({"status": "ready", "model": {"name": model.name, "version": model.version}})
