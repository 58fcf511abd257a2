"""A canary on a real Gunicorn server (2 workers, real PP-OCRv4 weights) under load: a share of clients
reads with the candidate on every worker alike, each client stays on one version, responses say which
version answered and whether it was the canary, and promoting moves every worker with no failed request.
Versions are told apart by what they read (tests/support/lifecycle.py: digit variants)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import requests

from server.repository.layout import ModelRepository
from server.repository.publish import publish
from tests.support.lifecycle import (
    ADMIN_TOKEN,
    Admin,
    audit_lines,
    expect_versions,
    expected_text,
    load_image,
    publish_variant,
    wait_converged,
    wait_for,
    write_golden_set,
)
from tests.support.images import squash
from tests.support.load import LoadGenerator
from tests.support.server import RunningServer, gunicorn_server

CLIENTS = [f"till-{n:02d}" for n in range(24)]


def _read(url: str, client: str) -> dict[str, Any]:
    """One OCR call on a new connection (so it lands on either worker) as `client`."""
    response = requests.post(f"{url}/v1/ocr", data=load_image(),
                             headers={"Content-Type": "image/png", "X-Client-Id": client}, timeout=300)
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["X-Model-Version"] == body["model"]["version"]
    return body


def _server(tmp_path: Path, default_version_dir: Path, **env: str) -> AbstractContextManager[RunningServer]:
    """A 2x2 server on a repository holding 1.0.0 and the letters-only golden set; `env` adds settings."""
    repo_root = tmp_path / "models"
    publish(default_version_dir, ModelRepository(repo_root), "1.0.0", created_by="tests")
    write_golden_set(repo_root / "golden")
    return gunicorn_server(repo_root, tmp_path / "logs", workers=2, threads=2, env={
        "OCR_ADMIN_TOKEN": ADMIN_TOKEN, "OCR_MODEL_POLL_S": "1", "OCR_MODEL_DEBOUNCE_S": "0.3",
        "OCR_MODEL_SETTLE_S": "1", "OCR_WARMUP_SHAPES": "320x320", "OCR_TIMEOUT": "600", **env})


def test_canary_routes_clients_stickily_then_promote_moves_every_worker(
        tmp_path: Path, default_version_dir: Path) -> None:
    repo_root = tmp_path / "models"
    # promote pins at once here; the bake is the next test's
    with _server(tmp_path, default_version_dir, OCR_ROLLOUT_BAKE_S="0") as server:
        admin = Admin(server.url)
        wait_converged(admin, server.worker_pids(), "1.0.0", 120)
        assert admin.activate("1.0.0").status_code == 202  # hold 1.0.0 while the candidate is published
        publish_variant(default_version_dir, repo_root, "2.0.0", 3, tmp_path / "work")
        expected = {"1.0.0": expected_text(0), "2.0.0": expected_text(3)}
        wait_for(lambda: admin.version("2.0.0"), 60, "2.0.0 to be listed")

        load = LoadGenerator(server.url, [load_image()], expect_versions(expected), clients=4).start()
        try:
            with load.window() as window:
                url = f"{server.url}/v1/models/2.0.0/canary"
                assert requests.post(url, json={"percent": 50}, timeout=30).status_code == 401
                bad = requests.post(url, json={"percent": 0}, headers=admin.headers, timeout=30)
                assert bad.status_code == 400 and bad.json()["error"] == "invalid_percent"
                started = requests.post(url, json={"percent": 50}, headers=admin.headers, timeout=30)
                assert started.status_code == 202, started.text
                assert started.json()["rollout"]["stable"] == "1.0.0"
                wait_for(lambda: sorted((admin.models()["rollout"] or {}).get("workers", [])) == [0, 1], 180,
                         "both workers to hold the candidate")

                seen: dict[str, set[tuple[str, bool]]] = {client: set() for client in CLIENTS}
                for _ in range(2):
                    for client in CLIENTS:
                        body = _read(server.url, client)
                        version, canary = body["model"]["version"], body["model"]["canary"]
                        assert canary == (version == "2.0.0")
                        assert squash(body["results"][0]["text"]) == squash(expected[version])
                        seen[client].add((version, canary))
                assert all(len(answers) == 1 for answers in seen.values()), seen  # sticky per client
                on_candidate = sum(("2.0.0", True) in answers for answers in seen.values())
                assert 0 < on_candidate < len(CLIENTS)

                promoted = requests.post(f"{server.url}/v1/models/2.0.0/promote", headers=admin.headers, timeout=30)
                assert promoted.status_code == 202, promoted.text
                wait_converged(admin, server.worker_pids(), "2.0.0", 180)
                wait_for(lambda: admin.models()["rollout"] is None and all(
                    w["canary"] is None for w in admin.models()["workers"]), 60, "the canary to end")
                assert {(b["model"]["version"], b["model"]["canary"]) for b in
                        (_read(server.url, client) for client in CLIENTS[:6])} == {("2.0.0", False)}
            window.assert_clean(minimum=4)
        finally:
            load.stop()


def test_during_a_bake_one_rollback_call_returns_every_client_without_a_load(
        tmp_path: Path, default_version_dir: Path) -> None:
    repo_root = tmp_path / "models"
    # the default bake, 10 minutes; no judge to end it
    with _server(tmp_path, default_version_dir, OCR_ROLLOUT_JUDGE_S="0") as server:
        admin = Admin(server.url)
        wait_converged(admin, server.worker_pids(), "1.0.0", 120)
        publish_variant(default_version_dir, repo_root, "2.0.0", 3, tmp_path / "work")
        expected = {"1.0.0": expected_text(0), "2.0.0": expected_text(3)}
        wait_for(lambda: admin.version("2.0.0"), 60, "2.0.0 to be listed")
        load = LoadGenerator(server.url, [load_image()], expect_versions(expected), clients=4,
                             client_id=lambda client, sent: f"bake-{client}-{sent}").start()
        try:
            with load.window() as window:
                assert admin.canary("2.0.0", percent=50).status_code == 202
                wait_for(lambda: sorted((admin.models()["rollout"] or {}).get("workers", [])) == [0, 1], 180,
                         "both workers to hold the candidate")
                promoted = admin.promote("2.0.0")
                assert promoted.status_code == 202 and promoted.json()["rollout"]["phase"] == "bake", promoted.text
                wait_for(lambda: {_read(server.url, c)["model"]["version"] for c in CLIENTS[:8]} == {"2.0.0"}, 60,
                         "every client on 2.0.0 during the bake")
                loads_before = sum(1 for r in audit_lines(repo_root / ".state" / "audit.log") if r["action"] == "load")
                back = admin.rollback()
                assert back.status_code == 202 and back.json()["from"] == "2.0.0", back.text
                wait_for(lambda: {_read(server.url, c)["model"]["version"] for c in CLIENTS[:8]} == {"1.0.0"}, 30,
                         "every client back on 1.0.0", interval=0.2)
            window.assert_clean(minimum=10)
        finally:
            load.stop()
        records = audit_lines(repo_root / ".state" / "audit.log")
        assert sum(1 for r in records if r["action"] == "load") == loads_before  # no version was loaded again
        assert admin.version("2.0.0")["state"] == "rejected"  # type: ignore[index]
