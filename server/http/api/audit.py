"""`GET /v1/audit`: the audit log, newest first, a page at a time (role `auditor`).

    GET /v1/audit?limit=100&cursor=<next_cursor>&action=pin&actor=key:mlops&version=1.2.0

Answers `{"records": [...], "next_cursor": "..."}`; pass `next_cursor` back for the next (older) page,
until it is null. The cursor stays valid while new records arrive (`server.governance.audit.read_page`).
The records are the log's lines as written, `prev` and `hash` included, so a page can be checked
against a copy of the log or the SIEM's.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, jsonify, request

from server.governance.audit import read_page
from server.governance.roles import Action
from server.http.auth import authorize
from server.http.context import current_context
from server.http.errors import ApiError

bp = Blueprint("audit", __name__)

_PARAMETERS = ("limit", "cursor", "action", "actor", "version")
_LIMIT = re.compile(r"^[0-9]{1,4}$")


@bp.get("/v1/audit")
def audit() -> Response:
    authorize(Action.READ_AUDIT)
    unknown = sorted(set(request.args) - set(_PARAMETERS))
    if unknown:
        raise ApiError(400, "unknown_parameter", f"unknown parameter(s) {', '.join(unknown)}; known: "
                                                 f"{', '.join(_PARAMETERS)}")
    raw_limit = request.args.get("limit", "100")
    if not _LIMIT.match(raw_limit) or not 1 <= int(raw_limit) <= 1000:  # not isdigit(): "²" is a digit int() refuses
        raise ApiError(400, "invalid_limit", f"limit must be an integer from 1 to 1000, got {raw_limit!r}")
    try:
        page = read_page(current_context().audit.path, cursor=request.args.get("cursor"), limit=int(raw_limit),
                         action=request.args.get("action"), actor=request.args.get("actor"),
                         version=request.args.get("version"))
    except ValueError as exc:
        raise ApiError(400, "invalid_cursor", f"{exc}: use the next_cursor of a previous page") from None
    return jsonify({"records": page.records, "next_cursor": page.next_cursor})
