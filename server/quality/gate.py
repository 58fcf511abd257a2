"""The quality gate: a new version serves only if it reads a golden set about as well as the live one.

Checksums prove a version is what was published, warm-up proves it runs; neither proves it reads. A
version with a wrong dictionary or badly trained weights runs fine and returns garbage. So before a
swap the candidate reads a *golden set* - images with their expected text - and its character error
rate (CER) must be

- at most `max_cer` (an absolute ceiling, the only check when nothing serves yet), and
- no worse than the live version's CER on the same set plus `tolerance`.

Golden set format: a directory of pairs `NAME.png` (or .jpg/.jpeg) + `NAME.txt` (UTF-8, the expected
text, one text line per line). CER over the set = total edit distance / total reference characters,
each image's recognised lines joined with newlines against its .txt, compared by `server.quality.textmetrics`
(case-folded, whitespace removed). A version's own `golden/` wins over the repository's
`<model_repo>/golden/`. With neither, a small built-in set of receipt lines rendered with Pillow's
built-in font is used, so that a version that reads garbage is still caught; the API names the set used.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from server.documents.decode import decode_image
from server.http.errors import ApiError
from server.pipeline import OcrPipeline
from server.quality.textmetrics import edit_distance, normalize_text

GOLDEN_DIR = "golden"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
BUILTIN = "builtin"
MAX_GOLDEN_PIXELS = 40_000_000
BUILTIN_PAGES = (
    ("RECEIPT NO 2026-0415", "CASH PAYMENT RECEIVED", "SUBTOTAL 41.90"),
    ("TOTAL DUE 45.27", "THANK YOU FOR YOUR PURCHASE"),
)


class GoldenSetError(ValueError):
    """The golden set cannot be used as it is; the message says what to fix."""


@dataclass(frozen=True)
class GoldenSample:
    name: str
    image: np.ndarray  # BGR uint8
    text: str


@dataclass(frozen=True)
class GoldenSet:
    source: str  # the directory, or "builtin"
    key: str  # changes when the set changes (for caching a live version's score)
    samples: tuple[GoldenSample, ...]


def load_golden_set(directory: Path) -> list[GoldenSample]:
    """Read a golden-set directory. Unpaired images or texts, unreadable images and an empty set are
    errors: a gate that silently checks less than ops think is worse than one that refuses."""
    directory = Path(directory)
    files = {p.name: p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")}
    images = sorted(p for p in files.values() if p.suffix.lower() in IMAGE_SUFFIXES)
    texts = {p.stem for p in files.values() if p.suffix == ".txt"}
    unpaired_texts = sorted(texts - {p.stem for p in images})
    if unpaired_texts:
        raise GoldenSetError(f"{directory}: {', '.join(t + '.txt' for t in unpaired_texts)} without an image")
    samples = []
    for image_path in images:
        text_path = image_path.with_suffix(".txt")
        if not text_path.is_file():
            raise GoldenSetError(f"{directory}: {image_path.name} has no {text_path.name}")
        try:
            image = decode_image(image_path.read_bytes(), MAX_GOLDEN_PIXELS)
        except ApiError as exc:
            raise GoldenSetError(f"{image_path}: {exc.message}") from exc
        try:
            text = text_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise GoldenSetError(f"{text_path} is not UTF-8") from exc
        samples.append(GoldenSample(image_path.stem, image, text))
    if not samples:
        raise GoldenSetError(f"{directory} holds no NAME.png/.jpg + NAME.txt pairs")
    return samples


def builtin_golden_set() -> list[GoldenSample]:
    """Receipt lines rendered with Pillow's built-in TrueType font (no font files needed)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=36)
    samples = []
    for index, lines in enumerate(BUILTIN_PAGES):
        width = max(int(font.getlength(line)) for line in lines) + 80
        page = Image.new("RGB", (width, 58 * len(lines) + 80), "white")
        draw = ImageDraw.Draw(page)
        for row, line in enumerate(lines):
            draw.text((40, 40 + row * 58), line, fill="black", font=font)
        samples.append(GoldenSample(f"builtin-{index}", np.asarray(page)[:, :, ::-1].copy(), "\n".join(lines)))
    return samples


def _directory_key(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        info = path.stat()
        digest.update(f"{path.name}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}\n".encode())
    return f"{directory.resolve()}:{digest.hexdigest()[:16]}"


def resolve_golden_set(version_dir: Path, repo_root: Path) -> GoldenSet:
    """The version's own golden set, else the repository's, else the built-in one."""
    for directory in (version_dir / GOLDEN_DIR, repo_root / GOLDEN_DIR):
        if directory.is_dir():
            try:
                key = _directory_key(directory)
                return GoldenSet(str(directory), key, tuple(load_golden_set(directory)))
            except OSError as exc:
                raise GoldenSetError(f"cannot read {directory}: {exc.strerror or exc}") from exc
    return GoldenSet(BUILTIN, BUILTIN, tuple(builtin_golden_set()))


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
            raise GoldenSetError(f"unknown quality_gate keys in the manifest: {sorted(unknown)}")
        values = {}
        for key in ("tolerance", "max_cer"):
            value = quality_gate.get(key, getattr(self, key))
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise GoldenSetError(f"quality_gate.{key} must be a number within [0, 1], got {value!r}")
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
