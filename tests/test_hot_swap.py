"""Hot swap under load, against one real Gunicorn server (2 workers x 4 threads) and one load generator
(8 client threads posting a rendered page without pause) shared by every test of this module.

Every response of every test is checked where it lands: HTTP 200, a version we published, and the text
that version reads (see tests/support/lifecycle.py for how versions are told apart). Each test opens its
own window on the load and asserts that nothing in it failed, so a fault is pinned to its own test.
The tests run in file order and each starts from the state the previous one left (read from the API).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from server.repository.layout import ModelRepository
from server.repository.publish import publish
from tests.support.lifecycle import (
    ADMIN_TOKEN,
    Admin,
    audit_lines,
    corrupt,
    expect_versions,
    expected_text,
    load_image,
    make_source,
    wait_for,
    write_golden_set,
)
from tests.support.load import LoadGenerator
from tests.support.server import gunicorn_server
from tests.support.swaplab import CONVERGE_BOUND_S, SwapLab as Lab, audit_time

SETTLE_S = 3.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, default_version_dir: Path) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("hotswap")
    repo_root, state_dir, work = base / "models", base / "state", base / "work"
    publish(default_version_dir, ModelRepository(repo_root), "1.0.0", created_by="tests")
    write_golden_set(repo_root / "golden")
    env = {
        "OCR_ADMIN_TOKEN": ADMIN_TOKEN,
        "OCR_STATE_DIR": str(state_dir),  # outside the repository, so the repository can vanish
        "OCR_MODEL_POLL_S": "1",
        "OCR_MODEL_DEBOUNCE_S": "0.3",
        "OCR_MODEL_SETTLE_S": str(SETTLE_S),
        "OCR_WARMUP_SHAPES": "320x320",
        # A loaded shared machine can stall a worker for minutes (page-cache thrashing without swap was
        # seen here); the test is about swaps, not about Gunicorn's watchdog.
        "OCR_TIMEOUT": "600",
    }
    with gunicorn_server(repo_root, base / "logs", workers=2, threads=4, env=env) as server:
        expected = {"1.0.0": expected_text(0)}
        load = LoadGenerator(server.url, [load_image()], expect_versions(expected), clients=8)
        load.start()
        try:
            yield Lab(server, Admin(server.url), load, expected, repo_root, state_dir, work, default_version_dir)
        finally:
            load.stop()


def test_versions_published_pinned_rolled_back_and_unpinned_under_load(lab: Lab) -> None:
    lab.admin.unpin()
    m, start, earlier = lab.next_major(), lab.current(), len(audit_lines(lab.audit_log))
    with lab.load.window() as window:
        lab.publish((f"{m}.1.0", 1))
        lab.converge(f"{m}.1.0")

        lab.publish((f"{m}.2.0", 2), (f"{m}.3.0", 3), (f"{m}.4.0", 4))
        lab.converge(f"{m}.4.0")  # several at once: straight to the highest

        response = lab.admin.activate(f"{m}.2.0")
        assert response.status_code == 202, response.text
        lab.converge(f"{m}.2.0")
        lab.publish((f"{m}.5.0", 5), (f"{m}.6.0", 6), (f"{m}.7.0", 7))
        lab.hold(f"{m}.2.0", seconds=4)  # pinned: newer versions do not take over
        assert lab.admin.models()["pin"]["effective"] is True

        response = lab.admin.unpin()
        assert response.status_code == 200 and response.json()["removed"] == f"{m}.2.0", response.text
        lab.converge(f"{m}.7.0")

        response = lab.admin.rollback()
        assert response.status_code == 202, response.text
        assert response.json()["from"] == f"{m}.7.0" and response.json()["pin"]["version"] == f"{m}.6.0"
        lab.converge(f"{m}.6.0")
        lab.publish((f"{m}.8.0", 8), (f"{m}.9.0", 9), (f"{m}.10.0", 10))
        lab.hold(f"{m}.6.0", seconds=4)

        assert lab.admin.unpin().json()["removed"] == f"{m}.6.0"
        lab.converge(f"{m}.10.0")
    window.assert_clean(minimum=50)
    assert {start, f"{m}.1.0", f"{m}.4.0", f"{m}.2.0", f"{m}.7.0", f"{m}.6.0", f"{m}.10.0"} <= window.versions()
    print("convergence seconds:", lab.convergence_s)

    listing = lab.admin.models()
    states = {v["version"]: v["state"] for v in listing["versions"]}
    assert states[f"{m}.10.0"] == "serving" and states[f"{m}.6.0"] == "retired" and states[f"{m}.3.0"] == "new"
    served = next(v for v in listing["versions"] if v["version"] == f"{m}.10.0")
    assert served["gate"]["passed"] and served["gate"]["cer"] == 0.0
    assert served["gate"]["golden_set"] == str(lab.repo_root / "golden")
    assert served["manifest"]["created_by"] == "tests" and served["manifest"]["version"] == f"{m}.10.0"

    # Every admin action is in the audit log with who did it; every worker logged each of its swaps.
    admin_events = [(e["action"], e["version"]) for e in audit_lines(lab.audit_log)[earlier:]
                    if e["actor"] == "admin-token"]
    assert admin_events == [("pin", f"{m}.2.0"), ("unpin", f"{m}.2.0"), ("rollback", f"{m}.6.0"), ("unpin", f"{m}.6.0")]
    for version in (f"{m}.1.0", f"{m}.4.0", f"{m}.2.0", f"{m}.7.0", f"{m}.6.0", f"{m}.10.0"):
        assert sorted(e["worker"] for e in lab.events("swap", version)) == [0, 1], version
        assert len(lab.events("approve", version)) <= 1  # decided once, machine-wide


def test_symlink_pointing_outside_the_repository_is_rejected(lab: Lab) -> None:
    current, version = lab.current(), f"{lab.next_major()}.0.0"
    outside = publish(make_source(lab.base, lab.work / "src-outside", 15), ModelRepository(lab.work / "elsewhere"),
                      version, created_by="tests")
    with lab.load.window() as window:
        (lab.pipeline / version).symlink_to(outside, target_is_directory=True)
        verdict = lab.wait_verdict(version)
        lab.hold(current, seconds=2)
    window.assert_clean()
    assert window.versions() == {current}
    assert verdict["state"] == "rejected" and "outside the model repository" in verdict["reason"]
    assert [e["result"] for e in lab.events("reject", version)] == ["outside_repository"]
    assert not lab.events("load", version)  # never opened


def test_checksum_mismatch_is_rejected(lab: Lab) -> None:
    current, version = lab.current(), f"{lab.next_major()}.0.0"
    staged = lab.stage(version)
    params = staged / "det" / "inference.pdiparams"
    data = bytearray(params.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte after the manifest was written
    params.write_bytes(bytes(data))
    with lab.load.window() as window:
        os.rename(staged, lab.pipeline / version)
        verdict = lab.wait_verdict(version)
        lab.hold(current, seconds=1)
    window.assert_clean()
    assert window.versions() == {current}
    assert verdict["state"] == "rejected"
    assert "det/inference.pdiparams: sha256 mismatch" in verdict["reason"]
    assert [e["result"] for e in lab.events("reject", version)] == ["verify_failed"]


def test_missing_dictionary_is_rejected(lab: Lab) -> None:
    current, version = lab.current(), f"{lab.next_major()}.0.0"
    staged = lab.stage(version)
    (staged / "rec" / "ppocr_keys_v1.txt").unlink()
    with lab.load.window() as window:
        os.rename(staged, lab.pipeline / version)
        verdict = lab.wait_verdict(version)
        lab.hold(current, seconds=1)
    window.assert_clean()
    assert verdict["state"] == "rejected" and "rec/ppocr_keys_v1.txt: missing" in verdict["reason"]


def test_corrupt_weights_are_rejected_without_harming_a_worker(lab: Lab) -> None:
    current, version = lab.current(), f"{lab.next_major()}.0.0"
    pids = sorted(lab.server.worker_pids())
    source = make_source(lab.base, lab.work / f"src-{version}", 0)
    corrupt(source / "det" / "inference.pdmodel")  # the publisher hashes the damaged file: checksums pass
    with lab.load.window() as window:
        publish(source, ModelRepository(lab.repo_root), version, created_by="tests")
        verdict = lab.wait_verdict(version)
        lab.hold(current, seconds=1)
    window.assert_clean()
    assert sorted(lab.server.worker_pids()) == pids  # no worker crashed or was replaced
    assert verdict["state"] == "rejected" and verdict["verdict"]["result"] in {"crashed", "load_error"}, verdict
    print("corrupt weights:", verdict["reason"])


def test_versions_that_read_worse_are_rejected_by_the_gate(lab: Lab) -> None:
    current, m = lab.current(), lab.next_major()
    garbage = lab.stage(f"{m}.0.0", rotate_all=True)  # loads and runs; every character is wrong
    worse = lab.stage(f"{m}.0.1", swap="AE")  # reads A as E and back: a few percent of characters wrong
    with lab.load.window() as window:
        os.rename(garbage, lab.pipeline / f"{m}.0.0")
        os.rename(worse, lab.pipeline / f"{m}.0.1")
        slightly = lab.wait_verdict(f"{m}.0.1", timeout=CONVERGE_BOUND_S)
        hopeless = lab.wait_verdict(f"{m}.0.0", timeout=CONVERGE_BOUND_S)
        lab.hold(current, seconds=1)
    window.assert_clean()
    assert window.versions() == {current}
    for verdict in (slightly, hopeless):
        assert verdict["state"] == "rejected" and verdict["verdict"]["result"] == "gate_rejected", verdict
        assert not verdict["gate"]["passed"] and verdict["gate"]["baseline_version"] == current
        assert verdict["gate"]["baseline_cer"] == 0.0
    # Under the ceiling, but worse than the live version by more than the tolerance.
    assert 0.01 < slightly["gate"]["cer"] < slightly["gate"]["max_cer"]
    assert "worse than the live version" in slightly["reason"]
    assert hopeless["gate"]["cer"] > 0.5 and "above the ceiling" in hopeless["reason"]
    # One worker evaluated each; the other followed the verdict instead of loading it too.
    for version in (f"{m}.0.0", f"{m}.0.1"):
        assert len(lab.events("load", version)) == 1 and len(lab.events("reject", version)) == 1


def test_watched_directory_briefly_unavailable(lab: Lab) -> None:
    current = lab.current()
    away = lab.repo_root.with_name("models.away")
    rearmed_before = lab.admin.models()["watcher"]["rearmed"]
    with lab.load.window() as window:
        gone = time.time()
        os.rename(lab.repo_root, away)
        wait_for(lambda: lab.admin.models()["repository_error"], 30, "the repository to be reported unreadable")
        lab.hold(current, seconds=3)  # nothing to load from, nothing unloaded
        os.rename(away, lab.repo_root)
        back = time.time()
        wait_for(lambda: lab.admin.models()["watcher"]["rearmed"] > rearmed_before, 30, "the watcher to re-arm")
        lab.hold(current, seconds=2)
        # Detection goes on: a new (broken) version is noticed and judged by a worker's lifecycle pass.
        version = f"{lab.next_major()}.0.0"
        staged = lab.stage(version)
        (staged / "rec" / "ppocr_keys_v1.txt").unlink()
        os.rename(staged, lab.pipeline / version)
        assert lab.wait_verdict(version)["state"] == "rejected"
        lab.hold(current, seconds=1)
    window.assert_clean()
    assert window.versions() == {current}
    # While the repository was gone (and just after), no worker judged, loaded or swapped anything: a
    # missing mount is not a verdict on the versions in it.
    during = [e for e in audit_lines(lab.audit_log) if audit_time(gone) <= e["time"] <= audit_time(back + 2)]
    assert not [e for e in during if e["action"] in ("reject", "approve", "load", "swap")], during
    results = {e["result"] for e in during if e["action"] == "repository"}
    assert "unavailable" in results, during
    assert [e for e in audit_lines(lab.audit_log) if e["action"] == "repository" and e["result"] == "available"]


def test_half_copied_version_waits_then_serves(lab: Lab) -> None:
    lab.admin.unpin()
    version = f"{lab.next_major()}.0.0"
    staged = lab.stage(version, k=11)
    target = lab.pipeline / version
    files = sorted(p.relative_to(staged) for p in staged.rglob("*") if p.is_file())
    files.sort(key=lambda rel: rel.name != "manifest.json")  # the worst order: the manifest first
    seen: list[tuple[float, str | None]] = []  # (when the answer arrived, state)
    stop = threading.Event()

    def observe() -> None:
        while not stop.is_set():
            listed = lab.admin.version(version)
            seen.append((time.monotonic(), listed["state"] if listed else None))
            time.sleep(0.2)

    lab.expected[version] = expected_text(11)
    with lab.load.window() as window:
        observer = threading.Thread(target=observe)
        observer.start()
        try:
            for index, rel in enumerate(files):  # files appear one by one over several seconds
                if index:
                    time.sleep(0.7)
                if index == len(files) - 1:  # under load the admin API can be slower than the copying
                    wait_for(lambda: "pending" in [state for _, state in seen], 120, f"{version} seen pending")
                last_copy = time.monotonic()
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(staged / rel, target / rel)
        finally:
            stop.set()
            observer.join()
        lab.converge(version)
    window.assert_clean()
    while_copying = [state for answered, state in seen if answered < last_copy]  # surely incomplete then
    assert len(files) >= 7 and "pending" in while_copying
    assert set(while_copying) <= {None, "pending"}, f"a version being copied was {set(while_copying)}"
    assert not lab.events("reject", version)


def test_serving_version_deleted_from_disk(lab: Lab) -> None:
    lab.admin.unpin()
    version = f"{lab.next_major()}.0.0"
    lab.publish((version, 12))
    lab.converge(version)
    # What a restart would serve: the highest approved version left on disk.
    fallback = next(v["version"] for v in lab.admin.models()["versions"]
                    if v["version"] != version and v["verdict"] and v["verdict"]["decision"] == "approved")
    with lab.load.window() as window:
        shutil.rmtree(lab.pipeline / version)
        lab.converge(fallback)
    window.assert_clean()
    assert window.versions() == {version, fallback}
    # Recorded by each worker that noticed the loss while still serving it (a worker whose scan caught
    # the directory half-deleted saw a damaged version instead and moved on just the same).
    assert lab.events("missing", version)


def test_restart_keeps_the_pin_and_the_rejections(lab: Lab) -> None:
    """Gunicorn replaces every worker (SIGHUP); the new ones read the pin and the verdicts at start.

    No load window here: a process restart is not zero-downtime (see README, "Readiness and restarts");
    what is checked is what the new workers choose to serve and that nothing is judged twice."""
    m = lab.next_major()
    pinned = f"{m}.0.0"
    lab.publish((pinned, 13), (f"{m}.1.0", 14))
    lab.converge(f"{m}.1.0")
    response = lab.admin.activate(pinned)
    assert response.status_code == 202, response.text
    lab.converge(pinned)
    old_pids = set(lab.server.worker_pids())
    restarted = time.time()
    os.kill(lab.server.process.pid, signal.SIGHUP)
    wait_for(lambda: not old_pids & set(lab.server.worker_pids()) and len(lab.server.worker_pids()) == 2, 120,
             "Gunicorn to replace its workers")
    lab.converge(pinned)  # from their first load: no detour through the highest version
    events = [e for e in audit_lines(lab.audit_log) if e["time"] >= audit_time(restarted)]
    assert {(e["action"], e["version"]) for e in events if e["action"] in ("load", "swap")} == {
        ("load", pinned), ("swap", pinned)}  # rejected versions were not tried again
    assert not [e for e in events if e["action"] in ("reject", "approve")]  # nothing judged twice
    assert lab.admin.models()["pin"]["effective"] is True
    assert requests.get(f"{lab.server.url}/readyz", timeout=30).status_code == 200
    assert lab.admin.unpin().status_code == 200  # leave the lab as the other tests expect it: no pin
