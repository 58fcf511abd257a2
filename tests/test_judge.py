"""The canary judge's rules (server/quality/judge.py) on samples drawn from known distributions, and
the samples store that all workers write (server/quality/rollout_samples.py)."""

from __future__ import annotations

import random
from pathlib import Path

from server.quality.judge import JudgePolicy, Sample, cut_windows, judge
from server.quality.rollout_samples import RolloutSamples

POLICY = JudgePolicy(max_regression=0.05, alpha=0.05, window_requests=40, window_s=3600, windows=2)


def _arm(n: int, latency: float, seed: int, start: float = 0.0, spacing: float = 1.0, errors: float = 0.0,
         lines: int = 8, confidence: float = 0.95) -> list[Sample]:
    """`n` requests answered every `spacing` seconds, latencies log-normal around `latency`."""
    rng = random.Random(seed)
    return [Sample(start + i * spacing, latency * rng.lognormvariate(0, 0.15), rng.random() < errors, False,
                   min(1.0, confidence + rng.gauss(0, 0.01)), lines) for i in range(n)]


def test_the_same_version_on_both_arms_passes_after_the_windows_not_before() -> None:
    stable, candidate = _arm(240, 1.0, 1), _arm(80, 1.0, 2, spacing=3.0)
    early = judge(stable, candidate[:50], [], [], POLICY, now=150)
    assert early.decision == "pending" and len(early.windows) == 1
    done = judge(stable, candidate, [], [], POLICY, now=240)
    assert done.decision == "passed" and len(done.windows) == 2
    assert {m.metric: m.passed for m in done.overall} == {
        "latency_p50": True, "latency_p95": True, "error_rate": True, "empty_rate": True, "confidence": True,
        "lines": True, "feedback_accuracy": None, "shadow_agreement": None}  # no feedback, no shadow: not judged


def test_a_clearly_slower_candidate_regresses_on_latency_in_consecutive_windows() -> None:
    stable, candidate = _arm(240, 1.0, 3), _arm(80, 1.3, 4, spacing=3.0)
    verdict = judge(stable, candidate, [], [], POLICY, now=240)
    assert verdict.decision == "regressed" and verdict.metric == "latency_p50"
    assert "2 consecutive windows" in verdict.rule and "mann-whitney-u" in verdict.rule
    p50 = next(m for m in verdict.overall if m.metric == "latency_p50")
    assert p50.passed is False and 0.2 < p50.change < 0.4 and p50.p_value < 1e-6  # type: ignore[operator]
    assert p50.interval is not None and p50.interval[0] > 0.05


def test_one_slow_window_alone_does_not_roll_back() -> None:
    """A burst (a neighbour's job) in the first window only: the next window is clean."""
    stable = _arm(240, 1.0, 5)
    candidate = _arm(40, 1.3, 6, spacing=3.0) + _arm(40, 1.0, 7, start=120, spacing=3.0)
    verdict = judge(stable, candidate, [], [], POLICY, now=240)
    assert verdict.decision == "pending"
    assert [window[0].passed for window in verdict.windows] == [False, True]


def test_a_difference_within_the_bound_is_not_a_regression_even_when_significant() -> None:
    stable, candidate = _arm(2400, 1.0, 8, spacing=0.1), _arm(800, 1.03, 9, spacing=0.3)
    verdict = judge(stable, candidate, [], [], JudgePolicy(window_requests=400, window_s=3600), now=240)
    p50 = next(m for m in verdict.overall if m.metric == "latency_p50")
    assert p50.p_value is not None and p50.p_value < 0.05 and p50.passed is True  # 3% slower, bound 5%
    assert verdict.decision == "passed"


def test_the_error_guardrail_acts_at_once() -> None:
    stable, candidate = _arm(60, 1.0, 10), _arm(12, 1.0, 11, errors=0.5)
    verdict = judge(stable, candidate, [], [], POLICY, now=20)
    assert verdict.decision == "regressed" and verdict.metric == "error_rate" and verdict.rule.startswith("guardrail")
    assert verdict.windows == []  # before any window closed


def test_fewer_lines_and_lower_accuracy_from_feedback_regress() -> None:
    stable, fewer = _arm(240, 1.0, 12, lines=10), _arm(80, 1.0, 13, spacing=3.0, lines=7)
    verdict = judge(stable, fewer, [], [], POLICY, now=240)
    assert verdict.decision == "regressed" and verdict.metric == "lines"

    rng = random.Random(14)
    good = [1 - abs(rng.gauss(0.02, 0.01)) for _ in range(30)]
    worse = [1 - abs(rng.gauss(0.25, 0.05)) for _ in range(30)]
    same = _arm(80, 1.0, 15, spacing=3.0)
    verdict = judge(stable, same, good, worse, POLICY, now=240)
    assert verdict.decision == "regressed" and verdict.metric == "feedback_accuracy"
    assert "over the whole canary" in verdict.rule


