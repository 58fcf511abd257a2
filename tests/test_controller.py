"""The lifecycle controller's decisions, in-process, with a scripted loader (tests/support/fake_loader.py).

Everything but the loader is real: versions are published into a real repository, and the controller
scans it, reads and writes verdicts, the pin, the worker board and the audit log in a real state
directory. Two controllers on one state directory behave as two Gunicorn workers of one machine.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from server.governance.audit import AuditLog, read_audit
from server.lifecycle.commands import Commands, Refused
from server.lifecycle.config import LifecycleConfig
from server.lifecycle.controller import LifecycleController
from server.lifecycle.manager import ModelManager
from server.lifecycle.reporting import Reporter
from server.lifecycle.statedir import StatePaths
from server.lifecycle.states import VersionState
from server.lifecycle.status import version_states
from server.lifecycle.workers import WorkerBoard
from server.quality.gate import GatePolicy
from server.repository.layout import ModelRepository
from server.storage.locks import FileLock
from tests.support.fake_loader import FakeLoader, Script, publish_fake_version
from tests.support.lifecycle import wait_for


@dataclass
class Worker:
    controller: LifecycleController
    loader: FakeLoader
    commands: Commands

    @property
    def serving(self) -> str | None:
        serving = self.controller.serving
        return serving.model.version if serving else None


@dataclass
class Lab:
    root: Path
    repo: ModelRepository
    state: StatePaths
    audit: AuditLog
    workers: list[Worker]

    def publish(self, *versions: str) -> None:
        for version in versions:
            publish_fake_version(self.repo, version, self.root / "work")

    def worker(self, scripts: dict[str, Script] | None = None, drain_timeout_s: float = 5.0,
               recheck_s: float = 0.0, rollout_mode: str = "") -> Worker:
        config = LifecycleConfig(poll_s=0.2, debounce_s=0.05, settle_s=0.0, gate=GatePolicy(0.01, 0.3),
                                 warmup_shapes=((320, 320),), drain_timeout_s=drain_timeout_s, recheck_s=recheck_s,
                                 rollout_mode=rollout_mode, rollout_percent=20.0)
        loader = FakeLoader(scripts)
        reporter = Reporter(self.audit, WorkerBoard(self.state.workers_dir), slot=len(self.workers), device="cpu")
        controller = LifecycleController(self.repo, ModelManager(), loader, config, self.state, reporter)
        worker = Worker(controller, loader, Commands(controller, self.audit))
        self.workers.append(worker)
        controller.start()
        return worker

    def events(self, action: str | None = None) -> list[tuple[str, str | None, str]]:
        return [(e["action"], e["version"], e["result"]) for e in read_audit(self.audit.path)
                if action is None or e["action"] == action]

    def states(self) -> dict[str, VersionState]:
        worker = self.workers[0].controller
        board = worker.reporter.board.live()
        return {name: status.state for name, status in
                version_states(worker.scan_now(), worker.verdicts.all(), board).items()}


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[Lab]:
    repo = ModelRepository(tmp_path / "models")
    repo.pipeline_dir.mkdir(parents=True)
    lab = Lab(tmp_path, repo, StatePaths(tmp_path / "state", "ppocr"), AuditLog(tmp_path / "audit.log"), [])
    yield lab
    for worker in lab.workers:
        worker.controller.stop()


def test_serves_the_highest_version_that_passes_and_a_rejection_is_followed_by_every_worker(lab: Lab) -> None:
    lab.publish("1.0.0", "2.0.0")
    scripts = {"2.0.0": Script(gate_passes=False)}
    first = lab.worker(scripts)
    wait_for(lambda: first.serving == "1.0.0", 20, "the first worker to serve 1.0.0")
    second = lab.worker(scripts)
    wait_for(lambda: second.serving == "1.0.0", 20, "the second worker to serve 1.0.0")
    assert [v for v, _ in first.loader.attempts] == ["2.0.0", "1.0.0"]
    assert [v for v, _ in second.loader.attempts] == ["1.0.0"]  # it followed the verdicts: no second gate
    assert lab.events("reject") == [("reject", "2.0.0", "gate_rejected")]
    assert lab.events("approve") == [("approve", "1.0.0", "ok")]
    assert lab.states() == {"2.0.0": VersionState.REJECTED, "1.0.0": VersionState.SERVING}


def test_a_failure_outside_the_version_is_retried_with_growing_delays_then_serves(lab: Lab) -> None:
    lab.publish("1.0.0", "2.0.0")
    worker = lab.worker({"2.0.0": Script(fail="gate_error", sticky=False, failures=2)})
    wait_for(lambda: worker.serving == "1.0.0", 20, "1.0.0 to serve while 2.0.0 fails")
    wait_for(lambda: "2.0.0" in worker.controller.backoff.errors(), 20, "2.0.0 to be backing off")
    assert lab.states()["2.0.0"] is VersionState.RETRYING
    wait_for(lambda: worker.serving == "2.0.0", 30, "2.0.0 to serve on its third attempt")
    attempts = worker.loader.attempts_of("2.0.0")
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.2 and attempts[2] - attempts[1] >= 0.4  # poll_s, then doubled
    assert lab.events("reject") == [] and worker.controller.backoff.errors() == {}
    assert [e for e in lab.events("load") if e[2] != "success"] == [("load", "2.0.0", "gate_error")] * 2


def test_a_version_others_approved_that_fails_here_is_retried_not_rejected(lab: Lab) -> None:
    lab.publish("1.0.0")
    healthy = lab.worker()
    wait_for(lambda: healthy.serving == "1.0.0", 20, "the first worker to serve 1.0.0")
    failing = lab.worker({"1.0.0": Script(fail="load_error", sticky=True)})
    wait_for(lambda: len(failing.loader.attempts_of("1.0.0")) >= 2, 20, "a retry on the failing worker")
    assert lab.events("reject") == [] and failing.serving is None
    assert "scripted failure" in failing.controller.backoff.errors()["1.0.0"]


def test_pin_rollback_and_unpin_move_every_worker(lab: Lab) -> None:
    lab.publish("1.0.0", "2.0.0", "3.0.0")
    workers = [lab.worker(), lab.worker()]
    wait_for(lambda: all(w.serving == "3.0.0" for w in workers), 30, "both workers to serve 3.0.0")
    workers[0].commands.pin("1.0.0", actor="tests")
    wait_for(lambda: all(w.serving == "1.0.0" for w in workers), 30, "both workers to follow the pin")
    workers[1].commands.unpin(actor="tests")
    wait_for(lambda: all(w.serving == "3.0.0" for w in workers), 30, "both workers back on the highest")
    pin, previous = workers[0].commands.rollback(actor="tests")
    assert (pin.version, previous) == ("2.0.0", "3.0.0")
    wait_for(lambda: all(w.serving == "2.0.0" for w in workers), 30, "both workers to roll back")
    with pytest.raises(Refused) as refused:
        workers[0].commands.pin("9.9.9", actor="tests")
    assert refused.value.kind == "not_found"
    actions = [(a, v) for a, v, r in lab.events() if a in ("pin", "unpin", "rollback")]
    assert actions == [("pin", "1.0.0"), ("unpin", "1.0.0"), ("rollback", "2.0.0"), ("pin", "9.9.9")]


def test_a_version_pinned_below_the_live_one_is_gated_by_the_ceiling_only(lab: Lab) -> None:
    """An upgrade must not read worse than the live version; an older version a releaser pins (PP-OCRv4
    beside the better default) is not compared with it, or it could never be chosen."""
    lab.publish("1.0.0", "2.0.0")
    worker = lab.worker()
    wait_for(lambda: worker.serving == "2.0.0", 20, "2.0.0 to serve")
    worker.commands.pin("1.0.0", actor="tests")
    wait_for(lambda: worker.serving == "1.0.0", 20, "the pinned 1.0.0 to serve")
    worker.commands.unpin(actor="tests")
    wait_for(lambda: worker.serving == "2.0.0", 20, "2.0.0 again")
    lab.publish("3.0.0")
    wait_for(lambda: worker.serving == "3.0.0", 20, "3.0.0 to serve")
    # 2.0.0 came back on its standing approval (no gate); 3.0.0, an upgrade, was compared with 2.0.0.
    assert worker.loader.baselines == {"2.0.0": [None], "1.0.0": [None], "3.0.0": ["2.0.0"]}


def test_a_request_that_outlives_the_drain_timeout_does_not_hold_the_load_lock(lab: Lab) -> None:
    lab.publish("1.0.0")
    worker = lab.worker(drain_timeout_s=0.5)
    wait_for(lambda: worker.serving == "1.0.0", 20, "1.0.0 to serve")
    release = threading.Event()
    held = threading.Event()

    def long_request() -> None:
        with worker.controller.manager.acquire():
            held.set()
            release.wait(30)

    request = threading.Thread(target=long_request)
    request.start()
    assert held.wait(10)
    lab.publish("2.0.0")
    wait_for(lambda: ("retire", "1.0.0", "timeout") in lab.events("retire"), 20, "the drain to time out")
    lock = FileLock(lab.state.load_lock)
    assert lock.acquire(threading.Event()) is True  # released although the old version is still in use
    lock.release()
    old = worker.loader.models["1.0.0"][0]
    assert worker.serving == "2.0.0" and not old.pipeline.closed.is_set()  # type: ignore[attr-defined]
    release.set()
    request.join(10)
    assert old.pipeline.closed.wait(10)  # type: ignore[attr-defined]  # freed by its last request


def test_a_version_deleted_while_it_loads_never_serves(lab: Lab) -> None:
    lab.publish("1.0.0")
    worker = lab.worker({"2.0.0": Script(seconds=1.5)})
    wait_for(lambda: worker.serving == "1.0.0", 20, "1.0.0 to serve")
    lab.publish("2.0.0")
    wait_for(worker.loader.loading.is_set, 20, "2.0.0 to start loading")
    shutil.rmtree(lab.repo.version_dir("2.0.0"))
    wait_for(lambda: not worker.loader.loading.is_set(), 20, "the load to end")
    time.sleep(1.0)  # a few more passes
    assert worker.serving == "1.0.0"
    assert ("swap", "2.0.0", "ok") not in lab.events("swap") and worker.controller.verdicts.get("2.0.0") is None
    assert worker.loader.models["2.0.0"][0].pipeline.closed.is_set()  # type: ignore[attr-defined]


def test_broken_versions_are_rejected_once_and_the_repository_stays_watched(lab: Lab) -> None:
    """No loadable version here: the scan's own rejections, and the watch while nothing loads."""
    (lab.repo.pipeline_dir / "1.0.0" / "det").mkdir(parents=True)  # no manifest
    (lab.root / "elsewhere" / "2.0.0").mkdir(parents=True)
    (lab.repo.pipeline_dir / "2.0.0").symlink_to(lab.root / "elsewhere" / "2.0.0", target_is_directory=True)
    worker = lab.worker()
    verdicts = worker.controller.verdicts
    wait_for(lambda: set(verdicts.all()) == {"1.0.0", "2.0.0"}, 20, "both versions to be judged")
    time.sleep(1.0)  # several more passes: a standing verdict is not written or audited again
    (lab.repo.pipeline_dir / "3.0.0").mkdir()  # noticed while running
    wait_for(lambda: "3.0.0" in verdicts.all(), 20, "the new directory to be judged")
    board = WorkerBoard(lab.state.workers_dir).live()
    assert [(w.slot, w.pid, w.serving, w.loading) for w in board] == [(0, os.getpid(), None, None)]
    worker.controller.stop()
    assert not worker.controller.watcher.armed
    assert sorted(lab.events()) == [("reject", "1.0.0", "no_manifest"), ("reject", "2.0.0", "outside_repository"),
                                    ("reject", "3.0.0", "no_manifest")]
    assert worker.loader.attempts == [] and not worker.controller.manager.ready


