"""Role-based access and the audit trail on a real server: 3 Gunicorn workers on the default (unsigned)
model, an access policy with one API key per role, an OIDC provider's JWKS, the four-eyes rule, the OCR
API behind the `client` role (OCR_INFERENCE_AUTH=1), and every audit record forwarded over TCP to a
syslog listener this module starts.

- every API call, for every role: exactly what the role table gives, and every refusal in the audit
  log with who, roles, address and request id;
- forged, expired and misdirected JWTs are refused over HTTP, each refusal audited;
- four eyes: whoever requested a promotion cannot activate it;
- `GET /v1/audit` pages through the whole log; `GET /v1/models/<version>` describes a version;
- the log the 3 workers wrote verifies with `ocr-server audit verify`, which names the line after one
  byte is changed or a line is deleted, and the syslog listener received every record.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import requests
import yaml

from server.governance.access import hash_api_key
from server.governance.roles import Action, Role
from tests.governance_support import (AUDIENCE, EXPECTED, ISSUER, LETTER, Listener, Provider, hs256_with_public_key,
                                      unsigned_token)
from tests.support.images import encode, render_text
from tests.support.lifecycle import audit_lines, wait_for
from tests.support.metrics import scrape
from tests.support.server import PADDLE_VERSION, ROOT, RunningServer, copy_version, gunicorn_server

ADMIN_TOKEN = "access-admin-token"
V = PADDLE_VERSION
KEYS = {name: f"ocrk_test_{name}" for name in ("viewer", "submitter", "releaser", "auditor", "client", "admin",
                                               "dual", "releaser2")}
ROLES = {"viewer": ["viewer"], "submitter": ["submitter"], "releaser": ["releaser"], "auditor": ["auditor"],
         "client": ["client"], "admin": ["admin"], "dual": ["submitter", "releaser"], "releaser2": ["releaser"]}
PAGE = encode(render_text(["TOTAL 12"]))

# (method, path, body, JSON body, the permission, status when allowed)
CALLS = [
    ("GET", "/v1/models", None, None, Action.READ_MODELS, 200),
    ("GET", f"/v1/models/{V}", None, None, Action.READ_MODELS, 200),
    ("POST", f"/v1/models/{V}/request-promotion", None, None, Action.REQUEST_PROMOTION, 201),
    ("POST", f"/v1/models/{V}/activate", None, None, Action.ACTIVATE, 202),
    ("DELETE", "/v1/models/pin", None, None, Action.UNPIN, 200),
    ("POST", "/v1/models/rollback", None, None, Action.ROLLBACK, 409),  # allowed: nothing to roll back to
    ("GET", "/v1/audit?limit=1", None, None, Action.READ_AUDIT, 200),
    ("POST", "/v1/ocr", PAGE, None, Action.INFER, 200),
    ("POST", "/v1/feedback", None, {"text": "TOTAL 12"}, Action.FEEDBACK, 400),  # allowed, then incomplete
]
IDENTITIES = ["anonymous", "viewer", "submitter", "releaser", "auditor", "client", "admin", "admin-token"]


@dataclass
class AccessLab:
    server: RunningServer
    audit_log: Path
    provider: Provider
    listener: Listener

    def call(self, method: str, path: str, credential: str | None = None, body: bytes | None = None,
             json_body: dict | None = None) -> tuple[requests.Response, str]:
        """The call with a fresh X-Request-Id (returned, to find its audit record)."""
        request_id = f"test-{uuid.uuid4().hex}"
        headers = {"X-Request-Id": request_id}
        if credential is not None:
            headers["Authorization"] = f"Bearer {credential}"
        if body is not None:
            headers["Content-Type"] = "image/png"
        response = requests.request(method, f"{self.server.url}{path}", headers=headers, data=body, json=json_body,
                                    timeout=120)
        return response, request_id

    def record(self, request_id: str) -> dict:
        """The one audit record of a request."""
        found = [e for e in audit_lines(self.audit_log) if e.get("request_id") == request_id]
        assert len(found) == 1, found
        return found[0]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, default_version_dir: Path) -> Iterator[AccessLab]:
    base = tmp_path_factory.mktemp("access")
    root = base / "models"
    copy_version(default_version_dir, root, V)
    provider = Provider(base)
    policy = {
        "anonymous": [],
        "four_eyes": True,
        "api_keys": [{"name": name, "sha256": hash_api_key(key), "roles": ROLES[name]} for name, key in KEYS.items()],
        "jwt": {"jwks_file": provider.jwks.name, "issuer": ISSUER, "audience": AUDIENCE,
                "algorithms": ["RS256", "ES256"], "role_map": {"ocr-mlops": ["releaser"], "ocr-audit": ["auditor"]}},
    }
    (base / "policy.yaml").write_text(yaml.safe_dump(policy))
    listener = Listener("tcp")
    env = {"OCR_ADMIN_TOKEN": ADMIN_TOKEN, "OCR_AUTH_CONFIG": str(base / "policy.yaml"), "OCR_INFERENCE_AUTH": "1",
           "OCR_AUDIT_SYSLOG": f"tcp://127.0.0.1:{listener.target.port}", "OCR_STATE_DIR": str(base / "state"),
           "OCR_WARMUP_SHAPES": "320x320", "OCR_MODEL_POLL_S": "2", "OCR_TIMEOUT": "600"}
    try:
        with gunicorn_server(root, base / "logs", workers=3, threads=2, env=env) as server:
            yield AccessLab(server, base / "state" / "audit.log", provider, listener)
    finally:
        listener.close()


def _credential(identity: str) -> str | None:
    if identity == "anonymous":
        return None
    return ADMIN_TOKEN if identity == "admin-token" else KEYS[identity]


def _allowed(identity: str, permission: Action) -> bool:
    if identity in ("admin", "admin-token"):
        return True
    return identity != "anonymous" and LETTER[Role(identity)] in EXPECTED[permission]


@pytest.mark.parametrize("identity", IDENTITIES)
def test_each_role_gets_exactly_what_the_policy_gives_on_every_call(lab: AccessLab, identity: str) -> None:
    credential = _credential(identity)
    for method, path, body, json_body, permission, allowed_status in CALLS:
        if permission is Action.ACTIVATE:  # four eyes: the latest request must be someone else's
            assert lab.call("POST", f"/v1/models/{V}/request-promotion", KEYS["submitter"])[0].status_code == 201
        response, request_id = lab.call(method, path, credential, body, json_body)
        what = f"{identity} {method} {path}"
        if not _allowed(identity, permission):
            expected = (401, "unauthorized") if credential is None else (403, "forbidden")
            assert (response.status_code, response.json()["error"]) == expected, (what, response.text)
            record = lab.record(request_id)
            assert (record["result"], record["permission"], record["address"]) == ("denied", permission.value,
                                                                                 "127.0.0.1"), record
            assert record["actor"] == ("anonymous" if credential is None else f"key:{identity}"), record
            assert record["roles"] == ([] if credential is None else ROLES[identity]) and record["reason"], record
            continue
        assert response.status_code == allowed_status, (what, response.text)
        if method != "GET" and permission not in (Action.INFER, Action.FEEDBACK):  # a command: it records who
            record = lab.record(request_id)
            actor = "admin-token" if identity == "admin-token" else f"key:{identity}"
            assert record["actor"] == actor and record["roles"] == ROLES.get(identity, ["admin"]), record
            assert record["address"] == "127.0.0.1" and record["policy_digest"], record
            if permission is Action.ACTIVATE:
                assert record["requested_by"] == "key:submitter" and record["version_digest"], record


@pytest.mark.parametrize("case", ["expired", "wrong_audience", "wrong_issuer", "alg_none", "hs256_public_key"])
def test_refused_tokens_over_http_are_each_audited(lab: AccessLab, case: str) -> None:
    provider = lab.provider
    tokens = {
        "expired": (lambda: provider.token(exp=1_000_000, iat=900_000), "expired"),
        "wrong_audience": (lambda: provider.token(aud="another-service"), "audience"),
        "wrong_issuer": (lambda: provider.token(iss="https://evil.example.com"), "issuer"),
        "alg_none": (lambda: unsigned_token(provider.claims()), "algorithm 'none' is not allowed"),
        "hs256_public_key": (lambda: hs256_with_public_key(provider.claims(), provider.rsa_public_pem),
                             "algorithm 'HS256' is not allowed"),
    }
    make, words = tokens[case]
    response, request_id = lab.call("POST", "/v1/models/rollback", make())
    assert (response.status_code, response.json()["error"]) == (401, "invalid_token"), response.text
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    record = lab.record(request_id)
    assert (record["action"], record["result"], record["code"]) == ("rollback", "denied", "invalid_token")
    assert words in record["reason"] and record["actor"] == "anonymous" and record["address"] == "127.0.0.1"
    valid, request_id = lab.call("POST", "/v1/models/rollback", provider.token())  # the same call, a good token
    assert valid.status_code == 409 and lab.record(request_id)["actor"] == "jwt:alice"


def test_whoever_requested_a_promotion_cannot_approve_it(lab: AccessLab) -> None:
    assert lab.call("POST", f"/v1/models/{V}/request-promotion", KEYS["dual"])[0].status_code == 201
    own, request_id = lab.call("POST", f"/v1/models/{V}/activate", KEYS["dual"])
    assert (own.status_code, own.json()["error"]) == (403, "four_eyes") and "cannot also approve" in own.text
    assert lab.record(request_id)["result"] == "denied"
    other, request_id = lab.call("POST", f"/v1/models/{V}/activate", KEYS["releaser2"])
    assert other.status_code == 202, other.text
    assert lab.record(request_id)["requested_by"] == "key:dual"
    unknown, _ = lab.call("POST", "/v1/models/9.9.9/activate", KEYS["releaser2"])
    assert (unknown.status_code, unknown.json()["error"]) == (403, "four_eyes")  # nobody requested it


def test_the_auditor_pages_through_the_whole_log(lab: AccessLab) -> None:
    auditor = KEYS["auditor"]
    seqs: list[int] = []
    hashes: set[str] = set()
    cursor = None
    while True:
        response, _ = lab.call("GET", "/v1/audit?limit=7" + (f"&cursor={cursor}" if cursor else ""), auditor)
        assert response.status_code == 200, response.text
        page = response.json()
        seqs += [record["seq"] for record in page["records"]]
        hashes |= {record["hash"] for record in page["records"]}
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seqs == list(range(seqs[0], 0, -1))  # newest first, none missing, down to the first record
    assert {e["hash"] for e in audit_lines(lab.audit_log) if e["seq"] <= seqs[0]} == hashes
    filtered, _ = lab.call("GET", "/v1/audit?action=swap&limit=1000", auditor)
    assert {r["action"] for r in filtered.json()["records"]} == {"swap"}
    for query, code in (("cursor=12x", "invalid_cursor"), ("limit=0", "invalid_limit"), ("limt=5", "unknown_parameter")):
        bad, _ = lab.call("GET", f"/v1/audit?{query}", auditor)
        assert (bad.status_code, bad.json()["error"]) == (400, code), bad.text


def test_a_version_is_described_with_its_signature_gate_and_requests(lab: AccessLab) -> None:
    assert lab.call("POST", f"/v1/models/{V}/request-promotion", KEYS["submitter"])[0].status_code == 201
    response, _ = lab.call("GET", f"/v1/models/{V}", KEYS["viewer"])
    detail = response.json()
    assert detail["state"] == "serving" and detail["gate"]["passed"], detail
    assert detail["signature"]["signed"] is False and detail["signature"]["problem"] == "unsigned"
    manifest = Path(lab.server.env["OCR_MODEL_REPO"]) / "ppocr" / V / "manifest.json"
    assert detail["signature"]["version_digest"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert "card" in detail and {"requested_by": "key:submitter"}.items() <= detail["promotion_requests"][-1].items()
    for version, status, code in (("9.9.9", 404, "version_not_found"), ("not-a-version", 400, "invalid_version")):
        missing, _ = lab.call("GET", f"/v1/models/{version}", KEYS["viewer"])
        assert (missing.status_code, missing.json()["error"]) == (status, code)
    # the default version is unsigned (signatures are not required here): each of the 3 workers counts
    assert scrape(f"{lab.server.url}/metrics").total("ocr_model_unverified_serving") == 3


def _audit_verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", "audit", "verify", "--audit-log", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_log_of_three_workers_verifies_names_a_bad_line_and_reached_the_syslog_listener(
        lab: AccessLab, tmp_path: Path) -> None:
    lab.call("POST", "/v1/models/rollback", "not-a-key")  # at least one refusal in the log
    snapshot = tmp_path / "audit.log"
    shutil.copyfile(lab.audit_log, snapshot)
    lines = snapshot.read_bytes().splitlines(keepends=True)
    records = audit_lines(snapshot)
    assert {e["worker"] for e in records if "worker" in e} == {0, 1, 2}
    assert len({e["pid"] for e in records if "pid" in e}) == 3 and len(lines) >= 8
    intact = _audit_verify(snapshot)
    assert intact.returncode == 0 and f"{len(lines)} lines, hash chain intact" in intact.stdout, intact.stderr

    changed_at = len(lines) // 2  # 1-based line number of the changed line
    changed = bytearray(lines[changed_at - 1])
    position = changed.index(b'"action": "') + len(b'"action": "')
    changed[position] = ord("X") if changed[position] != ord("X") else ord("Y")
    snapshot.write_bytes(b"".join(lines[:changed_at - 1] + [bytes(changed)] + lines[changed_at:]))
    report = _audit_verify(snapshot)
    assert report.returncode == 1 and f"line {changed_at}: its content was changed" in report.stderr, report.stderr

    deleted = 3
    snapshot.write_bytes(b"".join(lines[:deleted - 1] + lines[deleted:]))
    report = _audit_verify(snapshot)
    assert report.returncode == 1 and f"line {deleted}: the record(s) before it (seq {deleted}) were deleted" \
        in report.stderr, report.stderr

    wanted = [line.rstrip(b"\n").decode("utf-8") for line in lines]
    wait_for(lambda: all(any(line in message for message in lab.listener.messages) for line in wanted), 60,
             "every audit record to reach the syslog listener")
