"""The admin API's guard with only OCR_ADMIN_TOKEN (no access policy), and its validation, over HTTP
against real Gunicorn servers (roles and JWTs: test_access_server.py).

These servers have no model to load (an empty repository), so they start in seconds; the happy paths
(pin, unpin, rollback moving real workers) run under load in test_hot_swap.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import requests

from server.repository.layout import ModelRepository
from tests.support.lifecycle import ADMIN_TOKEN, audit_lines
from tests.support.server import RunningServer, gunicorn_server

CALLS = [("POST", "/v1/models/1.0.0/activate", "pin"), ("DELETE", "/v1/models/pin", "unpin"),
         ("POST", "/v1/models/rollback", "rollback")]


def _server(tmp_path: Path, token: str) -> Iterator[tuple[RunningServer, Path]]:
    root = tmp_path / "models"
    ModelRepository(root).pipeline_dir.mkdir(parents=True)
    (root / "ppocr" / "latest").mkdir()  # not a version name: listed as ignored
    env = {"OCR_ADMIN_TOKEN": token, "OCR_MODEL_POLL_S": "1"}
    with gunicorn_server(root, tmp_path / "logs", workers=1, threads=2, env=env, wait_ready=False) as server:
        server.wait_alive(60)
        yield server, root / ".state" / "audit.log"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    yield from _server(tmp_path_factory.mktemp("admin"), ADMIN_TOKEN)


@pytest.fixture(scope="module")
def unguarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    yield from _server(tmp_path_factory.mktemp("admin-open"), "")


@pytest.mark.parametrize("method,path,action", CALLS)
def test_mutating_calls_require_a_bearer_token(guarded: tuple[RunningServer, Path], method: str, path: str,
                                               action: str) -> None:
    server, audit_log = guarded
    before = len(audit_lines(audit_log))
    cases = [
        ({}, 401, "unauthorized"),
        ({"Authorization": f"Basic {ADMIN_TOKEN}"}, 401, "invalid_authorization"),
        ({"Authorization": "Bearer"}, 401, "invalid_authorization"),
        ({"Authorization": f"Bearer {ADMIN_TOKEN} extra"}, 401, "invalid_authorization"),
        # RFC 6750: a credential that is not valid is 401 invalid_token (403 is for a valid one without the role)
        ({"Authorization": f"Bearer {ADMIN_TOKEN}x"}, 401, "invalid_token"),
        ({"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}, 401, "invalid_token"),
        ({"Authorization": "Bearer \u00e9t\u00e9"}, 401, "invalid_token"),
    ]
    for headers, status, code in cases:
        response = requests.request(method, f"{server.url}{path}", headers=headers, timeout=30)
        assert response.status_code == status, (headers, response.text)
        assert response.json()["error"] == code
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert not (audit_log.parent / "ppocr" / "pin.json").exists()
    denied = audit_lines(audit_log)[before:]
    assert [(e["action"], e["result"]) for e in denied] == [(action, "denied")] * len(cases)
    assert all(e["actor"] == "anonymous" and e["address"] == "127.0.0.1" and e["reason"] and e["request_id"]
               for e in denied)


def test_calls_are_refused_when_no_token_is_configured(unguarded: tuple[RunningServer, Path]) -> None:
    server, audit_log = unguarded
    for method, path, action in CALLS:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
            response = requests.request(method, f"{server.url}{path}", headers=headers, timeout=30)
            assert response.status_code == 403 and response.json()["error"] == "admin_disabled", response.text
    assert {(e["action"], e["result"]) for e in audit_lines(audit_log)} == {
        ("pin", "refused"), ("unpin", "refused"), ("rollback", "refused")}
    assert requests.get(f"{server.url}/v1/models", timeout=30).status_code == 200  # listing stays open


def test_activate_and_rollback_validate_before_writing(guarded: tuple[RunningServer, Path]) -> None:
    server, audit_log = guarded
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    before = len(audit_lines(audit_log))
    cases = [("not-a-version", 400, "invalid_version"), ("1.0.0-", 400, "invalid_version"),
             ("9.9.9", 404, "version_not_found"), ("latest", 400, "invalid_version")]
    for version, status, code in cases:
        response = requests.post(f"{server.url}/v1/models/{version}/activate", headers=auth, timeout=30)
        assert (response.status_code, response.json()["error"]) == (status, code), response.text
    response = requests.post(f"{server.url}/v1/models/rollback", headers=auth, timeout=30)
    assert (response.status_code, response.json()["error"]) == (409, "no_rollback_target")
    response = requests.delete(f"{server.url}/v1/models/pin", headers=auth, timeout=30)
    assert response.status_code == 200 and response.json() == {"pin": None, "removed": None}
    events = audit_lines(audit_log)[before:]
    assert [(e["action"], e["result"]) for e in events] == [("pin", "refused")] * 4 + [
        ("rollback", "refused"), ("unpin", "ok")]
    assert events[-1]["reason"] == "no pin was set"


def test_listing_without_models(guarded: tuple[RunningServer, Path]) -> None:
    server, _ = guarded
    listing = requests.get(f"{server.url}/v1/models", timeout=30).json()
    assert listing["versions"] == [] and listing["desired"] is None and listing["pin"] is None
    assert listing["ignored"] == [{"name": "latest", "reason": "not a version name (MAJOR[.MINOR[.PATCH]][-label])"}]
    assert [w["serving"] for w in listing["workers"]] == [None]
    assert requests.get(f"{server.url}/readyz", timeout=30).status_code == 503
