"""Roles, actions, and the one table of which role may do what.

Deny by default: an action is allowed to a role only where the table says so, and an action missing
from the table is allowed to nobody (a test checks that every action has an entry). `admin` may do
everything. Roles do not imply each other: a releaser who should also read the audit log gets
`auditor` as well, so that reading the table tells the whole story.

Separation of duties follows the MLflow complaint (mlflow#24742): whoever may publish a version
(`submitter`) may not make it serve; only a `releaser` moves what production serves.
"""

from __future__ import annotations

from enum import Enum


class Role(str, Enum):
    VIEWER = "viewer"  # read models, their states and reports
    SUBMITTER = "submitter"  # publish (upload) a candidate version, request its promotion
    RELEASER = "releaser"  # change what serves: activate, rollback, unpin, promote, canary, abort
    AUDITOR = "auditor"  # read the audit log through the API
    CLIENT = "client"  # call the OCR API, when OCR_INFERENCE_AUTH requires a role for it
    ADMIN = "admin"  # everything


class Action(str, Enum):
    READ_MODELS = "models.read"
    READ_REPORTS = "reports.read"
    PUBLISH = "models.publish"
    REQUEST_PROMOTION = "promotion.request"
    ACTIVATE = "models.activate"
    ROLLBACK = "models.rollback"
    UNPIN = "models.unpin"
    PROMOTE = "promotion.approve"
    START_CANARY = "canary.start"
    ABORT_CANARY = "canary.abort"
    READ_AUDIT = "audit.read"
    INFER = "ocr.infer"
    FEEDBACK = "ocr.feedback"


_READERS = frozenset({Role.VIEWER, Role.SUBMITTER, Role.RELEASER, Role.AUDITOR})
_RELEASE = frozenset({Role.RELEASER})

PERMISSIONS: dict[Action, frozenset[Role]] = {
    Action.READ_MODELS: _READERS,
    Action.READ_REPORTS: _READERS,
    Action.PUBLISH: frozenset({Role.SUBMITTER}),
    Action.REQUEST_PROMOTION: frozenset({Role.SUBMITTER}),
    Action.ACTIVATE: _RELEASE,
    Action.ROLLBACK: _RELEASE,
    Action.UNPIN: _RELEASE,
    Action.PROMOTE: _RELEASE,
    Action.START_CANARY: _RELEASE,
    Action.ABORT_CANARY: _RELEASE,
    Action.READ_AUDIT: frozenset({Role.AUDITOR}),
    Action.INFER: frozenset({Role.CLIENT}),
    Action.FEEDBACK: frozenset({Role.CLIENT}),
}


def allowed(action: Action, roles: frozenset[Role]) -> bool:
    return Role.ADMIN in roles or bool(PERMISSIONS.get(action, frozenset()) & roles)


def parse_roles(names: object, where: str) -> frozenset[Role]:
    """Role names from a policy file or token; ValueError naming `where` for an unknown one."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{where}: roles must be a list of role names ({', '.join(r.value for r in Role)})")
    unknown = sorted(set(names) - {r.value for r in Role})
    if unknown:
        raise ValueError(f"{where}: unknown roles {unknown} (known: {', '.join(r.value for r in Role)})")
    return frozenset(Role(n) for n in names)
