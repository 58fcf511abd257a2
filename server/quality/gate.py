"""The quality gate: a new version serves only if it reads a golden set about as well as the live one.

Checksums prove a version is what was published, warm-up proves it runs; neither proves it reads. A
version with a wrong dictionary or badly trained weights runs fine and returns garbage. So before a
swap the candidate reads a *golden set* - images with their expected text - and its character error
rate (CER) must be

- at most `max_cer` (an absolute ceiling, the only check when nothing serves yet), and
- no worse than the live version's CER on the same set plus `tolerance`.

The golden sets and their format are in `server.quality.golden`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from server.pipeline import OcrPipeline
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


def golden_cer(pipeline: OcrPipeline, samples: tuple[GoldenSample, ...] | list[GoldenSample]) -> GoldenScore:
    """Recognition CER of `pipeline` over `samples`: total edits / total reference characters."""
    errors = chars = 0
    for sample in samples:
        errors += edit_distance(pipeline.run(sample.image).text, sample.text)
        chars += len(normalize_text(sample.text))
    return GoldenScore(cer=errors / chars if chars else 0.0, errors=errors, chars=chars, images=len(samples))


@dataclass(frozen=True)
class GatePolicy:
    tolerance: float
    max_cer: float

    def for_manifest(self, quality_gate: Mapping[str, Any]) -> "GatePolicy":
        """This policy with the version manifest's `quality_gate` overrides (`tolerance`, `max_cer`)."""
        unknown = set(quality_gate) - {"tolerance", "max_cer"}
        if unknown:
            raise GatePolicyError(f"unknown quality_gate keys in the manifest: {sorted(unknown)}")
        values = {}
        for key in ("tolerance", "max_cer"):
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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def judge(
    score: GoldenScore, golden: GoldenSet, policy: GatePolicy, baseline: tuple[str, GoldenScore] | None
) -> GateResult:
    """The gate's decision on a candidate's score (and the live version's, when one serves)."""
    common = dict(golden_set=golden.source, golden_set_key=golden.key, images=score.images, errors=score.errors,
                  chars=score.chars, cer=round(score.cer, 6),
                  tolerance=policy.tolerance, max_cer=policy.max_cer,
                  baseline_version=baseline[0] if baseline else None,
                  baseline_cer=round(baseline[1].cer, 6) if baseline else None)
    if score.cer > policy.max_cer:
        return GateResult(False, f"golden-set CER {score.cer:.4f} is above the ceiling {policy.max_cer:.4f} "
                                 f"({score.errors} errors in {score.chars} characters, set {golden.source})",
                          **common)  # type: ignore[arg-type]
    if baseline is not None and score.cer > baseline[1].cer + policy.tolerance + 1e-12:
        return GateResult(False, f"golden-set CER {score.cer:.4f} is worse than the live version {baseline[0]}'s "
                                 f"{baseline[1].cer:.4f} by more than the tolerance {policy.tolerance:.4f} "
                                 f"(set {golden.source})", **common)  # type: ignore[arg-type]
    against = f" (live {baseline[0]}: {baseline[1].cer:.4f})" if baseline else " (nothing serving: ceiling only)"
    return GateResult(True, f"golden-set CER {score.cer:.4f}{against} on {score.images} image(s) of "
                            f"{os.path.basename(golden.source) or golden.source}", **common)  # type: ignore[arg-type]
