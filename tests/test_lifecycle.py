"""Pieces of the model lifecycle on their own: the policy, the shared state files, locks and the audit log
across processes, the watcher's recovery, the manager's snapshots, the gate's decision and golden sets.
The controller's decisions are in test_controller.py; the whole lifecycle under load against real
Gunicorn in test_hot_swap.py."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from server.governance.audit import AuditLog, read_audit, verify_chain
from server.lifecycle.manager import ModelManager
from server.lifecycle.pins import Pin, PinStore
from server.lifecycle.policy import gated_against_live, preference, rollback_target
from server.lifecycle.source import Inspection, Scan
from server.lifecycle.states import VersionState
from server.lifecycle.verdicts import Verdict, VerdictStore
from server.lifecycle.watcher import RepositoryWatcher
from server.quality.gate import GatePolicy, GatePolicyError, GoldenScore, judge
from server.quality.golden import GoldenSet, GoldenSetError, builtin_golden_set, load_golden_set, resolve_golden_set
from server.storage.locks import FileLock
from tests.support.images import encode, render_text
from tests.support.lifecycle import wait_for, write_golden_set


def scan_of(**states: VersionState) -> Scan:
    versions = {name.replace("_", "."): Inspection(name.replace("_", "."), Path(name), state, "", f"fp-{name}", 0.0)
                for name, state in states.items()}
    return Scan(at=0.0, versions=versions)


def verdict(version: str, state: VersionState = VersionState.REJECTED, fingerprint: str | None = None) -> Verdict:
    return Verdict(version, fingerprint or f"fp-{version.replace('.', '_')}", state, "gate_rejected", "worse")


# -- policy ---------------------------------------------------------------------------------------------

def test_highest_eligible_wins_and_a_pin_overrides_it() -> None:
    scan = scan_of(**{"1_0": VersionState.NEW, "1_1": VersionState.NEW, "1_2": VersionState.PENDING,
                      "1_3": VersionState.NEW, "2_0": VersionState.REJECTED})
    verdicts = {"1.3": verdict("1.3")}
    assert preference(scan, verdicts, None).order == ["1.1", "1.0"]
    pinned = preference(scan, verdicts, Pin("1.0"))
    assert pinned.order == ["1.0", "1.1"] and pinned.pin_effective


def test_only_a_version_pinned_below_the_live_one_escapes_the_comparison_with_it() -> None:
    assert gated_against_live("2.0.0", "1.0.0", None)  # an upgrade by highest-wins
    assert gated_against_live("2.0.0", "1.0.0", Pin("2.0.0"))  # an upgrade by a pin
    assert gated_against_live("1.0.0", "2.0.0", Pin("1.5.0"))  # lower, but not the pinned version
    assert not gated_against_live("1.0.0", "2.0.0", Pin("1.0.0", action="rollback"))
    assert not gated_against_live("1.0.0-ppocrv4", "3.4.0-ppocrv6_small_cls", Pin("1.0.0-ppocrv4"))


def test_a_pin_on_an_ineligible_version_is_ignored_with_a_reason() -> None:
    scan = scan_of(**{"1_0": VersionState.NEW, "1_3": VersionState.NEW})
    ignored = preference(scan, {"1.3": verdict("1.3")}, Pin("1.3"))
    assert ignored.order == ["1.0"] and not ignored.pin_effective and "rejected: worse" in ignored.pin_reason
    assert "not in the repository" in preference(scan, {}, Pin("9.9")).pin_reason
    # A verdict on other files (the version was republished in place) no longer applies.
    assert preference(scan, {"1.3": verdict("1.3", fingerprint="old")}, Pin("1.3")).pin_effective


def test_rollback_steps_below_what_serves() -> None:
    scan = scan_of(**{"1_0": VersionState.NEW, "1_1": VersionState.NEW, "1_2": VersionState.NEW,
                      "1_3": VersionState.NEW})
    verdicts = {"1.2": verdict("1.2")}
    assert rollback_target(scan, verdicts, None, served=["1.3", "1.3"]) == ("1.3", "1.1")
    # The new version is not loaded anywhere yet: roll back from what clients get.
    assert rollback_target(scan, verdicts, None, served=["1.1"]) == ("1.1", "1.0")
    assert rollback_target(scan, verdicts, Pin("1.0"), served=["1.0"]) == ("1.0", None)


# -- shared state ---------------------------------------------------------------------------------------

def test_first_verdict_stands_until_the_files_change(tmp_path: Path) -> None:
    store = VerdictStore(tmp_path / "verdicts")
    first, created = store.record(Verdict("1.0", "a", VersionState.REJECTED, "load_error", "broken"))
    assert created and first.reason == "broken"
    standing, created = store.record(Verdict("1.0", "a", VersionState.READY, "success", "fine"))
    assert not created and standing.state is VersionState.REJECTED
    assert store.current("1.0", "b") is None
    replaced, created = store.record(Verdict("1.0", "b", VersionState.READY, "success", "fine"))
    assert created and store.current("1.0", "b").approved  # type: ignore[union-attr]
    store.mark_served("1.0", "b")
    assert store.get("1.0").served_at  # type: ignore[union-attr]


def test_pin_file_round_trip_and_hand_written_or_broken_pins(tmp_path: Path) -> None:
    store = PinStore(tmp_path / "pin.json")
    assert store.read().pin is None and store.read().error is None
    store.write("1.2.0", actor="api:10.0.0.1")
    assert store.read().pin.version == "1.2.0"  # type: ignore[union-attr]
    (tmp_path / "pin.json").write_text('{"version": "1.3.0"}')  # written by hand or by a config tool
    assert store.read().pin.version == "1.3.0"  # type: ignore[union-attr]
    for broken in ("{not json", '{"version": "../../etc"}', '["1.0.0"]'):
        (tmp_path / "pin.json").write_text(broken)
        read = store.read()
        assert read.pin is None and "pin file ignored" in (read.error or "")
    assert store.clear().pin is None and not (tmp_path / "pin.json").exists()


def _append_many(path: str, writer: int) -> None:
    log = AuditLog(Path(path))
    for i in range(200):
        log.append("load", actor=f"worker-{writer}", version="1.0.0", reason="x" * 300, i=i)


def test_audit_lines_from_many_processes_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_many, args=(str(path), n)) for n in range(4)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
    events = read_audit(path)  # every line parses as JSON
    assert len(events) == 800
    assert {tuple(sorted(e)) for e in events} == {
        ("action", "actor", "hash", "i", "prev", "reason", "result", "seq", "time", "version")}
    assert verify_chain(path).ok  # the lines form one hash chain (server.governance.audit)
    for writer in range(4):
        assert [e["i"] for e in events if e["actor"] == f"worker-{writer}"] == list(range(200))


def _hold_lock(path: str, held: multiprocessing.Event, release: multiprocessing.Event) -> None:
    lock = FileLock(Path(path))
    lock.acquire()
    held.set()
    release.wait(30)
    lock.release()


def test_load_lock_is_exclusive_across_processes_and_stoppable(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path / "load.lock"), held, release))
    holder.start()
    assert held.wait(30)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    assert FileLock(tmp_path / "load.lock").acquire(stop, poll_s=0.05) is False  # gave up when stopped
    assert time.monotonic() - started >= 0.4
    release.set()
    holder.join(30)
    lock = FileLock(tmp_path / "load.lock")
    assert lock.acquire(threading.Event()) is True
    lock.release()


# -- watcher --------------------------------------------------------------------------------------------

def test_watcher_reports_changes_and_rearms_after_its_directory_comes_back(tmp_path: Path) -> None:
    root = tmp_path / "models"
    (root / "ppocr").mkdir(parents=True)
    changes: list[str] = []
    watcher = RepositoryWatcher([root], lambda path: "ppocr" in path and not path.endswith(".tmp"),
                                changes.append, check_s=0.2)
    watcher.start()
    try:
        wait_for(lambda: watcher.armed, 10, "the watcher to arm")
        (root / "ppocr" / "1.0.0").mkdir()
        wait_for(lambda: any("1.0.0" in c for c in changes), 10, "an event for 1.0.0")
        (root / "ppocr" / "ignored.tmp").write_text("x")
        shutil.rmtree(root)  # the watched directory itself disappears
        wait_for(lambda: not watcher.armed, 10, "the watcher to notice")
        time.sleep(0.5)
        (root / "ppocr").mkdir(parents=True)
        wait_for(lambda: watcher.rearmed == 1, 10, "the watcher to re-arm")
        (root / "ppocr" / "2.0.0").mkdir()
        wait_for(lambda: any("2.0.0" in c for c in changes), 10, "an event after re-arming")
        assert not any("ignored.tmp" in c for c in changes)
    finally:
        watcher.stop()


# -- manager --------------------------------------------------------------------------------------------

class _Model:
    """Stands in for a LoadedModel: the manager only needs `version` and `close()`."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_a_request_keeps_its_snapshot_and_the_last_one_frees_a_retired_version() -> None:
    manager = ModelManager()
    first, second = _Model("1"), _Model("2")
    manager.activate(first)  # type: ignore[arg-type]
    with manager.acquire() as held:
        old = manager.activate(second)  # type: ignore[arg-type]
        assert held is first and not first.closed  # in use: not freed under the request
        with manager.acquire() as fresh:
            assert fresh is second  # new requests get the new version at once
        assert [m.version for m in manager.draining()] == ["1"]  # type: ignore[attr-defined]
        assert old is not None and not old.wait_closed(0.05)
    assert first.closed and old.wait_closed(0)
    assert manager.draining() == []
    assert manager.activate(_Model("3")).wait_closed(0)  # type: ignore[arg-type,union-attr]
    assert second.closed  # idle: freed by the swap itself


