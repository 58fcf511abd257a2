"""JWT bearer tokens from an OIDC provider, verified offline against a JWKS file (PyJWT).

Offline on purpose: the server never calls the provider (no outbound network in many deployments,
and no login outage that takes the admin API down with it). Ops export the provider's JWKS (its
`jwks_uri`) to a file; the policy reloads it when it changes, so a key rotation is a file update.

Refused, each with its own reason: a token whose `alg` is not on the allow-list - which never holds
`none` nor an HMAC algorithm, so neither an unsigned token nor one "signed" HS256 with the public key
as the secret gets through -, one whose algorithm does not fit the key (kty) or the key's own `alg`,
a bad signature, an expired one (`exp` required), one from another issuer or for another audience
(both required), one not valid yet (`nbf`, `iat` in the future, beyond the leeway).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from server.governance.roles import Role, parse_roles

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_KEY_TYPE = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class TokenError(Exception):
    """The token is not accepted; `reason` says why (safe to show the caller)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class JwtSettings:
    jwks_file: Path
    issuer: str
    audience: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    roles_claim: str = "groups"  # a dotted path reaches nested claims: realm_access.roles (Keycloak)
    subject_claim: str = "sub"
    role_map: dict[str, frozenset[Role]] | None = None  # claim value -> roles; None: values are role names
    leeway_s: float = 30.0

    def __post_init__(self) -> None:
        bad = [a for a in self.algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if bad or not self.algorithms:
            raise ValueError(f"jwt.algorithms must be public-key algorithms ({', '.join(ASYMMETRIC_ALGORITHMS)}); "
                             f"refused: {bad or 'an empty list'}")
        if not self.issuer or not self.audience:
            raise ValueError("jwt.issuer and jwt.audience are required: a token for another service must not pass")


@dataclass(frozen=True)
class TokenIdentity:
    subject: str
    roles: frozenset[Role]
    claims: dict[str, Any]


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class JwtVerifier:
    def __init__(self, settings: JwtSettings, jwks_text: str) -> None:
        self.settings = settings
        try:
            data = json.loads(jwks_text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{settings.jwks_file} is not JSON: {exc}") from exc
        keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(keys, list) or not keys:
            raise ValueError(f"{settings.jwks_file}: expected a JWKS document {{\"keys\": [...]}} "
                             "with at least one key")
        self._keys: list[dict[str, Any]] = []
        for number, key in enumerate(keys, start=1):
            if not isinstance(key, dict) or key.get("kty") not in _KEY_TYPE.values():
                raise ValueError(f"{settings.jwks_file}, key {number}: only public keys (kty RSA, EC, OKP) are "
                                 "accepted; a shared secret (kty oct) would let anyone who reads the file mint tokens")
            if "d" in key:
                raise ValueError(f"{settings.jwks_file}, key {number}: holds a private key; export the public JWKS")
            if key.get("use", "sig") == "sig":
                jwt.PyJWK(key)  # raises for keys PyJWT cannot use
                self._keys.append(key)

    def _candidates(self, alg: str, kid: object) -> list[dict[str, Any]]:
        kty = _KEY_TYPE[alg[:2]]
        return [key for key in self._keys
                if key["kty"] == kty and key.get("alg", alg) == alg and (kid is None or key.get("kid") == kid)]

    def verify(self, token: str) -> TokenIdentity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise TokenError(f"malformed token: {exc}") from exc
        alg = header.get("alg")
        if alg not in self.settings.algorithms:
            raise TokenError(f"token algorithm {alg!r} is not allowed (allowed: {', '.join(self.settings.algorithms)})")
        candidates = self._candidates(alg, header.get("kid"))
        if not candidates:
            raise TokenError(f"no key in the JWKS matches the token (kid {header.get('kid')!r}, alg {alg})")
        s = self.settings
        failure: TokenError | None = None
        for key in candidates:
            try:
                claims = jwt.decode(token, key=jwt.PyJWK(key, algorithm=alg), algorithms=[alg], audience=s.audience,
                                    issuer=s.issuer, leeway=s.leeway_s, options={"require": ["exp", "iss", "aud"]})
                break
            except jwt.InvalidSignatureError:
                failure = TokenError("the token's signature is not valid")
            except jwt.ExpiredSignatureError as exc:
                raise TokenError("the token has expired") from exc
            except jwt.InvalidAudienceError as exc:
                raise TokenError(f"the token is not for this audience ({s.audience})") from exc
            except jwt.InvalidIssuerError as exc:
                raise TokenError(f"the token is not from the trusted issuer ({s.issuer})") from exc
            except jwt.ImmatureSignatureError as exc:
                raise TokenError("the token is not valid yet") from exc
            except jwt.MissingRequiredClaimError as exc:
                raise TokenError(f"the token lacks the {exc.claim!r} claim") from exc
            except jwt.InvalidTokenError as exc:
                raise TokenError(f"invalid token: {exc}") from exc
        else:
            assert failure is not None
            raise failure
        subject = _claim(claims, s.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise TokenError(f"the token has no {s.subject_claim!r} claim to name its holder")
        return TokenIdentity(subject, self._roles(claims), claims)

    def _roles(self, claims: dict[str, Any]) -> frozenset[Role]:
        raw = _claim(claims, self.settings.roles_claim)
        if isinstance(raw, str):
            values = raw.split()  # OAuth `scope` style: space-separated
        elif isinstance(raw, list):
            values = [v for v in raw if isinstance(v, str)]
        else:
            values = []
        role_map = self.settings.role_map
        if role_map is None:
            known = {r.value for r in Role}
            return frozenset(Role(v) for v in values if v in known)
        roles: set[Role] = set()
        for value in values:
            roles |= role_map.get(value, frozenset())
        return frozenset(roles)


def parse_jwt_settings(data: Any, base: Path) -> JwtSettings:
    """The policy file's `jwt:` section; relative `jwks_file` paths are relative to the policy file."""
    if not isinstance(data, dict):
        raise ValueError("jwt must be a mapping")
    allowed = {"jwks_file", "issuer", "audience", "algorithms", "roles_claim", "subject_claim", "role_map", "leeway_s"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"jwt has unknown fields {unknown} (allowed: {', '.join(sorted(allowed))})")
    if not isinstance(data.get("jwks_file"), str):
        raise ValueError("jwt.jwks_file is required (the provider's JWKS, exported to a file)")
    role_map = None
    if data.get("role_map") is not None:
        if not isinstance(data["role_map"], dict):
            raise ValueError("jwt.role_map must map claim values to lists of roles")
        role_map = {str(k): parse_roles(v, f"jwt.role_map.{k}") for k, v in data["role_map"].items()}
    algorithms = data.get("algorithms", list(JwtSettings.algorithms))
    if not isinstance(algorithms, list):
        raise ValueError("jwt.algorithms must be a list")
    leeway = data.get("leeway_s", 30.0)
    if isinstance(leeway, bool) or not isinstance(leeway, (int, float)) or not 0 <= leeway <= 300:
        raise ValueError("jwt.leeway_s must be a number of seconds between 0 and 300")
    jwks = Path(data["jwks_file"])
    return JwtSettings(
        jwks_file=jwks if jwks.is_absolute() else base / jwks,
        issuer=str(data.get("issuer") or ""),
        audience=str(data.get("audience") or ""),
        algorithms=tuple(str(a) for a in algorithms),
        roles_claim=str(data.get("roles_claim", "groups")),
        subject_claim=str(data.get("subject_claim", "sub")),
        role_map=role_map,
        leeway_s=float(leeway),
    )
