"""The canary judge: is the candidate worse than the stable version on live traffic? Pure functions of
the two arms' samples; no I/O, no state, so every worker that judges the same samples decides alike.

A metric regresses when the candidate is worse by more than `max_regression` (relative) *and* the
difference is statistically significant at `alpha`, one-sided in the direction that hurts:

    latency_p50      Mann-Whitney U on request latencies (Kayenta's test: no normality assumed)
    latency_p95      the bootstrap interval of the p95 ratio lies wholly beyond the bound
    error_rate       two-proportion z-test (server errors over requests)
    empty_rate       two-proportion z-test (pages read with no line at all)
    confidence       Mann-Whitney U on each request's mean line confidence
    lines            Mann-Whitney U on lines read per request
    feedback_accuracy  Mann-Whitney U on 1 - CER of each result that got feedback
    shadow_agreement   Wilcoxon signed-rank: the candidate's readings of shadowed requests agree with
                       the stable version's (1 - CER) less than 1 - `max_regression`

Samples are cut into windows (`window_requests` canary requests or `window_s` seconds, whichever
closes first; the stable arm's samples of the same time span beside them). A regression must hold in
the last `windows` consecutive complete windows, so one noisy window (a GC pause, a neighbour's job)
does not roll back a good version; the candidate passes once as many consecutive windows are clean.
The hard guardrail does not wait: a candidate whose error rate reaches `max_error_rate` is rolled back
at once. Feedback and shadow readings are sparse (and shadow readings have no stable arm: the stable
reading is their reference), so those two are judged over the whole canary, not per window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import mannwhitneyu, norm, wilcoxon

# Fewer samples than this in either arm: the metric is not judged ("insufficient").
MIN_SAMPLES = 10
# Resamples of the bootstrap intervals (fixed seed: every worker computes the same interval).
BOOTSTRAP_RESAMPLES = 400
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Sample:
    at: float  # wall-clock time it was answered
    latency_s: float
    error: bool  # answered 5xx
    empty: bool  # every page read without a line
    confidence: float | None  # mean line confidence (None: no line)
    lines: int


@dataclass(frozen=True)
class JudgePolicy:
    max_regression: float = 0.05
    alpha: float = 0.05
    window_requests: int = 100
    window_s: float = 300.0
    windows: int = 2
    max_error_rate: float = 0.05


@dataclass(frozen=True)
class MetricResult:
    metric: str
    test: str
    stable: float | None
    candidate: float | None
    change: float | None  # relative (candidate / stable - 1); for rates, the difference in points
    interval: tuple[float, float] | None  # of `change`, at CONFIDENCE
    p_value: float | None
    passed: bool | None  # None: too few samples to judge
    n_stable: int
    n_candidate: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Judgement:
    decision: str  # "regressed", "passed", "pending" or "expired"
    rule: str  # what decided it, in words
    metric: str | None = None  # the metric that regressed
    overall: list[MetricResult] = field(default_factory=list)  # the whole canary so far
    windows: list[list[MetricResult]] = field(default_factory=list)  # per complete window, oldest first

    def to_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "rule": self.rule, "metric": self.metric,
                "overall": [m.to_json() for m in self.overall],
                "windows": [[m.to_json() for m in window] for window in self.windows]}


_STATISTICS: dict[str, Callable[..., np.ndarray]] = {
    "median": lambda a, axis: np.median(a, axis=axis),
    "mean": lambda a, axis: np.mean(a, axis=axis),
    "p95": lambda a, axis: np.percentile(a, 95, axis=axis),
}


def _bootstrap(stable: np.ndarray, candidate: np.ndarray, statistic: str) -> tuple[float, float]:
    """The CONFIDENCE interval of candidate/stable - 1 for `statistic`, by the percentile bootstrap."""
    rng = np.random.default_rng(0)
    centre = _STATISTICS[statistic]
    s = centre(rng.choice(stable, (BOOTSTRAP_RESAMPLES, stable.size)), 1)
    c = centre(rng.choice(candidate, (BOOTSTRAP_RESAMPLES, candidate.size)), 1)
    ratios = c[s > 0] / s[s > 0] - 1
    if not ratios.size:
        return (math.nan, math.nan)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def _shift(metric: str, stable: Sequence[float], candidate: Sequence[float], policy: JudgePolicy,
           worse: str, interval: bool = True) -> MetricResult:
    """A location metric (`worse`: "greater" or "less"), by Mann-Whitney U and the ratio of medians
    (of means for bounded scores, whose medians move in steps)."""
    n_s, n_c = len(stable), len(candidate)
    if n_s < MIN_SAMPLES or n_c < MIN_SAMPLES:
        return MetricResult(metric, "mann-whitney-u", None, None, None, None, None, None, n_s, n_c)
    s, c = np.asarray(stable, float), np.asarray(candidate, float)
    statistic = "median" if metric == "latency_p50" else "mean"
    base, value = float(_STATISTICS[statistic](s, None)), float(_STATISTICS[statistic](c, None))
    change = value / base - 1 if base > 0 else (0.0 if value == base else math.inf)
    p_value = float(mannwhitneyu(c, s, alternative=worse).pvalue)
    beyond = change > policy.max_regression if worse == "greater" else change < -policy.max_regression
    return MetricResult(metric, "mann-whitney-u", base, value, change, _bootstrap(s, c, statistic) if interval else None,
                        p_value, not (beyond and p_value < policy.alpha), n_s, n_c)


def _tail(stable: Sequence[float], candidate: Sequence[float], policy: JudgePolicy) -> MetricResult:
    n_s, n_c = len(stable), len(candidate)
    if n_s < MIN_SAMPLES or n_c < MIN_SAMPLES:
        return MetricResult("latency_p95", "bootstrap", None, None, None, None, None, None, n_s, n_c)
    s, c = np.asarray(stable, float), np.asarray(candidate, float)
    base, value = float(np.percentile(s, 95)), float(np.percentile(c, 95))
    interval = _bootstrap(s, c, "p95")
    return MetricResult("latency_p95", "bootstrap", base, value, value / base - 1 if base > 0 else None, interval,
                        None, not interval[0] > policy.max_regression, n_s, n_c)


def _rate(metric: str, stable: Sequence[bool], candidate: Sequence[bool], policy: JudgePolicy) -> MetricResult:
    """A rate that should not rise, by a one-sided two-proportion z-test."""
    n_s, n_c = len(stable), len(candidate)
    if n_s < MIN_SAMPLES or n_c < MIN_SAMPLES:
        return MetricResult(metric, "two-proportion-z", None, None, None, None, None, None, n_s, n_c)
    p_s, p_c = sum(stable) / n_s, sum(candidate) / n_c
    pooled = (sum(stable) + sum(candidate)) / (n_s + n_c)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_s + 1 / n_c))
    p_value = float(norm.sf((p_c - p_s) / spread)) if spread > 0 else 1.0
    wald = math.sqrt(p_s * (1 - p_s) / n_s + p_c * (1 - p_c) / n_c) * float(norm.ppf(0.5 + CONFIDENCE / 2))
    worse = p_c > p_s * (1 + policy.max_regression) and p_value < policy.alpha
    return MetricResult(metric, "two-proportion-z", p_s, p_c, p_c - p_s, (p_c - p_s - wald, p_c - p_s + wald),
                        p_value, not worse, n_s, n_c)


def compare(stable: Sequence[Sample], candidate: Sequence[Sample], policy: JudgePolicy,
            intervals: bool = True) -> list[MetricResult]:
    """Every live-traffic metric of the two arms (requests that failed have no latency or reading);
    without `intervals`, only what the verdict needs (windows are judged often and only pass or fail)."""
    ok_s, ok_c = [x for x in stable if not x.error], [x for x in candidate if not x.error]
    return [
        _shift("latency_p50", [x.latency_s for x in ok_s], [x.latency_s for x in ok_c], policy, "greater", intervals),
        _tail([x.latency_s for x in ok_s], [x.latency_s for x in ok_c], policy),
        _rate("error_rate", [x.error for x in stable], [x.error for x in candidate], policy),
        _rate("empty_rate", [x.empty for x in ok_s], [x.empty for x in ok_c], policy),
        _shift("confidence", [x.confidence for x in ok_s if x.confidence is not None],
               [x.confidence for x in ok_c if x.confidence is not None], policy, "less", intervals),
        _shift("lines", [x.lines for x in ok_s], [x.lines for x in ok_c], policy, "less", intervals),
    ]


def feedback(stable: Sequence[float], candidate: Sequence[float], policy: JudgePolicy) -> MetricResult:
    """Accuracy (1 - CER) of the results that got feedback, per arm."""
    return _shift("feedback_accuracy", stable, candidate, policy, "less")


def agreement(readings: Sequence[float], policy: JudgePolicy) -> MetricResult:
    """How far the candidate's shadow readings agree with the stable version's (1 is word for word)."""
    n = len(readings)
    if n < MIN_SAMPLES:
        return MetricResult("shadow_agreement", "wilcoxon", None, None, None, None, None, None, 0, n)
    values = np.asarray(readings, float)
    floor = 1 - policy.max_regression
    shifted = values - floor
    p_value = 1.0 if not np.any(shifted) else float(wilcoxon(shifted, alternative="less").pvalue)
    mean = float(values.mean())
    return MetricResult("shadow_agreement", "wilcoxon", 1.0, mean, mean - 1, _bootstrap(np.ones(n), values, "mean"),
                        p_value, not (mean < floor and p_value < policy.alpha), 0, n)


def cut_windows(candidate: Sequence[Sample], policy: JudgePolicy, now: float) -> list[tuple[float, float]]:
    """(start, end) of each complete window: `window_requests` canary samples or `window_s` seconds."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    count = 0
    for sample in sorted(candidate, key=lambda x: x.at):
        if start is None:
            start, count = sample.at, 0
        if sample.at - start >= policy.window_s:
            spans.append((start, sample.at))
            start, count = sample.at, 0
        count += 1
        if count >= policy.window_requests:
            spans.append((start, sample.at + 1e-6))
            start = None
    if start is not None and now - start >= policy.window_s:
        spans.append((start, now))
    return spans


