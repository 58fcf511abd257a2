"""The access policy file (`OCR_AUTH_CONFIG`, YAML): who may call the server, with which roles.

    anonymous: [viewer]          # roles of a caller without credentials (default: none)
    four_eyes: true              # whoever requested a promotion cannot approve it (default: false)
    api_keys:
      - name: ci-publisher       # shows in the audit log as key:ci-publisher
        sha256: 9f86d081...      # `ocr-server auth hash-key`: the key itself is never stored
        roles: [submitter]
    jwt:                         # optional: tokens from an OIDC provider (server.governance.tokens)
      jwks_file: jwks.json       # relative to this file
      issuer: https://login.example.com/realms/bank
      audience: ocr-server
      algorithms: [RS256]
      roles_claim: groups
      role_map: {ocr-mlops: [releaser], ocr-data-science: [submitter], ocr-audit: [auditor]}

Unknown fields are refused (a misspelt `anonymus:` must not silently mean "nobody"). `digest` is
the sha256 of the file's bytes, for the audit log: every decision can name the policy it applied.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from server.governance.configfile import read_yaml
from server.governance.roles import Role, parse_roles
from server.governance.tokens import JwtVerifier, parse_jwt_settings

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = {"anonymous", "four_eyes", "api_keys", "jwt"}


class PolicyError(ValueError):
    """The policy file cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    sha256: str
    roles: frozenset[Role]


@dataclass(frozen=True)
class AccessPolicy:
    api_keys: tuple[ApiKey, ...] = ()
    anonymous: frozenset[Role] = frozenset()
    jwt: JwtVerifier | None = None
    four_eyes: bool = False
    digest: str = ""  # sha256 of the policy file ("" when there is none)
    jwks_digest: str = ""  # sha256 of the JWKS file ("" when JWT is not configured)


def _api_keys(raw: Any) -> tuple[ApiKey, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("api_keys must be a list of {name, sha256, roles}")
    keys: list[ApiKey] = []
    for number, entry in enumerate(raw, start=1):
        where = f"api_keys[{number}]"
        if not isinstance(entry, dict) or set(entry) - {"name", "sha256", "roles"}:
            raise ValueError(f"{where} must be a mapping with name, sha256 and roles")
        name, digest = entry.get("name"), entry.get("sha256")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", name):
            raise ValueError(f"{where}.name must be 1-64 letters, digits or ._@-")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise ValueError(f"{where}.sha256 must be the 64 lowercase hex digits `ocr-server auth hash-key` prints")
        if any(k.name == name for k in keys) or any(k.sha256 == digest for k in keys):
            raise ValueError(f"{where}: the name {name!r} or its key is listed twice")
        keys.append(ApiKey(name, digest, parse_roles(entry.get("roles"), f"{where}.roles")))
    return tuple(keys)


def load_policy(path: Path) -> tuple[AccessPolicy, list[Path]]:
    """Parse the policy file (and the JWKS it names); returns the policy and the paths read."""
    data, digest = read_yaml(path, "the access policy", PolicyError)
    try:
        if not isinstance(data, dict):
            raise ValueError("the policy must be a mapping")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise ValueError(f"unknown fields {unknown} (allowed: {', '.join(sorted(_FIELDS))})")
        anonymous = parse_roles(data.get("anonymous") or [], "anonymous")
        if Role.ADMIN in anonymous:
            raise ValueError("anonymous callers cannot be admin")
        four_eyes = data.get("four_eyes", False)
        if not isinstance(four_eyes, bool):
            raise ValueError("four_eyes must be true or false")
        keys = _api_keys(data.get("api_keys"))
        verifier, jwks_digest, paths = None, "", [path]
        if data.get("jwt") is not None:
            settings = parse_jwt_settings(data["jwt"], path.parent)
            try:
                jwks = settings.jwks_file.read_bytes()
            except OSError as exc:
                raise ValueError(f"cannot read jwt.jwks_file {settings.jwks_file}: {exc.strerror or exc}") from exc
            verifier = JwtVerifier(settings, jwks.decode("utf-8", errors="replace"))
            jwks_digest = hashlib.sha256(jwks).hexdigest()
            paths.append(settings.jwks_file)
    except ValueError as exc:
        raise PolicyError(f"{path}: {exc}") from exc
    policy = AccessPolicy(keys, anonymous, verifier, four_eyes, digest, jwks_digest)
    return policy, paths
