"""The state directory full, then read-only, under load: pin and audit writes fail with a clear JSON
error and leave nothing half-written, a version published meanwhile is still judged and served, and
requests keep being answered throughout.

The state directory is a real 256 KiB tmpfs (mounting one needs root: skipped otherwise), filled to
the last block by a file and remounted read-only, as a full or failed volume would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from server.governance.audit import AuditLog, verify_chain
from tests.support.lifecycle import ADMIN_TOKEN, Admin, expect_versions, expected_text, load_image, publish_variant, \
    wait_for
from tests.support.load import LoadGenerator
from tests.support.metrics import scrape, uncounted_answers
from tests.support.server import PADDLE_VERSION, copy_version, gunicorn_server

NEW_VERSION = "1.0.1-ppocrv4"


@pytest.fixture()
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "state"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                                           capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path) -> Path:
    """Fill the filesystem to its last block."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def _remount(mount: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount)], check=True)


def _activate(url: str, version: str) -> requests.Response:
    return requests.post(f"{url}/v1/models/{version}/activate", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                         timeout=60)


def _serving(url: str) -> list[tuple[int, str]]:
    """(pid, version) of each live worker, as `ocr_model_info` says (set when a version is activated)."""
    return sorted((int(labels["pid"]), labels["version"]) for labels, value in scrape(f"{url}/metrics").select(
        "ocr_model_info") if value == 1)


def _assert_refused_cleanly(response: requests.Response, state: Path) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "state_unavailable", response.text
    assert "cannot write the pin file" in response.json()["message"]
    pipeline_state = state / "ppocr"
    assert not (pipeline_state / "pin.json").exists()
    assert not [p.name for p in pipeline_state.iterdir() if p.name.startswith(".pin.json.")]  # no temp file left
    assert verify_chain(state / "audit.log").ok  # no torn audit line


def test_a_full_then_read_only_state_directory(tmpfs: Path, tmp_path: Path, default_version_dir: Path) -> None:
    root = tmp_path / "models"
    copy_version(default_version_dir, root, PADDLE_VERSION)
    expected = {PADDLE_VERSION: expected_text(0), NEW_VERSION: expected_text(0)}
    # The SQLite stores of the state directory (recent results for feedback, canary samples) keep their
    # files open for writing, and Linux refuses to remount a filesystem read-only under an open writer:
    # they are off here (their own failures are tested in test_feedback.py and test_judge.py).
    env = {"OCR_ADMIN_TOKEN": ADMIN_TOKEN, "OCR_STATE_DIR": str(tmpfs), "OCR_FEEDBACK_STORE_SIZE": "0",
           "OCR_ROLLOUT_JUDGE_S": "0"}
    with gunicorn_server(root, tmp_path / "logs", workers=2, threads=2, env=env) as server:
        admin = Admin(server.url)
        load = LoadGenerator(server.url, [load_image()], check=expect_versions(expected), clients=4).start()
        with load.window() as window:
            filler = _fill(tmpfs)
            _assert_refused_cleanly(_activate(server.url, PADDLE_VERSION), tmpfs)
            # Published while the state directory is full: the verdict holds for each worker only, but
            # the version is judged and served.
            publish_variant(default_version_dir, root, NEW_VERSION, 0, tmp_path / "work")
            wait_for(lambda: any(o.version == NEW_VERSION for o in load.outcomes), 240,
                     f"{NEW_VERSION} served with a full state directory")

            filler.unlink()
            _remount(tmpfs, "ro")
            try:
                _assert_refused_cleanly(_activate(server.url, PADDLE_VERSION), tmpfs)
                assert admin.models()["versions"]
            finally:
                _remount(tmpfs, "rw")

            response = _activate(server.url, PADDLE_VERSION)
            assert response.status_code == 202, response.text
            assert json.loads((tmpfs / "ppocr" / "pin.json").read_text())["version"] == PADDLE_VERSION
            # Not the worker board: an entry a worker could not rewrite while the directory was unwritable
            # stays as it was until its next pass (seen: "serving 1.0.0" for a worker serving 1.0.1).
            wait_for(lambda: _serving(server.url) == sorted((pid, PADDLE_VERSION) for pid in server.worker_pids()),
                     240, "the workers to follow the pin once the state directory is writable again")
            followed = time.monotonic()
            assert verify_chain(tmpfs / "audit.log").ok
            wait_for(lambda: len([o for o in load.outcomes if o.started > followed]) >= 8, 120, "requests after")
        load.stop()
        window.assert_clean(minimum=8)
        assert "cannot record the verdict" in server.log()  # the full disk was met, not avoided
        # The refused writes upset neither the request counts nor what the version gauge says is served.
        assert uncounted_answers(scrape(f"{server.url}/metrics"), load.outcomes) == ({}, 0)
        assert {o.version for o in load.outcomes if o.started > followed} == {PADDLE_VERSION}


def test_an_audit_line_the_disk_cannot_take_whole_is_not_left_half_written(tmpfs: Path) -> None:
    log = AuditLog(tmpfs / "audit.log")
    log.append("pin", actor="ops", version=PADDLE_VERSION)
    _fill(tmpfs)
    written = tmpfs / "audit.log"
    sizes = set()
    for index in range(200):  # lines of ~1 KiB until one meets the end of the disk, part-way through
        before = written.stat().st_size
        log.append("pin", actor="ops", version=PADDLE_VERSION, reason="x" * (900 + index))
        sizes.add(written.stat().st_size - before)
        if 0 in sizes:
            break
    assert 0 in sizes, "the disk never filled up"
    report = verify_chain(written)
    assert report.ok, report.problem
