"""Who may make this call: the one check every endpoint but the health checks and `/metrics` makes first.

`authorize(permission)` asks the worker's `Authorizer` (`server.governance.access`: the admin token, API
keys and JWTs of the access policy, deny by default) about the request's `Authorization` header. A
refused call is answered here - 401 with a `WWW-Authenticate` challenge, or 403 - and recorded in the
audit log with who asked (identity, roles), from where (address), for what (the action it would have
recorded, the version) and the request id. An allowed call gets back the audit fields of its caller,
for the command it runs to record with its own outcome.

With `four_eyes` (an activation) and the policy's `four_eyes: true`, the caller must not be the one
who made the latest promotion request for the version (`Lifecycle.promotion_requests`).

Allowed reads (the listing, the audit log) are not audited: the log records what changed and what was
refused, not every poll of a dashboard.
"""

from __future__ import annotations

from typing import Any, NoReturn

from flask import g, request

from server.governance.access import Decision
from server.governance.roles import Action
from server.http.context import current_context
from server.http.errors import ApiError


def _request_fields() -> dict[str, Any]:
    return {"address": request.remote_addr, "request_id": g.get("request_id")}


def refuse(decision: Decision, event: str, version: str | None) -> NoReturn:
    """Answer a refused decision (401 with its challenge, or 403) and record it in the audit log."""
    current_context().audit.append(event, version=version, permission=decision.action.value, code=decision.code,
                                   **_request_fields(), **decision.audit_fields())
    error = ApiError(decision.status, decision.code, decision.reason)
    if decision.www_authenticate:
        error.headers["WWW-Authenticate"] = decision.www_authenticate
    raise error


def authorize(permission: Action, event: str | None = None, version: str | None = None,
              four_eyes: bool = False) -> dict[str, Any]:
    """Allow the call, or raise the ApiError that answers it (audited as `event`, default the
    permission's name). Returns the caller's audit fields: actor, roles, address, request_id,
    policy_digest."""
    ctx = current_context()
    decision = ctx.authorizer.decide(permission, request.headers.get("Authorization"))
    if four_eyes and version is not None:
        decision = ctx.authorizer.check_four_eyes(decision, ctx.lifecycle.promotion_requests(), version)
    if not decision.allowed:
        refuse(decision, event or permission.value, version)
    fields = {**decision.audit_fields(), **_request_fields()}
    del fields["result"], fields["reason"]  # the command records its own outcome
    return {name: value for name, value in fields.items() if value is not None}
