"""Model admin API: list versions and their states; pin, unpin and roll back.

    GET    /v1/models                     open: every version, state and reason, gate results, workers
    POST   /v1/models/<version>/activate  pin a version (every worker moves to it)
    DELETE /v1/models/pin                 remove the pin (back to "highest approved version wins")
    POST   /v1/models/rollback            pin the highest eligible version below the serving one

Mutating calls need `Authorization: Bearer <OCR_ADMIN_TOKEN>`: no header or a malformed one is a 401,
a wrong token a 403 (compared in constant time), and with no token configured they are refused with
403 `admin_disabled` - an admin API that is open by default is a hole nobody notices. Every mutating
call, refused or not, goes to the audit log. Calls answer 202: the pin is written at once, the
workers load and switch in the background (watch `GET /v1/models`).
"""

from __future__ import annotations

import hmac
from typing import NoReturn

from flask import Blueprint, Response, jsonify, request

from server.http.context import current_context
from server.http.errors import ApiError
from server.lifecycle.pins import Pin
from server.lifecycle.policy import rollback_target
from server.lifecycle.status import models_view
from server.repository.candidates import Readiness
from server.repository.layout import VersionNameError, parse_version

bp = Blueprint("models", __name__)


def _actor() -> str:
    return f"api:{request.remote_addr or 'unknown'}"


def _refuse(action: str, version: str | None, status: int, code: str, message: str, result: str = "refused",
            **details: object) -> NoReturn:
    current_context().controller.audit.append(action, actor=_actor(), version=version, result=result,
                                              reason=message)
    error = ApiError(status, code, message, **details)
    if status == 401:
        error.headers["WWW-Authenticate"] = 'Bearer realm="ocr-admin"'
    raise error


def _require_admin(action: str, version: str | None = None) -> None:
    token = current_context().settings.admin_token
    if not token:
        _refuse(action, version, 403, "admin_disabled",
                "the admin API is disabled: set OCR_ADMIN_TOKEN on the server to enable it")
    header = request.headers.get("Authorization")
    if header is None:
        _refuse(action, version, 401, "unauthorized", "this call needs an 'Authorization: Bearer <token>' header",
                result="denied")
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials or any(c.isspace() for c in credentials):
        _refuse(action, version, 401, "invalid_authorization", "the Authorization header must be 'Bearer <token>'",
                result="denied")
    if not hmac.compare_digest(credentials.encode("utf-8"), token.encode("utf-8")):
        _refuse(action, version, 403, "forbidden", "the bearer token is not valid", result="denied")


def _write_pin(version: str, action: str, **details: object) -> Pin:
    try:
        return current_context().controller.pins.write(version, _actor(), action=action)
    except OSError as exc:  # e.g. a read-only state directory: the workers could not learn of the pin
        _refuse(action, version, 503, "state_unavailable", f"cannot write the pin file: {exc.strerror or exc}",
                **details)


@bp.get("/v1/models")
def list_models() -> Response:
    return jsonify(models_view(current_context().controller))


@bp.post("/v1/models/<version>/activate")
def activate(version: str) -> tuple[Response, int]:
    _require_admin("pin", version)
    controller = current_context().controller
    try:
        parse_version(version)
    except VersionNameError as exc:
        _refuse("pin", version, 400, "invalid_version", str(exc))
    inspection = controller.scan_now().versions.get(version)
    if inspection is None:
        _refuse("pin", version, 404, "version_not_found", f"version {version} is not in {controller.repo.pipeline_dir}")
    verdict = controller.verdicts.current(version, inspection.fingerprint)
    if inspection.readiness is Readiness.REJECTED or (verdict is not None and not verdict.approved):
        reason = inspection.reason if inspection.readiness is Readiness.REJECTED else verdict.reason  # type: ignore[union-attr]
        _refuse("pin", version, 409, "version_rejected", f"version {version} is rejected: {reason}")
    if inspection.readiness is Readiness.PENDING:
        _refuse("pin", version, 409, "version_not_ready", f"version {version} is not ready: {inspection.reason}")
    pin = _write_pin(version, "pin")
    controller.audit.append("pin", actor=_actor(), version=version)
    controller.trigger("pin")
    return jsonify({"pin": pin.__dict__, "message": f"pinned {version}; workers switch once it is loaded"}), 202


@bp.delete("/v1/models/pin")
def unpin() -> Response:
    _require_admin("unpin")
    controller = current_context().controller
    try:
        before = controller.pins.clear()
    except OSError as exc:
        _refuse("unpin", None, 503, "state_unavailable", f"cannot remove the pin file: {exc.strerror or exc}")
    removed = before.pin.version if before.pin else None
    controller.audit.append("unpin", actor=_actor(), version=removed, reason="" if removed else "no pin was set")
    controller.trigger("unpin")
    return jsonify({"pin": None, "removed": removed})


@bp.post("/v1/models/rollback")
def rollback() -> tuple[Response, int]:
    _require_admin("rollback")
    controller = current_context().controller
    served = [worker.serving for worker in controller.board.live() if worker.serving]
    current, target = rollback_target(controller.scan_now(), controller.verdicts.all(), controller.pins.read().pin,
                                      served)
    if target is None:
        _refuse("rollback", current, 409, "no_rollback_target",
                f"no eligible version below {current}" if current else "no version serves")
    pin = _write_pin(target, "rollback", previous=current)
    controller.audit.append("rollback", actor=_actor(), version=target, previous=current)
    controller.trigger("rollback")
    return jsonify({"pin": pin.__dict__, "from": current,
                    "message": f"pinned {target} (rolled back from {current}); workers switch once it is loaded"}), 202
