"""Authenticate a request's credentials and authorise one action: a typed `Decision`.

The HTTP layer passes the action and the `Authorization` header; the decision says who the caller
is, with which roles, whether the action is allowed, and the status to answer (200, 401 with a
`WWW-Authenticate` challenge, 403), so every blueprint refuses the same way and the audit log gets
the same fields for every call, allowed or refused.

Identities, in the order they are tried for `Authorization: Bearer <credential>`:

1. `OCR_ADMIN_TOKEN` (constant-time comparison): one `admin` identity, named `admin-token`, so a
   setup from before roles keeps working unchanged;
2. an API key whose sha256 the policy lists - `key:<name>`;
3. a JWT (three dot-separated parts) when the policy configures `jwt:` - `jwt:<subject>`.

Rules: an action the anonymous roles allow is allowed without looking at credentials (the model
listing and the OCR API stay open unless the policy or `OCR_INFERENCE_AUTH` says otherwise); any
other action needs credentials (none or malformed: 401), valid ones (an unknown key or a refused
token: 401 `invalid_token`), and a role the table gives it (403 `forbidden`). With neither an admin
token nor a policy file there is nobody who could be allowed, so such actions answer 403
`admin_disabled`, as before roles existed.

Without a policy file the anonymous roles are `viewer` (the listing was always open); with one, they
are what it says (default none). Unless `OCR_INFERENCE_AUTH` is on, everyone also holds `client`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, Iterable

from server.config import Settings
from server.governance.policy import AccessPolicy, load_policy
from server.governance.reloading import Reloading
from server.governance.roles import Action, Role, allowed
from server.governance.tokens import TokenError

API_KEY_PREFIX = "ocrk_"  # generated keys carry it, so that secret scanners and people recognise one
_CHALLENGE = 'Bearer realm="ocr-server"'
ANONYMOUS = "anonymous"


class IdentityKind(str, Enum):
    ANONYMOUS = "anonymous"
    ADMIN_TOKEN = "admin_token"
    API_KEY = "api_key"
    JWT = "jwt"


@dataclass(frozen=True)
class Identity:
    kind: IdentityKind
    name: str
    roles: frozenset[Role]

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        if self.kind is IdentityKind.API_KEY:
            return f"key:{self.name}"
        if self.kind is IdentityKind.JWT:
            return f"jwt:{self.name}"
        return self.name


@dataclass(frozen=True)
class Decision:
    action: Action
    allowed: bool
    status: int  # 200 when allowed; 401 or 403 otherwise
    code: str  # "ok", or the error code to answer with
    reason: str
    identity: Identity | None = None  # None when the credentials could not be established
    policy_digest: str = ""
    www_authenticate: str | None = None  # the challenge header of a 401

    @property
    def roles(self) -> list[str]:
        return sorted(r.value for r in self.identity.roles) if self.identity else []

    @property
    def actor(self) -> str:
        return self.identity.actor if self.identity else ANONYMOUS

    def audit_fields(self) -> dict[str, Any]:
        """`AuditLog.append` keyword arguments that record this decision (a call refused because no
        credentials are configured at all is `refused`, as before roles existed; others `denied`)."""
        result = "ok" if self.allowed else "refused" if self.code == "admin_disabled" else "denied"
        return {"actor": self.actor, "roles": self.roles, "result": result, "reason": self.reason,
                "policy_digest": self.policy_digest or None}


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


class Authorizer:
    """Decides every call. Thread-safe; the policy file is re-read when it changes (see reloading)."""

    def __init__(self, *, admin_token: str = "", policy_path: Path | None = None, inference_auth: bool = False,
                 reload_interval_s: float = 1.0) -> None:
        self._admin_token = admin_token.encode("utf-8")
        self._inference_auth = inference_auth
        self._policy = Reloading(lambda: load_policy(policy_path), min_interval_s=reload_interval_s) \
            if policy_path is not None else None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Authorizer":
        """Raises PolicyError when OCR_AUTH_CONFIG names a policy that cannot be used."""
        return cls(admin_token=settings.admin_token, policy_path=Path(settings.auth_config) if settings.auth_config
                   else None, inference_auth=settings.inference_auth)

    @property
    def policy(self) -> AccessPolicy | None:
        return self._policy.get() if self._policy else None

    @property
    def policy_error(self) -> str | None:
        """Why the policy file on disk is not in force (the previous version is), or None."""
        return self._policy.error if self._policy else None

    def anonymous_roles(self, policy: AccessPolicy | None) -> frozenset[Role]:
        roles = policy.anonymous if policy is not None else frozenset({Role.VIEWER})
        return roles if self._inference_auth else roles | {Role.CLIENT}

    def decide(self, action: Action, authorization: str | None) -> Decision:
        policy = self.policy
        digest = policy.digest if policy else ""

        def refuse(status: int, code: str, reason: str, identity: Identity | None = None) -> Decision:
            challenge = None
            if status == 401:
                challenge = _CHALLENGE + (', error="invalid_token"' if code == "invalid_token" else "")
            return Decision(action, False, status, code, reason, identity, digest, challenge)

        anonymous = self.anonymous_roles(policy)
        if allowed(action, anonymous):
            return Decision(action, True, 200, "ok", "", Identity(IdentityKind.ANONYMOUS, ANONYMOUS, anonymous), digest)
        if not self._admin_token and policy is None:
            return refuse(403, "admin_disabled", "the admin API is disabled: set OCR_ADMIN_TOKEN or OCR_AUTH_CONFIG "
                                                 "on the server to enable it")
        if authorization is None:
            return refuse(401, "unauthorized", "this call needs an 'Authorization: Bearer <credential>' header")
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential or any(c.isspace() for c in credential):
            return refuse(401, "invalid_authorization", "the Authorization header must be 'Bearer <credential>'")
        try:
            identity = self.authenticate(credential, policy)
        except TokenError as exc:
            return refuse(401, "invalid_token", exc.reason)
        if identity is None:
            return refuse(401, "invalid_token", "the credential is not a valid admin token, API key or token")
        if not allowed(action, identity.roles):
            roles = ", ".join(sorted(r.value for r in identity.roles)) or "no roles"
            return refuse(403, "forbidden", f"{identity.actor} ({roles}) may not {action.value}", identity)
        return Decision(action, True, 200, "ok", "", identity, digest)

    def authenticate(self, credential: str, policy: AccessPolicy | None) -> Identity | None:
        """The identity a bearer credential proves, None if it proves none; TokenError for a JWT the
        policy's verifier refuses (with the reason)."""
        if self._admin_token and hmac.compare_digest(credential.encode("utf-8"), self._admin_token):
            return Identity(IdentityKind.ADMIN_TOKEN, "admin-token", frozenset({Role.ADMIN}))
        if policy is None:
            return None
        digest = hash_api_key(credential)
        match = None
        for key in policy.api_keys:  # compare every entry: the time taken does not tell which matched
            if hmac.compare_digest(key.sha256, digest):
                match = key
        if match is not None:
            return Identity(IdentityKind.API_KEY, match.name, match.roles)
        if policy.jwt is not None and credential.count(".") == 2:
            token = policy.jwt.verify(credential)
            return Identity(IdentityKind.JWT, token.subject, token.roles)
        return None

    def check_four_eyes(self, decision: Decision, requests: Iterable["PromotionRequest"], version: str) -> Decision:
        """`decision` (to promote `version`) turned into a 403 `four_eyes` when the policy asks for
        four eyes and the rule refuses it; unchanged otherwise."""
        policy = self.policy
        if not decision.allowed or policy is None or not policy.four_eyes:
            return decision
        problem = four_eyes_violation(requests, version, decision.actor)
        if problem is None:
            return decision
        return replace(decision, allowed=False, status=403, code="four_eyes", reason=problem)


@dataclass(frozen=True)
class PromotionRequest:
    version: str
    requested_by: str  # the requester's actor name (Identity.actor)
    at: str = ""


def four_eyes_violation(requests: Iterable[PromotionRequest], version: str, approver: str) -> str | None:
    """Why `approver` may not approve promoting `version`, or None if they may: the latest recorded
    request for that version must exist and be someone else's. Identities are compared by actor name,
    so one person holding both an API key and a login counts as two: give such people one identity."""
    latest = None
    for request in requests:
        if request.version == version:
            latest = request
    if latest is None:
        return f"nobody requested the promotion of {version}; under the four-eyes rule a releaser approves " \
               "what someone else requested"
    if latest.requested_by == approver:
        return f"{approver} requested the promotion of {version} and cannot also approve it (four-eyes rule)"
    return None
