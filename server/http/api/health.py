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
    lifecycle = current_context().lifecycle
    model = lifecycle.active
    if model is None:
        rejected = lifecycle.rejected_versions()
        details = {"rejected_versions": rejected} if rejected else {}
        response = error_response(503, "model_not_ready",
                                  "no model version has finished loading and warming up", **details)
        response.headers["Retry-After"] = "5"
        return response
    return jsonify({"status": "ready", "model": {"name": model.name, "version": model.version}})
