"""Loader: a version directory on disk -> a verified, warmed-up `LoadedModel` ready to serve.

Contract: `load_version` either returns a model that has already answered real inference calls on
several image shapes, or raises `LoadError` with a reason fit for ops to read, having released whatever
it built. It never touches the model being served: that is the manager's job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from server.pipeline import OcrPipeline, PipelineSettings
from server.pipeline.cls import AngleClassifier
from server.pipeline.det import TextDetector
from server.pipeline.rec import TextRecognizer, load_charset
from server.repository.layout import ModelRepository
from server.repository.manifest import Manifest, ManifestError, read_manifest, verify_files
from server.runtime import InferenceSession, RuntimeOptions, open_session

# (height, width) of the synthetic pages used to warm up: portrait receipt, landscape, small photo.
WARMUP_SHAPES = ((960, 480), (480, 800), (320, 320))


class LoadError(RuntimeError):
    """The version cannot serve; the message says why."""


class VerificationError(LoadError):
    """The files on disk are not (or no longer) those the manifest lists: a copy in progress, or damage."""


@dataclass
class LoadedModel:
    name: str
    version: str
    path: Path
    manifest: Manifest
    pipeline: OcrPipeline
    load_seconds: float = 0.0
    warmup_seconds: float = 0.0
    loaded_at: float = field(default_factory=time.time)

    def close(self) -> None:
        self.pipeline.close()


def _warmup_page(height: int, width: int) -> np.ndarray:
    """A white page with a few lines of printed text (Hershey font: no font files needed)."""
    page = np.full((height, width, 3), 255, dtype=np.uint8)
    scale = max(0.5, width / 640)
    for row, text in enumerate(("TOTAL 12.50", "INVOICE 2026-0001", "THANK YOU")):
        y = int((row + 1) * height / 4)
        cv2.putText(page, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 2, cv2.LINE_AA)
    return page


def build_pipeline(version_dir: Path, manifest: Manifest, options: RuntimeOptions) -> OcrPipeline:
    """Open each stage's network and assemble the pipeline; closes what it opened if a stage fails."""
    try:
        settings = PipelineSettings.from_mapping(manifest.settings)
    except (TypeError, ValueError) as exc:
        raise LoadError(f"bad settings in manifest: {exc}") from exc
    opened: list[InferenceSession] = []

    def open_stage(name: str) -> InferenceSession:
        session = open_session(version_dir / manifest.stages[name].dir, options)
        opened.append(session)
        return session

    try:
        rec_spec = manifest.stages["rec"]
        assert rec_spec.dict is not None  # the manifest schema requires it
        charset = load_charset(version_dir / rec_spec.dict, settings.rec.use_space_char)
        detector = TextDetector(open_stage("det"))
        classifier = AngleClassifier(open_stage("cls")) if "cls" in manifest.stages else None
        recognizer = TextRecognizer(open_stage("rec"), charset)
    except LoadError:
        for session in opened:
            session.close()
        raise
    except Exception as exc:  # Paddle raises many types for corrupt files; all mean "cannot load"
        for session in opened:
            session.close()
        raise LoadError(f"cannot build pipeline: {type(exc).__name__}: {exc}") from exc
    return OcrPipeline(detector, classifier, recognizer, settings)


def warm_up(pipeline: OcrPipeline, shapes: tuple[tuple[int, int], ...] = WARMUP_SHAPES) -> None:
    """Run the whole pipeline on a few (height, width) shapes, and check the dictionary fits the recogniser.

    A dictionary with the wrong number of characters would not fail, it would read garbage, so the
    class count is checked against the network's output here.
    """
    _, height, width = pipeline.settings.rec.image_shape
    classes = pipeline.recognizer.session.run(np.zeros((1, 3, height, width), dtype=np.float32)).shape[-1]
    if classes != len(pipeline.recognizer.charset):
        raise LoadError(
            f"the recogniser outputs {classes} classes but its dictionary gives "
            f"{len(pipeline.recognizer.charset)} (blank and space included): wrong or damaged dictionary"
        )
    for shape in shapes:
        pipeline.run(_warmup_page(*shape))


def load_version(
    repo: ModelRepository,
    version: str,
    options: RuntimeOptions,
    warmup_shapes: tuple[tuple[int, int], ...] = WARMUP_SHAPES,
) -> LoadedModel:
    """Verify, build and warm up `version` of `repo`."""
    version_dir = repo.version_dir(version)
    if not repo.is_inside(version_dir):
        raise LoadError(f"{version_dir} resolves outside the model repository")
    try:
        manifest = read_manifest(version_dir)
    except ManifestError as exc:
        raise VerificationError(str(exc)) from exc
    if manifest.version != version:
        raise VerificationError(f"manifest says version {manifest.version!r} but the directory is {version!r}")
    problems = verify_files(version_dir, manifest)
    if problems:
        raise VerificationError("verification failed: " + "; ".join(problems[:5]))
    start = time.perf_counter()
    pipeline = build_pipeline(version_dir, manifest, options)
    built = time.perf_counter()
    try:
        warm_up(pipeline, warmup_shapes)
    except LoadError:
        pipeline.close()
        raise
    except Exception as exc:
        pipeline.close()
        raise LoadError(f"warm-up failed: {type(exc).__name__}: {exc}") from exc
    return LoadedModel(
        name=manifest.name,
        version=version,
        path=version_dir,
        manifest=manifest,
        pipeline=pipeline,
        load_seconds=built - start,
        warmup_seconds=time.perf_counter() - built,
    )
