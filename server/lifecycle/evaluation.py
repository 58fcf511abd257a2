"""The quality gate as the lifecycle runs it: a candidate's golden-set score against the live version's.

The live version's score on the same golden set (its CER, and its field exact match when the set
expects fields) is the baseline. Computing it means running the live model over the whole set, so it
is taken, in order of preference, from memory (the same live model
and set as last time), from the live version's own gate result when that was made on the same set
(the figures are stored with its verdict), or by running the set.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from server.lifecycle.loader import LoadedModel
from server.observability.metrics import MODEL_GOLDEN_CER
from server.quality.gate import GatePolicy, GateResult, GoldenScore, golden_score, judge
from server.quality.golden import GoldenSet, resolve_golden_set


class Evaluator:
    def __init__(self, policy: GatePolicy, repo_root: Path) -> None:
        self.policy = policy
        self.repo_root = repo_root
        # (the live model, the golden set's key, its score); weak, so a retired model is not kept alive
        self._baseline: tuple[weakref.ref[LoadedModel], str, GoldenScore] | None = None

    def judge(self, model: LoadedModel, live: LoadedModel | None, live_gate: dict[str, Any] | None) -> GateResult:
        """The gate's decision on `model`; raises when the gate cannot run (GatePolicyError for a bad
        manifest section, GoldenSetError / OSError for an unusable golden set)."""
        policy = self.policy.for_manifest(model.manifest.quality_gate)
        golden = resolve_golden_set(model.path, self.repo_root)
        score = golden_score(model.pipeline, golden.samples)
        baseline = None if live is None else (live.version, self._live_score(live, live_gate, golden))
        return judge(score, golden, policy, baseline)

    def _live_score(self, live: LoadedModel, live_gate: dict[str, Any] | None, golden: GoldenSet) -> GoldenScore:
        cached = self._baseline
        if cached is not None and cached[0]() is live and cached[1] == golden.key:
            return cached[2]
        gate = live_gate or {}
        if gate.get("golden_set_key") == golden.key and gate.get("errors") is not None:
            score = GoldenScore(cer=gate["errors"] / gate["chars"] if gate["chars"] else 0.0,
                                errors=gate["errors"], chars=gate["chars"], images=gate["images"],
                                field_hits=gate.get("field_hits") or 0, fields=gate.get("fields") or 0)
        else:
            score = golden_score(live.pipeline, golden.samples)
            MODEL_GOLDEN_CER.labels(live.version).set(score.cer)
        self._baseline = (weakref.ref(live), golden.key, score)
        return score
