"""The canary, in-process: two controllers on one state directory (two workers of one machine) with
the scripted loader, and the routing rule itself. The same path through real Gunicorn workers and real
weights is in test_canary_server.py."""

from __future__ import annotations

import time

import pytest

from server.lifecycle.ab_report import RolloutReports
from server.lifecycle.commands import Refused
from server.lifecycle.judging import RolloutJudge
from server.lifecycle.manager import ModelManager
from server.lifecycle.rollout import in_canary
from server.lifecycle.rollout_commands import RolloutCommands
from server.lifecycle.states import VersionState
from server.quality.judge import JudgePolicy
from server.quality.rollout_samples import RolloutSamples
from tests.support.fake_loader import Script, publish_fake_version
from tests.support.lifecycle import wait_for
from tests.test_controller import Lab, Worker, lab  # noqa: F401  (the fixture)

KEYS = [f"client-{n}" for n in range(400)]


def _rollouts(lab: Lab, worker: Worker, bake_s: float = 0.0) -> RolloutCommands:
    """The canary's commands as the worker's HTTP layer gets them (no samples here: the judge is
    tested in test_judge.py)."""
    reports = RolloutReports(RolloutSamples(lab.state.rollout_samples), lab.state.reports_dir, JudgePolicy(),
                             worker.controller.verdicts, lambda version: None)
    return RolloutCommands(worker.commands, worker.controller.canary.store, reports, bake_s=bake_s)


def _serve(lab: Lab, workers: list[Worker], version: str) -> None:
    """Wait until every worker serves `version` and says so on the board (what the commands read)."""
    wait_for(lambda: all(w.serving == version for w in workers) and sorted(
        (w.slot, w.serving) for w in workers[0].controller.reporter.board.live()) == [
        (n, version) for n in range(len(workers))], 30, f"every worker to serve {version}")


def _routed(worker: Worker, key: str) -> tuple[str, bool]:
    with worker.controller.manager.acquire_routed(key) as (model, canary):
        return model.version, canary


def test_routing_is_sticky_proportional_and_grows_monotonically() -> None:
    shares = {percent: {key for key in KEYS if in_canary(key, percent)} for percent in (0, 10, 25, 50, 100)}
    assert shares[0] == set() and shares[100] == set(KEYS)
    assert 0.05 < len(shares[10]) / len(KEYS) < 0.15 and 0.4 < len(shares[50]) / len(KEYS) < 0.6
    assert shares[10] <= shares[25] <= shares[50]  # a larger share only moves clients to the candidate
    assert all(in_canary(key, 25) == (key in shares[25]) for key in KEYS)  # same answer every time


def test_without_a_candidate_every_client_gets_the_active_model() -> None:
    manager = ModelManager()
    with pytest.raises(Exception, match="no model version is ready"):
        with manager.acquire_routed("anyone"):
            pass


def test_canary_routes_a_share_on_every_worker_alike_then_promote_moves_all(lab: Lab) -> None:
    lab.publish("1.0.0")
    workers = [lab.worker(), lab.worker()]
    _serve(lab, workers, "1.0.0")
    workers[0].commands.pin("1.0.0", actor="tests")  # so that a new version waits for its canary
    lab.publish("2.0.0")
    wait_for(lambda: "2.0.0" in workers[0].controller.scan_now().versions, 10, "2.0.0 to be on disk")

    rollout = _rollouts(lab, workers[1]).canary("2.0.0", 30, actor="releaser")
    assert (rollout.candidate, rollout.stable, rollout.percent, rollout.pinned_stable) == ("2.0.0", "1.0.0", 30, False)
    wait_for(lambda: all(w.controller.manager.candidate is not None for w in workers), 30,
             "both workers to hold the candidate")
    routes = [{key: _routed(worker, key) for key in KEYS} for worker in workers]
    assert routes[0] == routes[1]  # one client, one version, whichever worker answers
    to_candidate = [key for key, (version, canary) in routes[0].items() if canary]
    assert all(routes[0][key] == ("2.0.0", True) for key in to_candidate)
    assert 0.2 < len(to_candidate) / len(KEYS) < 0.4
    assert lab.events("approve") == [("approve", "1.0.0", "ok"), ("approve", "2.0.0", "ok")]  # one gate each
    assert sorted(v for v, _ in workers[0].loader.attempts + workers[1].loader.attempts).count("2.0.0") == 2
    assert all(w.serving == "1.0.0" for w in workers)  # the candidate does not take over

    _rollouts(lab, workers[0]).canary("2.0.0", 60, actor="releaser")  # a larger share, no reload
    wait_for(lambda: sum(_routed(workers[1], key)[1] for key in KEYS) > len(to_candidate) * 1.5, 30,
             "the larger share to apply")
    assert sorted(v for v, _ in workers[0].loader.attempts + workers[1].loader.attempts).count("2.0.0") == 2

    with pytest.raises(Refused) as refused:
        _rollouts(lab, workers[0]).canary("1.0.0", 10, actor="releaser")
    assert refused.value.code == "rollout_in_progress"

    _rollouts(lab, workers[0]).promote("2.0.0", actor="releaser")
    wait_for(lambda: all(w.serving == "2.0.0" and w.controller.manager.candidate is None for w in workers), 30,
             "both workers to serve the promoted 2.0.0 alone")
    assert workers[0].controller.pins.read().pin.version == "2.0.0"  # type: ignore[union-attr]
    assert workers[0].controller.canary.store.read() == (None, None)
    assert [(a, r) for a, _, r in lab.events() if a in ("canary", "promote", "canary_load", "canary_unload")] == [
        ("canary", "ok"), ("canary_load", "ok"), ("canary_load", "ok"), ("canary", "ok"), ("canary", "refused"),
        ("promote", "ok"), ("canary_unload", "ok"), ("canary_unload", "ok")]


