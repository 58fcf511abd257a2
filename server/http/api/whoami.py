"""`GET /v1/whoami`: who the caller's credential proves, with which roles, and what it may do.

The console asks this to know which buttons to offer (a viewer sees no pin button); any client may ask
it about its own credential. Every permission is decided by the same `Authorizer.decide` the endpoints
themselves call, so the answer cannot drift from what they would allow. Without an `Authorization`
header the answer is the anonymous identity; a credential that is not valid is refused as the admin
API refuses it (401 `invalid_token`, audited as `whoami`), so a mistyped key is said at once.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from server.governance.access import IdentityKind
from server.governance.roles import Action
from server.http.auth import refuse
from server.http.context import current_context

bp = Blueprint("whoami", __name__)


@bp.get("/v1/whoami")
def whoami() -> Response:
    authorizer = current_context().authorizer
    header = request.headers.get("Authorization")
    decisions = {action: authorizer.decide(action, header) for action in Action}
    if header is not None:
        invalid = next((d for d in decisions.values() if d.status == 401), None)
        if invalid is not None:
            refuse(invalid, "whoami", None)
    proven = next((d.identity for d in decisions.values()
                   if d.identity is not None and d.identity.kind is not IdentityKind.ANONYMOUS), None)
    roles = proven.roles if proven else authorizer.anonymous_roles(authorizer.policy)
    return jsonify({
        "actor": proven.actor if proven else "anonymous",
        "kind": proven.kind.value if proven else IdentityKind.ANONYMOUS.value,
        "roles": sorted(role.value for role in roles),
        "permissions": sorted(action.value for action, decision in decisions.items() if decision.allowed),
        "admin_enabled": not any(d.code == "admin_disabled" for d in decisions.values()),
    })
