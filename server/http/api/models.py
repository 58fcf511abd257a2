"""Model admin API: list versions and their states; pin, unpin and roll back.

    GET    /v1/models                     open: every version, state and reason, gate results, workers
    POST   /v1/models/<version>/activate  pin a version (every worker moves to it)
    DELETE /v1/models/pin                 remove the pin (back to "highest approved version wins")
    POST   /v1/models/rollback            pin the highest eligible version below the serving one

Mutating calls need `Authorization: Bearer <OCR_ADMIN_TOKEN>`: no header or a malformed one is a 401,
a wrong token a 403 (compared in constant time), and with no token configured they are refused with
403 `admin_disabled` - an admin API that is open by default is a hole nobody notices. Every mutating
call, refused or not, goes to the audit log (the commands in `server.lifecycle.commands` record their
own outcome and refusals, answered as `server.http.errors` maps them; refusals of the credentials
are recorded here). Calls answer 202: the pin is written at
once, the workers load and switch in the background (watch `GET /v1/models`).
"""

from __future__ import annotations

import hmac
from typing import NoReturn

from flask import Blueprint, Response, jsonify, request

from server.http.context import current_context
from server.http.errors import ApiError

bp = Blueprint("models", __name__)


def _actor() -> str:
    return f"api:{request.remote_addr or 'unknown'}"


def _deny(action: str, version: str | None, status: int, code: str, message: str, result: str = "denied") -> NoReturn:
    current_context().audit.append(action, actor=_actor(), version=version, result=result, reason=message)
    error = ApiError(status, code, message)
    if status == 401:
        error.headers["WWW-Authenticate"] = 'Bearer realm="ocr-admin"'
    raise error


def _require_admin(action: str, version: str | None = None) -> None:
    token = current_context().settings.admin_token
    if not token:
        _deny(action, version, 403, "admin_disabled",
              "the admin API is disabled: set OCR_ADMIN_TOKEN on the server to enable it", result="refused")
    header = request.headers.get("Authorization")
    if header is None:
        _deny(action, version, 401, "unauthorized", "this call needs an 'Authorization: Bearer <token>' header")
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials or any(c.isspace() for c in credentials):
        _deny(action, version, 401, "invalid_authorization", "the Authorization header must be 'Bearer <token>'")
    if not hmac.compare_digest(credentials.encode("utf-8"), token.encode("utf-8")):
        _deny(action, version, 403, "forbidden", "the bearer token is not valid")


@bp.get("/v1/models")
def list_models() -> Response:
    return jsonify(current_context().lifecycle.view())


@bp.post("/v1/models/<version>/activate")
def activate(version: str) -> tuple[Response, int]:
    _require_admin("pin", version)
    pin = current_context().lifecycle.commands.pin(version, _actor())
    return jsonify({"pin": pin.__dict__, "message": f"pinned {version}; workers switch once it is loaded"}), 202


@bp.delete("/v1/models/pin")
def unpin() -> Response:
    _require_admin("unpin")
    removed = current_context().lifecycle.commands.unpin(_actor())
    return jsonify({"pin": None, "removed": removed})


@bp.post("/v1/models/rollback")
def rollback() -> tuple[Response, int]:
    _require_admin("rollback")
    pin, current = current_context().lifecycle.commands.rollback(_actor())
    return jsonify({"pin": pin.__dict__, "from": current,
                    "message": f"pinned {pin.version} (rolled back from {current}); workers switch once it is loaded"}), 202