def test_a_served_version_that_fails_the_recheck_is_rejected_and_every_worker_moves_away(lab: Lab) -> None:
    lab.publish("1.0.0", "2.0.0")
    first, second = lab.worker(recheck_s=0.2), lab.worker(recheck_s=0.2)
    wait_for(lambda: first.serving == second.serving == "2.0.0", 30, "both workers to serve 2.0.0")
    wait_for(lambda: len(first.loader.rechecks) >= 2, 20, "the first worker to re-check 2.0.0")
    assert lab.events("reject") == [] and set(first.loader.rechecks) == {"2.0.0"}
    first.loader.scripts["2.0.0"] = Script(recheck_fails="tampered")  # only the first worker finds it: the
    # second follows the verdict
    wait_for(lambda: first.serving == second.serving == "1.0.0", 30, "both workers to move to 1.0.0")
    assert lab.events("reject") == [("reject", "2.0.0", "tampered")]  # once, replacing the approval
    assert lab.events("recheck") == [("recheck", "2.0.0", "tampered")]
    assert first.controller.verdicts.get("2.0.0").result == "tampered"  # type: ignore[union-attr]
    assert lab.states() == {"2.0.0": VersionState.REJECTED, "1.0.0": VersionState.SERVING}


def test_with_nothing_else_to_serve_a_version_that_fails_the_recheck_keeps_serving_with_the_reason(lab: Lab) -> None:
    lab.publish("1.0.0")
    worker = lab.worker({"1.0.0": Script(recheck_fails="revoked_key")}, recheck_s=0.2)
    wait_for(lambda: lab.events("reject") == [("reject", "1.0.0", "revoked_key")], 30, "the re-check to reject 1.0.0")
    time.sleep(1.0)  # several passes and re-check periods: a rejected version is not checked again
    assert worker.serving == "1.0.0" and worker.loader.rechecks == ["1.0.0"]
    view = version_states(worker.controller.scan_now(), worker.controller.verdicts.all(),
                          worker.controller.reporter.board.live())["1.0.0"]
    assert view.state is VersionState.SERVING and "scripted re-check failure" in view.reason


def test_a_failure_that_holds_for_every_worker_replaces_a_standing_approval(lab: Lab) -> None:
    lab.publish("1.0.0", "2.0.0")
    worker = lab.worker()
    wait_for(lambda: worker.serving == "2.0.0", 20, "2.0.0 to serve")
    worker.commands.pin("1.0.0", actor="tests")
    wait_for(lambda: worker.serving == "1.0.0", 20, "the pin to be followed")
    assert worker.controller.verdicts.get("2.0.0").approved  # type: ignore[union-attr]
    worker.loader.scripts["2.0.0"] = Script(fail="revoked_key", withdraws=True)  # e.g. its key was revoked since
    worker.commands.unpin(actor="tests")
    wait_for(lambda: lab.events("reject") == [("reject", "2.0.0", "revoked_key")], 20, "2.0.0 to be rejected")
    assert worker.serving == "1.0.0" and lab.states()["2.0.0"] is VersionState.REJECTED
