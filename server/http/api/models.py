"""Model admin API: list versions and their states, describe one; pin, unpin, roll back; request a promotion.

    GET    /v1/models                              every version, state and reason, gate results, workers
    GET    /v1/models/<version>                    one version: its card, its signature (checked now), gate,
                                                   verdict and promotion requests
    POST   /v1/models/<version>/activate           pin a version (every worker moves to it)
    POST   /v1/models/<version>/request-promotion  ask for a version to be activated (four-eyes rule)
    DELETE /v1/models/pin                          remove the pin (back to "highest approved version wins")
    POST   /v1/models/rollback                     pin the highest eligible version below the serving one
                                                   (during a bake: back to the previous version, no load)
    POST   /v1/models/<version>/canary             {"percent": P, "shadow_percent": S}: P % of clients to it,
                                                   S % of the others also read by it, beside the stable one
    POST   /v1/models/<version>/promote            end its canary: it serves everywhere (pinned)
    POST   /v1/models/<version>/abort              end its canary: rejected as rolled_back, stable again
    GET    /v1/models/<version>/report             its canary's A/B report (JSON, or ?format=md)

Every call is authorised first (`server.http.auth`, the roles of `server.governance.roles`); refusals
are audited there, and the commands (`server.lifecycle.commands`) record their own outcome with the
caller's identity, roles, address and request id. Mutating calls answer 202 (200 for unpin): the pin
is written at once, the workers load and switch in the background (watch `GET /v1/models`).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from server.governance.roles import Action
from server.http.auth import authorize
from server.http.context import current_context
from server.http.errors import ApiError
from server.lifecycle import Rollout, report_markdown

bp = Blueprint("models", __name__)


@bp.get("/v1/models")
def list_models() -> Response:
    authorize(Action.READ_MODELS)
    return jsonify(current_context().lifecycle.view())


@bp.get("/v1/models/<version>")
def describe(version: str) -> Response:
    authorize(Action.READ_MODELS, version=version)
    return jsonify(current_context().lifecycle.describe(version))


@bp.post("/v1/models/<version>/activate")
def activate(version: str) -> tuple[Response, int]:
    caller = authorize(Action.ACTIVATE, "pin", version, four_eyes=True)
    lifecycle = current_context().lifecycle
    requested = next((r for r in reversed(lifecycle.promotion_requests()) if r.version == version), None)
    if requested is not None:
        caller["requested_by"] = requested.requested_by
    pin = lifecycle.commands.pin(version, **caller)
    return jsonify({"pin": pin.__dict__, "message": f"pinned {version}; workers switch once it is loaded"}), 202


@bp.post("/v1/models/<version>/request-promotion")
def request_promotion(version: str) -> tuple[Response, int]:
    caller = authorize(Action.REQUEST_PROMOTION, "request_promotion", version)
    promotion = current_context().lifecycle.commands.request_promotion(version, **caller)
    return jsonify({"request": promotion.__dict__,
                    "message": f"promotion of {version} requested; a releaser activates it"}), 201


@bp.delete("/v1/models/pin")
def unpin() -> Response:
    caller = authorize(Action.UNPIN, "unpin")
    removed = current_context().lifecycle.commands.unpin(**caller)
    return jsonify({"pin": None, "removed": removed})


@bp.post("/v1/models/rollback")
def rollback() -> tuple[Response, int]:
    caller = authorize(Action.ROLLBACK, "rollback")
    lifecycle = current_context().lifecycle
    baked = lifecycle.rollouts.rollback_bake(**caller)
    if baked is not None:
        ended, pin_now = baked
        return jsonify({"pin": pin_now.__dict__ if pin_now else None, "from": ended.candidate,
                        "message": f"rolled {ended.candidate} back during its bake: every client reads with "
                                   f"{ended.stable} again, already loaded"}), 202
    pin, current = lifecycle.commands.rollback(**caller)
    return jsonify({"pin": pin.__dict__, "from": current,
                    "message": f"pinned {pin.version} (rolled back from {current}); workers switch once it is loaded"}), 202


def _json_body(allowed: set[str]) -> dict[str, Any]:
    """The call's JSON object (an empty body is an empty object), with no keys but `allowed`."""
    if not request.get_data(cache=True):
        return {}
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, "invalid_body", f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    return body


@bp.post("/v1/models/<version>/canary")
def canary(version: str) -> tuple[Response, int]:
    caller = authorize(Action.START_CANARY, "canary", version)
    body = _json_body({"percent", "shadow_percent"})
    rollout = current_context().lifecycle.rollouts.canary(version, body.get("percent", 0), shadow_percent=body.get(
        "shadow_percent", 0), **caller)
    return jsonify({"rollout": rollout.__dict__,
                    "message": f"{rollout.percent:g}% of clients go to {version}, {rollout.shadow_percent:g}% of the "
                               "other requests are also read by it, once the workers have loaded it"}), 202


@bp.post("/v1/models/<version>/promote")
def promote(version: str) -> tuple[Response, int]:
    caller = authorize(Action.PROMOTE, "promote", version, four_eyes=True)
    promoted = current_context().lifecycle.rollouts.promote(version, **caller)
    if isinstance(promoted, Rollout):
        return jsonify({"pin": None, "rollout": promoted.__dict__,
                        "message": f"promoted {version}: every client reads with it, the previous version stays "
                                   f"loaded until {promoted.bake_until} (a rollback needs no load)"}), 202
    return jsonify({"pin": promoted.__dict__, "rollout": None,
                    "message": f"promoted {version}; every worker serves it once loaded"}), 202


@bp.post("/v1/models/<version>/abort")
def abort(version: str) -> Response:
    caller = authorize(Action.ABORT_CANARY, "abort", version)
    reason = _json_body({"reason"}).get("reason", "")
    if not isinstance(reason, str) or len(reason) > 1000:
        raise ApiError(400, "invalid_body", "'reason' must be a string of at most 1000 characters")
    rollout = current_context().lifecycle.rollouts.abort(version, reason or "no reason given", **caller)
    return jsonify({"rollout": None, "stable": rollout.stable,
                    "message": f"aborted the canary of {version}; {rollout.stable} serves every client"})


@bp.get("/v1/models/<version>/report")
def report(version: str) -> Response:
    authorize(Action.READ_REPORTS, version=version)
    form = request.args.get("format", "json")
    if form not in {"json", "md"} or set(request.args) - {"format"}:
        raise ApiError(400, "unknown_parameter", "the only parameter is format=json or format=md")
    found = current_context().lifecycle.report(version)
    if form == "md":
        return Response(report_markdown(found), mimetype="text/markdown")
    return jsonify(found)
