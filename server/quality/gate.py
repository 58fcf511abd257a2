"""The quality gate: a new version serves only if it reads a golden set about as well as the live one.

Checksums prove a version is what was published, warm-up proves it runs; neither proves it reads. A
version with a wrong dictionary or badly trained weights runs fine and returns garbage. So before a
swap the candidate reads a *golden set* - images with their expected text - and its character error
rate (CER) must be

- at most `max_cer` (an absolute ceiling, the only check when nothing serves yet), and
- no worse than the live version's CER on the same set plus `tolerance`.

When some of the set's images come with expected fields (`NAME.fields.json`, see
`server.quality.expected_fields`), the fields extracted from the same readings are scored too (exact
match per field): the share matched must be at least `min_field_match` and no lower than the live
version's on the same set minus `field_tolerance`. Images without expected fields cost nothing more
than their CER: no extraction runs for them.

The golden sets and their format are in `server.quality.golden`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from server.fields import extract_fields
from server.pipeline import OcrPipeline
from server.quality.expected_fields import score_fields
from server.quality.golden import GoldenSample, GoldenSet
from server.quality.textmetrics import edit_distance, normalize_text


class GatePolicyError(ValueError):
    """A manifest's `quality_gate` section is malformed: the version's own fault."""


@dataclass(frozen=True)
class GoldenScore:
    cer: float
    errors: int
    chars: int
    images: int
    field_hits: int = 0  # expected fields matched exactly
    fields: int = 0  # expected fields scored (0: the set has none)

    @property
    def field_match(self) -> float | None:
        return self.field_hits / self.fields if self.fields else None


def golden_score(pipeline: OcrPipeline, samples: tuple[GoldenSample, ...] | list[GoldenSample]) -> GoldenScore:
    """Recognition CER of `pipeline` over `samples` (total edits / total reference characters), and the
    exact match of the fields extracted from the same readings, on the samples that expect fields."""
    errors = chars = hits = fields = 0
    for sample in samples:
        result = pipeline.run(sample.image)
        errors += edit_distance(result.text, sample.text)
        chars += len(normalize_text(sample.text))
        if sample.expected_fields is not None:
            matched = score_fields(sample.expected_fields, extract_fields(sample.expected_fields.kind, result.lines))
            hits += sum(matched.values())
            fields += len(matched)
    return GoldenScore(cer=errors / chars if chars else 0.0, errors=errors, chars=chars, images=len(samples),
                       field_hits=hits, fields=fields)


@dataclass(frozen=True)
class GatePolicy:
    tolerance: float
    max_cer: float
    # Fields (only for sets with expected fields); the defaults check nothing.
    min_field_match: float = 0.0
    field_tolerance: float = 1.0

    def for_manifest(self, quality_gate: Mapping[str, Any]) -> "GatePolicy":
        """This policy with the version manifest's `quality_gate` overrides (`tolerance`, `max_cer`,
        `min_field_match`, `field_tolerance`)."""
        keys = ("tolerance", "max_cer", "min_field_match", "field_tolerance")
        unknown = set(quality_gate) - set(keys)
        if unknown:
            raise GatePolicyError(f"unknown quality_gate keys in the manifest: {sorted(unknown)}")
        values = {}
        for key in keys:
            value = quality_gate.get(key, getattr(self, key))
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise GatePolicyError(f"quality_gate.{key} must be a number within [0, 1], got {value!r}")
            values[key] = float(value)
        return GatePolicy(**values)


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str
    golden_set: str
    golden_set_key: str  # identifies the set's contents: a later gate on the same set reuses the figures
    images: int
    errors: int
    chars: int
    cer: float
    tolerance: float
    max_cer: float
    baseline_version: str | None = None
    baseline_cer: float | None = None
    # Only when the set expects fields: matched, scored, and the live version's share on the same set.
    field_hits: int | None = None
    fields: int | None = None
    field_match: float | None = None
    min_field_match: float | None = None
    field_tolerance: float | None = None
    baseline_field_match: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _live_field_match(score: GoldenScore, baseline: tuple[str, GoldenScore] | None) -> float | None:
    """The live version's field match, when it was scored on the same expected fields."""
    return baseline[1].field_match if baseline is not None and baseline[1].fields == score.fields else None


def _fields_common(score: GoldenScore, policy: GatePolicy, baseline: tuple[str, GoldenScore] | None) -> dict[str, Any]:
    if not score.fields:
        return {}
    base = _live_field_match(score, baseline)
    return dict(field_hits=score.field_hits, fields=score.fields, field_match=round(score.field_hits / score.fields, 6),
                min_field_match=policy.min_field_match, field_tolerance=policy.field_tolerance,
                baseline_field_match=None if base is None else round(base, 6))


def _fields_refusal(score: GoldenScore, policy: GatePolicy, baseline: tuple[str, GoldenScore] | None,
                    golden: GoldenSet) -> str | None:
    """Why the fields fail the gate, or None (also when the set expects none)."""
    match = score.field_match
    if match is None:
        return None
    counts = f"{score.field_hits} of {score.fields} expected fields, set {golden.source}"
    if match < policy.min_field_match - 1e-12:
        return f"field exact match {match:.4f} is below the floor {policy.min_field_match:.4f} ({counts})"
    live = _live_field_match(score, baseline)
    if baseline is not None and live is not None and match < live - policy.field_tolerance - 1e-12:
        return (f"field exact match {match:.4f} is worse than the live version {baseline[0]}'s {live:.4f} by more "
                f"than the tolerance {policy.field_tolerance:.4f} ({counts})")
    return None


def judge(
    score: GoldenScore, golden: GoldenSet, policy: GatePolicy, baseline: tuple[str, GoldenScore] | None
) -> GateResult:
    """The gate's decision on a candidate's score, and the live version's when it is the baseline (none
    serves, or a releaser pinned the candidate below it: server.lifecycle.policy.gated_against_live)."""
    common = dict(golden_set=golden.source, golden_set_key=golden.key, images=score.images, errors=score.errors,
                  chars=score.chars, cer=round(score.cer, 6),
                  tolerance=policy.tolerance, max_cer=policy.max_cer,
                  baseline_version=baseline[0] if baseline else None,
                  baseline_cer=round(baseline[1].cer, 6) if baseline else None,
                  **_fields_common(score, policy, baseline))
    if score.cer > policy.max_cer:
        return GateResult(False, f"golden-set CER {score.cer:.4f} is above the ceiling {policy.max_cer:.4f} "
                                 f"({score.errors} errors in {score.chars} characters, set {golden.source})",
                          **common)  # type: ignore[arg-type]
    if baseline is not None and score.cer > baseline[1].cer + policy.tolerance + 1e-12:
        return GateResult(False, f"golden-set CER {score.cer:.4f} is worse than the live version {baseline[0]}'s "
                                 f"{baseline[1].cer:.4f} by more than the tolerance {policy.tolerance:.4f} "
                                 f"(set {golden.source})", **common)  # type: ignore[arg-type]
    refusal = _fields_refusal(score, policy, baseline, golden)
    if refusal is not None:
        return GateResult(False, refusal, **common)  # type: ignore[arg-type]
    against = f" (live {baseline[0]}: {baseline[1].cer:.4f})" if baseline else " (no live baseline: ceiling only)"
    fields = f"; fields {score.field_hits}/{score.fields} exact" if score.fields else ""
    return GateResult(True, f"golden-set CER {score.cer:.4f}{against} on {score.images} image(s) of "
                            f"{os.path.basename(golden.source) or golden.source}{fields}", **common)  # type: ignore[arg-type]