# -- gate -----------------------------------------------------------------------------------------------

def _set(source: str = "set") -> GoldenSet:
    return GoldenSet(source, source, ())


def test_gate_ceiling_relative_tolerance_and_no_baseline() -> None:
    policy = GatePolicy(tolerance=0.01, max_cer=0.3)
    live = ("1.0.0", GoldenScore(cer=0.02, errors=2, chars=100, images=2))
    assert judge(GoldenScore(0.03, 3, 100, 2), _set(), policy, live).passed  # within tolerance
    worse = judge(GoldenScore(0.04, 4, 100, 2), _set(), policy, live)
    assert not worse.passed and "worse than the live version 1.0.0" in worse.reason
    garbage = judge(GoldenScore(0.9, 90, 100, 2), _set(), policy, None)
    assert not garbage.passed and "above the ceiling" in garbage.reason
    assert judge(GoldenScore(0.25, 25, 100, 2), _set(), policy, None).passed  # nothing serves: ceiling only


def test_manifest_may_set_its_own_tolerance_within_bounds() -> None:
    policy = GatePolicy(tolerance=0.01, max_cer=0.3)
    assert policy.for_manifest({"tolerance": 0.05}) == GatePolicy(tolerance=0.05, max_cer=0.3)
    for bad in ({"tolerance": 2}, {"tolerance": "0.1"}, {"max_cer": True}, {"tolerence": 0.1}):
        with pytest.raises(GatePolicyError):
            policy.for_manifest(bad)