def judge(stable: Sequence[Sample], candidate: Sequence[Sample], stable_feedback: Sequence[float],
          candidate_feedback: Sequence[float], policy: JudgePolicy, now: float,
          shadow: Sequence[float] = (), min_requests: int = 0, expired: bool = False,
          baseline: bool = False) -> Judgement:
    """The verdict so far. `min_requests`: a pass needs at least this many canary (or, for a shadow-only
    rollout, shadow) requests; `expired`: the rollout's time is up, so a verdict still pending is
    "expired" (the caller ends the canary rather than keep a candidate in limbo); `baseline`: the stable
    arm's samples are a recorded baseline (a bake: the stable version answers nobody now), so each
    window is judged against all of them rather than those of its own time span."""
    found = _judge(stable, candidate, stable_feedback, candidate_feedback, policy, now, shadow, baseline)
    seen = len(candidate) or len(shadow)
    if found.decision == "passed" and seen < min_requests:
        found = Judgement("pending", f"{found.rule}, but {seen} of the {min_requests} requests the rollout asks for",
                          None, found.overall, found.windows)
    if found.decision == "pending" and expired:
        return Judgement("expired", f"no verdict within the rollout's time ({found.rule})", None, found.overall,
                         found.windows)
    return found


def _judge(stable: Sequence[Sample], candidate: Sequence[Sample], stable_feedback: Sequence[float],
           candidate_feedback: Sequence[float], policy: JudgePolicy, now: float, shadow: Sequence[float],
           baseline: bool) -> Judgement:
    overall = [*compare(stable, candidate, policy), feedback(stable_feedback, candidate_feedback, policy),
               agreement(shadow, policy)]
    windows = [compare(stable if baseline else [x for x in stable if start <= x.at < end],
                       [x for x in candidate if start <= x.at < end], policy, intervals=False)
               for start, end in cut_windows(candidate, policy, now)]
    errors = sum(x.error for x in candidate)
    if len(candidate) >= MIN_SAMPLES and errors / len(candidate) >= policy.max_error_rate:
        return Judgement("regressed", f"guardrail: {errors} of {len(candidate)} canary requests failed "
                         f"(at least {policy.max_error_rate:.0%})", "error_rate", overall, windows)
    for whole in overall[-2:]:  # feedback accuracy, shadow agreement
        if whole.passed is False:
            return Judgement("regressed", _worse(whole, policy, "over the whole canary"), whole.metric, overall,
                             windows)
    if not candidate and len(shadow) >= policy.window_requests * policy.windows:  # a shadow without a canary
        return Judgement("passed", f"shadow readings agree within {policy.max_regression:.0%} over {len(shadow)} "
                         "requests", None, overall, windows)
    recent = windows[-policy.windows:]
    if len(recent) == policy.windows:
        for position, metric in enumerate(recent[-1]):
            if all(window[position].passed is False for window in recent):
                return Judgement("regressed", _worse(metric, policy, f"in {policy.windows} consecutive windows"),
                                 metric.metric, overall, windows)
        if all(m.passed is not False for window in recent for m in window) and all(
                any(m.passed for m in window) for window in recent):
            return Judgement("passed", f"no regression beyond {policy.max_regression:.0%} in {policy.windows} "
                             "consecutive windows", None, overall, windows)
    return Judgement("pending", f"{len(windows)} of {policy.windows} windows complete", None, overall, windows)


def _worse(metric: MetricResult, policy: JudgePolicy, where: str) -> str:
    change = "n/a" if metric.change is None else f"{metric.change:+.1%}"
    p_value = "" if metric.p_value is None else f", p={metric.p_value:.3g}"
    return (f"{metric.metric} regressed {where}: {change} (stable {metric.stable:.4g}, candidate "
            f"{metric.candidate:.4g}; {metric.test}{p_value}; bound {policy.max_regression:.0%}, alpha {policy.alpha})")