def test_windows_close_by_count_or_by_time() -> None:
    policy = JudgePolicy(window_requests=10, window_s=60)
    busy = _arm(25, 1.0, 16, spacing=1.0)  # 10 requests in 10 s: count closes two windows
    assert len(cut_windows(busy, policy, now=25)) == 2
    quiet = _arm(5, 1.0, 17, spacing=20.0)  # 5 requests in 100 s: time closes one window
    assert len(cut_windows(quiet, policy, now=100)) == 1


def test_samples_from_several_processes_meet_in_one_store(tmp_path: Path) -> None:
    path = tmp_path / "samples.sqlite"
    first, second = RolloutSamples(path), RolloutSamples(path)  # two workers
    for i, sample in enumerate(_arm(6, 1.0, 18)):
        (first if i % 2 else second).add("2.0.0@t", "canary" if i < 4 else "stable", "2.0.0", sample)
    first.add_feedback("2.0.0@t", "canary", "2.0.0", 0.9)
    first.add("other@t", "canary", "3.0.0", _arm(1, 1.0, 19)[0])
    arms = RolloutSamples(path).arms("2.0.0@t")
    assert (len(arms["canary"]), len(arms["stable"])) == (4, 2)
    assert [s.at for s in arms["canary"]] == sorted(s.at for s in arms["canary"])
    assert second.feedback("2.0.0@t") == {"stable": [], "canary": [0.9]}


def test_a_store_that_cannot_be_opened_reads_empty_and_never_raises(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the state directory should be")
    store = RolloutSamples(tmp_path / "state" / "samples.sqlite")
    store.add("x@t", "canary", "x", _arm(1, 1.0, 20)[0])
    assert store.arms("x@t") == {"stable": [], "canary": []}
    store.prune(0.0)


def test_shadow_readings_that_disagree_regress_and_agreeing_ones_pass_a_shadow_only_rollout() -> None:
    policy = JudgePolicy(window_requests=20, windows=2)
    rng = random.Random(21)
    agreeing = [1.0 if rng.random() < 0.9 else 0.97 for _ in range(60)]
    passed = judge([], [], [], [], policy, now=100, shadow=agreeing)
    assert passed.decision == "passed" and "shadow readings agree" in passed.rule
    disagreeing = [rng.uniform(0.4, 0.8) for _ in range(30)]
    verdict = judge(_arm(100, 1.0, 22), _arm(20, 1.0, 23), [], [], policy, now=100, shadow=disagreeing)
    assert verdict.decision == "regressed" and verdict.metric == "shadow_agreement"
    shadow = next(m for m in verdict.overall if m.metric == "shadow_agreement")
    assert shadow.test == "wilcoxon" and shadow.candidate is not None and shadow.candidate < 0.8
    assert judge([], [], [], [], policy, now=100, shadow=agreeing[:5]).decision == "pending"


def test_a_rollout_may_ask_for_more_requests_and_a_verdict_in_time() -> None:
    stable, candidate = _arm(240, 1.0, 1), _arm(80, 1.0, 2, spacing=3.0)  # the arms of the first test
    assert judge(stable, candidate, [], [], POLICY, now=240).decision == "passed"
    waiting = judge(stable, candidate, [], [], POLICY, now=240, min_requests=200)
    assert waiting.decision == "pending" and "80 of the 200 requests" in waiting.rule
    late = judge(stable, candidate, [], [], POLICY, now=240, min_requests=200, expired=True)
    assert late.decision == "expired" and "no verdict within the rollout's time" in late.rule
    slow = judge(stable, _arm(80, 1.3, 26, spacing=3.0), [], [], POLICY, now=240, expired=True)
    assert slow.decision == "regressed"  # a regression is a regression, in time or not


def test_a_bake_judges_each_window_against_the_recorded_baseline() -> None:
    """During a bake the stable version answers nobody: its samples are those of the canary before."""
    baseline = _arm(120, 1.0, 27, start=0.0)
    slower, same = _arm(80, 1.3, 28, start=500.0, spacing=3.0), _arm(80, 1.0, 29, start=500.0, spacing=3.0)
    assert judge(baseline, slower, [], [], POLICY, now=800).decision == "pending"  # no stable sample in its span
    verdict = judge(baseline, slower, [], [], POLICY, now=800, baseline=True)
    assert verdict.decision == "regressed" and verdict.metric == "latency_p50"
    assert judge(baseline, same, [], [], POLICY, now=800, baseline=True).decision != "regressed"