def test_abort_rejects_the_candidate_and_removes_the_pin_the_canary_set(lab: Lab) -> None:
    lab.publish("0.9.0", "1.0.0")
    workers = [lab.worker(), lab.worker()]
    _serve(lab, workers, "1.0.0")
    rollout = _rollouts(lab, workers[0]).canary("0.9.0", 50, actor="releaser")
    assert rollout.pinned_stable and workers[0].controller.pins.read().pin.version == "1.0.0"  # type: ignore[union-attr]
    wait_for(lambda: all(w.controller.manager.candidate is not None for w in workers), 30, "the candidate loads")

    _rollouts(lab, workers[1]).abort("0.9.0", "reads totals worse", actor="releaser")
    wait_for(lambda: all(w.controller.manager.candidate is None for w in workers), 30, "the candidate to go")
    assert workers[0].controller.pins.read().pin is None
    verdict = workers[0].controller.verdicts.get("0.9.0")
    assert verdict is not None and not verdict.approved and verdict.result == "rolled_back"
    assert "reads totals worse" in verdict.reason and "releaser" in verdict.reason
    assert lab.states()["0.9.0"] is VersionState.REJECTED
    assert all(w.serving == "1.0.0" and {_routed(w, key) for key in KEYS} == {("1.0.0", False)} for w in workers)
    assert ("abort", "0.9.0", "rolled_back") in lab.events("abort")


def test_canary_calls_that_cannot_be_carried_out_are_refused_and_audited(lab: Lab) -> None:
    lab.publish("1.0.0", "2.0.0")
    worker = lab.worker({"3.0.0": Script(gate_passes=False)})
    _serve(lab, [worker], "2.0.0")
    cases = [
        (lambda: _rollouts(lab, worker).canary("1.0.0", 0, actor="r"), "invalid_percent"),
        (lambda: _rollouts(lab, worker).canary("1.0.0", True, actor="r"), "invalid_percent"),
        (lambda: _rollouts(lab, worker).canary("1.0.0", 101, actor="r"), "invalid_percent"),
        (lambda: _rollouts(lab, worker).canary("2.0.0", 10, actor="r"), "already_serving"),
        (lambda: _rollouts(lab, worker).canary("7.0.0", 10, actor="r"), "version_not_found"),
        (lambda: _rollouts(lab, worker).promote("1.0.0", actor="r"), "not_in_canary"),
        (lambda: _rollouts(lab, worker).abort("1.0.0", "x", actor="r"), "not_in_canary"),
    ]
    for call, code in cases:
        with pytest.raises(Refused) as refused:
            call()
        assert refused.value.code == code
    assert [r for a, _, r in lab.events() if a in ("canary", "promote", "abort")] == ["refused"] * len(cases)
    assert worker.controller.canary.store.read() == (None, None) and worker.controller.pins.read().pin is None


