"""Role-based access at the policy level: the (action, role) table, identities (admin token, API keys,
JWTs against a JWKS file), refusals and their status codes, policy reloading, the four-eyes rule.
(The same table over HTTP, for every API call of a real server: tests/test_access_server.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.config import Settings
from server.governance.access import (Authorizer, Decision, IdentityKind, PromotionRequest, four_eyes_violation,
                                      hash_api_key)
from server.governance.policy import PolicyError, load_policy
from server.governance.roles import PERMISSIONS, Action, Role
from tests.governance_support import (AUDIENCE, EXPECTED, ISSUER, LETTER, Provider, hs256_with_public_key,
                                     unsigned_token)
from tests.support.server import ROOT

def write_policy(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture()
def role_keys(tmp_path: Path) -> tuple[Authorizer, dict[Role, str]]:
    """An authorizer whose policy has one API key per role, nothing anonymous, inference behind auth."""
    keys = {role: f"key-for-{role.value}" for role in Role}
    policy = write_policy(tmp_path / "policy.yaml", {"api_keys": [
        {"name": role.value, "sha256": hash_api_key(key), "roles": [role.value]} for role, key in keys.items()]})
    return Authorizer(policy_path=policy, inference_auth=True), keys


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("role", list(Role))
def test_each_role_gets_exactly_what_the_table_gives(role_keys: tuple[Authorizer, dict[Role, str]],
                                                     action: Action, role: Role) -> None:
    authorizer, keys = role_keys
    decision = authorizer.decide(action, f"Bearer {keys[role]}")
    expected = role is Role.ADMIN or LETTER[role] in EXPECTED[action]
    assert decision.allowed is expected, decision
    assert decision.status == (200 if expected else 403)
    assert decision.identity is not None and decision.identity.actor == f"key:{role.value}"
    if not expected:
        assert decision.code == "forbidden" and action.value in decision.reason


def test_every_action_has_a_table_entry() -> None:
    assert set(PERMISSIONS) == set(Action) == set(EXPECTED)


def test_without_any_credentials_configured_the_admin_calls_are_disabled() -> None:
    authorizer = Authorizer()
    assert authorizer.decide(Action.READ_MODELS, None).allowed  # the listing was always open
    assert authorizer.decide(Action.INFER, None).allowed
    refused = authorizer.decide(Action.ACTIVATE, "Bearer anything")
    assert (refused.status, refused.code) == (403, "admin_disabled")
    assert not authorizer.decide(Action.READ_AUDIT, None).allowed


def test_the_admin_token_is_one_admin_identity() -> None:
    authorizer = Authorizer(admin_token="s3cret-token")
    ok = authorizer.decide(Action.PROMOTE, "Bearer s3cret-token")
    assert ok.allowed and ok.identity is not None and ok.identity.kind is IdentityKind.ADMIN_TOKEN
    assert ok.actor == "admin-token" and ok.roles == ["admin"]
    wrong = authorizer.decide(Action.PROMOTE, "Bearer s3cret-tokeN")
    assert (wrong.status, wrong.code, wrong.identity) == (401, "invalid_token", None)
    assert wrong.www_authenticate == 'Bearer realm="ocr-server", error="invalid_token"'
    missing = authorizer.decide(Action.PROMOTE, None)
    assert (missing.status, missing.code) == (401, "unauthorized")
    assert missing.www_authenticate == 'Bearer realm="ocr-server"'
    for header in ("Basic czNjcmV0", "Bearer", "Bearer a b", "s3cret-token"):
        malformed = authorizer.decide(Action.PROMOTE, header)
        assert (malformed.status, malformed.code) == (401, "invalid_authorization"), header


def test_anonymous_roles_and_the_inference_switch(tmp_path: Path) -> None:
    closed = write_policy(tmp_path / "closed.yaml", {"api_keys": []})
    authorizer = Authorizer(policy_path=closed)
    assert authorizer.decide(Action.READ_MODELS, None).status == 401  # a policy file closes the listing
    assert authorizer.decide(Action.INFER, None).allowed  # the OCR API stays open unless asked otherwise
    assert Authorizer(policy_path=closed, inference_auth=True).decide(Action.INFER, None).status == 401
    opened = write_policy(tmp_path / "open.yaml", {"anonymous": ["viewer"]})
    decision = Authorizer(policy_path=opened).decide(Action.READ_MODELS, None)
    assert decision.allowed and decision.actor == "anonymous"
    assert Authorizer(policy_path=opened).decide(Action.READ_AUDIT, None).status == 401


def test_an_unknown_api_key_is_refused_and_the_decision_names_the_policy(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.yaml", {"api_keys": [
        {"name": "ci", "sha256": hash_api_key("right"), "roles": ["submitter"]}]})
    authorizer = Authorizer(policy_path=policy)
    refused = authorizer.decide(Action.PUBLISH, "Bearer wrong")
    assert (refused.status, refused.code) == (401, "invalid_token")
    digest = hashlib.sha256(policy.read_bytes()).hexdigest()
    assert refused.policy_digest == digest
    allowed = authorizer.decide(Action.PUBLISH, "Bearer right")
    assert allowed.audit_fields() == {"actor": "key:ci", "roles": ["submitter"], "result": "ok", "reason": "",
                                      "policy_digest": digest}
    denied = authorizer.decide(Action.ACTIVATE, "Bearer right")
    assert denied.audit_fields()["result"] == "denied" and "key:ci (submitter) may not" in denied.reason


def test_the_policy_is_reloaded_and_a_broken_edit_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = write_policy(tmp_path / "p.yaml", {"api_keys": [{"name": "a", "sha256": hash_api_key("ka"),
                                                            "roles": ["viewer"]}]})
    authorizer = Authorizer(policy_path=path, reload_interval_s=0)
    first = authorizer.decide(Action.ACTIVATE, "Bearer ka")
    assert first.status == 403
    write_policy(path, {"api_keys": [{"name": "a", "sha256": hash_api_key("ka"), "roles": ["releaser"]}]})
    second = authorizer.decide(Action.ACTIVATE, "Bearer ka")
    assert second.allowed and second.policy_digest != first.policy_digest
    path.write_text("api_keys: [{name: a, roles: [superuser]}]\n")
    third = authorizer.decide(Action.ACTIVATE, "Bearer ka")
    assert third.allowed and third.policy_digest == second.policy_digest
    assert authorizer.policy_error is not None and "sha256" in authorizer.policy_error
    write_policy(path, {"api_keys": []})
    assert authorizer.decide(Action.ACTIVATE, "Bearer ka").status == 401 and authorizer.policy_error is None


@pytest.mark.parametrize(("data", "message"), [
    ({"anonymus": ["viewer"]}, "unknown fields \\['anonymus'\\]"),
    ({"anonymous": ["admin"]}, "anonymous callers cannot be admin"),
    ({"anonymous": ["root"]}, "unknown roles \\['root'\\]"),
    ({"four_eyes": "yes"}, "four_eyes must be true or false"),
    ({"api_keys": [{"name": "a", "sha256": "abc", "roles": []}]}, "sha256 must be the 64"),
    ({"api_keys": [{"name": "a b", "sha256": "a" * 64, "roles": []}]}, "name must be"),
    ({"api_keys": [{"name": "a", "sha256": "a" * 64, "roles": []}, {"name": "a", "sha256": "b" * 64, "roles": []}]},
     "listed twice"),
    ({"api_keys": [{"name": "a", "sha256": "a" * 64, "roles": "viewer"}]}, "roles must be a list"),
    ({"jwt": {"issuer": ISSUER, "audience": AUDIENCE}}, "jwt.jwks_file is required"),
    ({"jwt": {"jwks_file": "jwks.json", "audience": AUDIENCE}}, "issuer and jwt.audience are required"),
    ({"jwt": {"jwks_file": "jwks.json", "issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["HS256"]}},
     "must be public-key algorithms"),
    ({"jwt": {"jwks_file": "jwks.json", "issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["none"]}},
     "must be public-key algorithms"),
    ({"jwt": {"jwks_file": "missing.json", "issuer": ISSUER, "audience": AUDIENCE}}, "cannot read jwt.jwks_file"),
    ({"jwt": {"jwks_file": "jwks.json", "issuer": ISSUER, "audience": AUDIENCE, "role_map": {"g": ["boss"]}}},
     "unknown roles"),
])
def test_policy_errors_name_the_field(tmp_path: Path, data: dict[str, Any], message: str) -> None:
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [json.loads(jwt.algorithms.ECAlgorithm.to_jwk(
        ec.generate_private_key(ec.SECP256R1()).public_key()))]}))
    with pytest.raises(PolicyError, match=message):
        load_policy(write_policy(tmp_path / "p.yaml", data))
    with pytest.raises(PolicyError):
        Authorizer(policy_path=tmp_path / "p.yaml")  # at start a policy that does not parse is fatal


@pytest.mark.parametrize(("jwk", "message"), [
    ({"kty": "oct", "k": "c2VjcmV0"}, "a shared secret"),
    ({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}, "holds a private key"),
    ({}, "only public keys"),
])
def test_a_jwks_may_hold_only_public_signing_keys(tmp_path: Path, jwk: dict[str, str], message: str) -> None:
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    with pytest.raises(PolicyError, match=message):
        load_policy(write_policy(tmp_path / "p.yaml", {"jwt": {"jwks_file": "jwks.json", "issuer": ISSUER,
                                                               "audience": AUDIENCE}}))


# -- JWT -------------------------------------------------------------------------------------------------

@pytest.fixture()
def provider(tmp_path: Path) -> Provider:
    return Provider(tmp_path)


def jwt_authorizer(tmp_path: Path, provider: Provider, **jwt_settings: Any) -> Authorizer:
    settings = {"jwks_file": provider.jwks.name, "issuer": ISSUER, "audience": AUDIENCE,
                "algorithms": ["RS256", "ES256"], "role_map": {"ocr-mlops": ["releaser"], "ocr-audit": ["auditor"]}}
    settings.update(jwt_settings)
    return Authorizer(policy_path=write_policy(tmp_path / "policy.yaml", {"jwt": settings}))


def test_a_valid_token_maps_its_groups_to_roles(tmp_path: Path, provider: Provider) -> None:
    authorizer = jwt_authorizer(tmp_path, provider)
    decision = authorizer.decide(Action.ACTIVATE, f"Bearer {provider.token()}")
    assert decision.allowed, decision.reason
    assert decision.actor == "jwt:alice" and decision.roles == ["releaser"]
    assert authorizer.decide(Action.ACTIVATE, f"Bearer {provider.token('ES256', 'ec-1')}").allowed
    assert authorizer.decide(Action.READ_AUDIT, f"Bearer {provider.token()}").status == 403
    assert authorizer.policy is not None and authorizer.policy.jwks_digest == hashlib.sha256(
        provider.jwks.read_bytes()).hexdigest()


def test_nested_and_space_separated_role_claims(tmp_path: Path, provider: Provider) -> None:
    nested = jwt_authorizer(tmp_path, provider, roles_claim="realm_access.roles", role_map=None)
    token = provider.token(realm_access={"roles": ["auditor", "offline_access"]})
    assert nested.decide(Action.READ_AUDIT, f"Bearer {token}").roles == ["auditor"]
    scoped = jwt_authorizer(tmp_path, provider, roles_claim="scope", role_map=None, subject_claim="email")
    decision = scoped.decide(Action.PUBLISH, f"Bearer {provider.token(scope='openid submitter', email='bob@x')}")
    assert decision.allowed and decision.actor == "jwt:bob@x"


@pytest.mark.parametrize("case", ["expired", "wrong_audience", "wrong_issuer", "alg_none", "hs256_public_key",
                                  "unknown_kid", "other_key", "no_exp", "not_yet_valid", "no_subject", "garbage",
                                  "alg_kty_mismatch"])
def test_bad_tokens_are_refused(tmp_path: Path, provider: Provider, case: str) -> None:
    authorizer = jwt_authorizer(tmp_path, provider)
    now = int(time.time())
    tokens = {
        "expired": (lambda: provider.token(exp=now - 3600, iat=now - 7200), "expired"),
        "wrong_audience": (lambda: provider.token(aud="another-service"), "audience"),
        "wrong_issuer": (lambda: provider.token(iss="https://evil.example.com"), "issuer"),
        "alg_none": (lambda: unsigned_token(provider.claims()), "algorithm 'none' is not allowed"),
        "hs256_public_key": (lambda: hs256_with_public_key(provider.claims(), provider.rsa_public_pem),
                             "algorithm 'HS256' is not allowed"),
        "unknown_kid": (lambda: provider.token(kid="rotated-away"), "no key in the JWKS"),
        "other_key": (lambda: jwt.encode(provider.claims(), rsa.generate_private_key(65537, 2048), algorithm="RS256",
                                         headers={"kid": "rsa-1"}), "signature is not valid"),
        "no_exp": (lambda: provider.token(exp=None), "lacks the 'exp' claim"),
        "not_yet_valid": (lambda: provider.token(nbf=now + 3600), "not valid yet"),
        "no_subject": (lambda: provider.token(sub=None), "no 'sub' claim"),
        "garbage": (lambda: "abc.def.ghi", "malformed token"),
        "alg_kty_mismatch": (lambda: provider.token("ES256", kid="rsa-1"), "no key in the JWKS"),
    }
    make, reason = tokens[case]
    decision = authorizer.decide(Action.ACTIVATE, f"Bearer {make()}")
    assert (decision.allowed, decision.status, decision.code) == (False, 401, "invalid_token"), decision
    assert reason in decision.reason, decision.reason


def test_a_policy_with_jwt_still_takes_api_keys(tmp_path: Path, provider: Provider) -> None:
    policy = write_policy(tmp_path / "p.yaml", {
        "api_keys": [{"name": "dotted", "sha256": hash_api_key("a.b.c"), "roles": ["viewer"]}],
        "jwt": {"jwks_file": provider.jwks.name, "issuer": ISSUER, "audience": AUDIENCE}})
    decision = Authorizer(policy_path=policy).decide(Action.READ_MODELS, "Bearer a.b.c")
    assert decision.allowed and decision.actor == "key:dotted"


# -- four eyes ---------------------------------------------------------------------------------------------

def test_four_eyes_is_a_rule_over_the_recorded_requests() -> None:
    requests = [PromotionRequest("1.1.0", "key:alice"), PromotionRequest("1.2.0", "jwt:bob"),
                PromotionRequest("1.2.0", "key:alice")]
    assert four_eyes_violation(requests, "1.1.0", "jwt:bob") is None
    assert "cannot also approve" in four_eyes_violation(requests, "1.1.0", "key:alice")  # type: ignore[operator]
    assert four_eyes_violation(requests, "1.2.0", "jwt:bob") is None  # the latest request is alice's
    assert "cannot also approve" in four_eyes_violation(requests, "1.2.0", "key:alice")  # type: ignore[operator]
    assert "nobody requested" in four_eyes_violation(requests, "2.0.0", "jwt:bob")  # type: ignore[operator]


def test_the_authorizer_applies_four_eyes_only_when_the_policy_asks(tmp_path: Path) -> None:
    keys = [{"name": n, "sha256": hash_api_key(n), "roles": ["submitter", "releaser"]} for n in ("alice", "bob")]
    requests = [PromotionRequest("1.1.0", "key:alice")]
    for four_eyes, expected in ((True, (False, 403, "four_eyes")), (False, (True, 200, "ok"))):
        authorizer = Authorizer(policy_path=write_policy(tmp_path / f"{four_eyes}.yaml",
                                                         {"api_keys": keys, "four_eyes": four_eyes}))
        own: Decision = authorizer.check_four_eyes(authorizer.decide(Action.PROMOTE, "Bearer alice"), requests, "1.1.0")
        assert (own.allowed, own.status, own.code) == expected
        other = authorizer.check_four_eyes(authorizer.decide(Action.PROMOTE, "Bearer bob"), requests, "1.1.0")
        assert other.allowed


# -- settings and the CLI --------------------------------------------------------------------------------

def test_the_authorizer_from_settings(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.yaml", {"api_keys": [{"name": "c", "sha256": hash_api_key("k"),
                                                              "roles": ["client"]}]})
    settings = Settings.from_env({"OCR_AUTH_CONFIG": str(policy), "OCR_INFERENCE_AUTH": "1", "OCR_ADMIN_TOKEN": "t"})
    authorizer = Authorizer.from_settings(settings)
    assert authorizer.decide(Action.INFER, None).status == 401
    assert authorizer.decide(Action.INFER, "Bearer k").allowed
    assert authorizer.decide(Action.PROMOTE, "Bearer t").allowed


def test_cli_hash_key(tmp_path: Path) -> None:
    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "server.cli", "auth", "hash-key", *args], input=stdin,
                              cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60)

    hashed = run("--name", "ci", "--role", "submitter", stdin="my-key\n")
    assert hashed.returncode == 0, hashed.stderr
    assert yaml.safe_load(hashed.stdout) == [{"name": "ci", "sha256": hash_api_key("my-key"), "roles": ["submitter"]}]
    generated = run("--generate", "--name", "ops", "--role", "releaser", "--role", "auditor")
    key = generated.stdout.split("): ")[1].split()[0]
    policy = tmp_path / "p.yaml"
    policy.write_text("api_keys:\n" + "".join("  " + line + "\n" for line in generated.stdout.splitlines()
                                              if not line.startswith("#")))
    assert Authorizer(policy_path=policy).decide(Action.READ_AUDIT, f"Bearer {key}").allowed
    assert run(stdin="\n").returncode == 2 and run("--role", "root", stdin="k\n").returncode == 2


def _readme_yaml(section: str) -> Any:
    """The first ```yaml block of a README section."""
    text = (ROOT / "README.md").read_text()
    body = text[text.index(f"### {section}\n"):]
    start = body.index("```yaml\n") + len("```yaml\n")
    return yaml.safe_load(body[start:body.index("```", start)])


def test_the_readme_samples_are_valid(tmp_path: Path, provider: Provider) -> None:
    from server.repository.card import ModelCard

    ModelCard.from_json(_readme_yaml("The model card"))
    policy, _ = load_policy(write_policy(tmp_path / "policy.yaml", _readme_yaml("Roles and the access policy")))
    assert policy.four_eyes and [k.name for k in policy.api_keys] == ["ci-publisher", "mlops"]
    jwt_section = _readme_yaml("Wiring an OIDC provider")
    jwt_section["jwt"]["jwks_file"] = str(provider.jwks)
    policy, _ = load_policy(write_policy(tmp_path / "oidc.yaml", jwt_section))
    assert policy.jwt is not None and policy.jwt.settings.role_map is not None