def test_golden_set_directory_format(tmp_path: Path) -> None:
    golden = write_golden_set(tmp_path / "golden")
    samples = load_golden_set(golden)
    assert [s.name for s in samples] == ["payment", "totals"]
    assert samples[0].text.splitlines() == ["CASH PAYMENT RECEIVED", "INVOICE COPY"]
    assert samples[0].image.ndim == 3 and samples[0].image.dtype == np.uint8
    (golden / "extra.jpg").write_bytes(encode(render_text(["X"]), "JPEG"))
    with pytest.raises(GoldenSetError, match="extra.jpg has no extra.txt"):
        load_golden_set(golden)
    (golden / "extra.jpg").unlink()
    (golden / "orphan.txt").write_text("Y")
    with pytest.raises(GoldenSetError, match="orphan.txt without an image"):
        load_golden_set(golden)
    (golden / "orphan.png").write_bytes(b"not a png")
    with pytest.raises(GoldenSetError, match="orphan.png"):
        load_golden_set(golden)


def test_version_golden_set_wins_over_the_repository_one_then_builtin(tmp_path: Path) -> None:
    version_dir = tmp_path / "models" / "ppocr" / "1.0.0"
    version_dir.mkdir(parents=True)
    assert resolve_golden_set(version_dir, tmp_path / "models").source == "builtin"
    write_golden_set(tmp_path / "models" / "golden")
    assert resolve_golden_set(version_dir, tmp_path / "models").source == str(tmp_path / "models" / "golden")
    own = write_golden_set(version_dir / "golden")
    chosen = resolve_golden_set(version_dir, tmp_path / "models")
    assert chosen.source == str(own) and len(chosen.samples) == 2
    builtin = builtin_golden_set()
    assert len(builtin) == 2 and all(s.image.shape[2] == 3 and s.text for s in builtin)
    assert os.path.basename(chosen.source) == "golden"