def test_with_ocr_rollout_canary_a_new_version_enters_as_a_canary_by_itself(lab: Lab) -> None:
    lab.publish("1.0.0")
    workers = [lab.worker(rollout_mode="canary"), lab.worker(rollout_mode="canary")]
    _serve(lab, workers, "1.0.0")  # the first version serves at once: there is nothing to canary beside
    lab.publish("2.0.0")
    wait_for(lambda: all(w.controller.manager.candidate is not None for w in workers), 30,
             "both workers to hold 2.0.0 as a canary")
    rollout, _ = workers[0].controller.canary.store.read()
    assert rollout is not None and (rollout.candidate, rollout.stable, rollout.percent, rollout.pinned_stable) == (
        "2.0.0", "1.0.0", 20.0, True)
    assert all(w.serving == "1.0.0" for w in workers)
    assert workers[0].controller.pins.read().pin.version == "1.0.0"  # type: ignore[union-attr]
    assert [(a, v) for a, v, _ in lab.events("canary")] == [("canary", "2.0.0")]  # one worker started it

    _rollouts(lab, workers[1]).abort("2.0.0", "not today", actor="releaser")
    wait_for(lambda: all(w.controller.manager.candidate is None for w in workers), 30, "the candidate to go")
    time.sleep(1.0)  # several passes: a rejected version starts no canary, and 1.0.0 stays
    assert lab.events("canary") == [("canary", "2.0.0", "ok")]
    assert all(w.serving == "1.0.0" for w in workers) and workers[0].controller.pins.read().pin is None


def test_a_manifest_that_asks_for_a_canary_gets_one_without_ocr_rollout(lab: Lab) -> None:
    lab.publish("1.0.0")
    worker = lab.worker()
    _serve(lab, [worker], "1.0.0")
    publish_fake_version(lab.repo, "2.0.0", lab.root / "work",
                         rollout={"canary_percent": 30, "min_requests": 500, "max_minutes": 60})
    wait_for(lambda: worker.controller.manager.candidate is not None, 30, "2.0.0 to enter as a canary")
    rollout, _ = worker.controller.canary.store.read()
    assert rollout is not None and (rollout.percent, rollout.min_requests, rollout.max_minutes) == (30.0, 500, 60.0)
    assert worker.serving == "1.0.0"


def _canary_on_both(lab: Lab) -> list[Worker]:
    lab.publish("1.0.0")
    workers = [lab.worker(), lab.worker()]
    _serve(lab, workers, "1.0.0")
    workers[0].commands.pin("1.0.0", actor="tests")
    lab.publish("2.0.0")
    wait_for(lambda: "2.0.0" in workers[0].controller.scan_now().versions, 10, "2.0.0 to be on disk")
    _rollouts(lab, workers[0]).canary("2.0.0", 30, actor="releaser")
    wait_for(lambda: all(w.controller.manager.candidate is not None for w in workers), 30, "the candidate to load")
    return workers


def test_a_promotion_bakes_then_one_rollback_returns_every_client_without_a_load(lab: Lab) -> None:
    workers = _canary_on_both(lab)
    baking = _rollouts(lab, workers[1], bake_s=600).promote("2.0.0", actor="releaser")
    assert baking.phase == "bake" and baking.percent == 100 and baking.bake_until  # type: ignore[union-attr]
    wait_for(lambda: all({_routed(w, key) for key in KEYS} == {("2.0.0", True)} for w in workers), 30,
             "every client on 2.0.0 during the bake")
    assert all(w.serving == "1.0.0" for w in workers)  # the previous version stays loaded, pinned
    assert workers[0].controller.pins.read().pin.version == "1.0.0"  # type: ignore[union-attr]
    loads = [len(w.loader.attempts) for w in workers]

    ended, pin = _rollouts(lab, workers[0], bake_s=600).rollback_bake(actor="releaser")  # type: ignore[misc]
    assert ended.candidate == "2.0.0" and pin is not None and pin.version == "1.0.0"
    wait_for(lambda: all({_routed(w, key) for key in KEYS} == {("1.0.0", False)} for w in workers), 30,
             "every client back on 1.0.0")
    assert [len(w.loader.attempts) for w in workers] == loads  # no load: 1.0.0 was still there
    assert lab.states()["2.0.0"] is VersionState.REJECTED
    assert ("abort", "2.0.0", "rolled_back") in lab.events("abort")


def test_the_judge_ends_a_bake_without_regression_by_pinning_the_promoted_version(lab: Lab) -> None:
    workers = _canary_on_both(lab)
    rollouts = _rollouts(lab, workers[0], bake_s=0.5)
    rollouts.promote("2.0.0", actor="releaser")
    time.sleep(1.0)  # past the bake's end, with no sample against the baseline
    RolloutJudge(rollouts, interval_s=0, auto_promote=False, webhook="").check()
    assert rollouts.store.read() == (None, None)
    assert workers[0].controller.pins.read().pin.version == "2.0.0"  # type: ignore[union-attr]
    _serve(lab, workers, "2.0.0")
    assert [a for a, _, _ in lab.events() if a in ("promote", "bake_complete")] == ["promote", "bake_complete"]
    report = rollouts.reports.load("2.0.0")
    assert report is not None and report["decided_by"] == "rollout-judge" and "baked_until" in report
