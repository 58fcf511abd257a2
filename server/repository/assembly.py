"""A version's files -> an `OcrPipeline`: each stage's network opened on its runtime, with the settings
its manifest and `inference.yml` files give.

One place for it because two callers need the same pipeline a server would serve: the loader
(`server.lifecycle.pipeline_loader`, which adds verification, warm-up and the gate) and `models
quantize`, which reads its calibration images through the version's own pipeline with each session
wrapped (`wrap`) to keep what the network was given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from server.pipeline import OcrPipeline
from server.pipeline.batching import BatchPolicy, RecognitionBatcher
from server.pipeline.cls import AngleClassifier
from server.pipeline.det import TextDetector
from server.pipeline.rec import TextRecognizer, load_charset
from server.repository.family import resolve_settings
from server.repository.manifest import Manifest
from server.runtime import InferenceSession, RuntimeOptions, open_session

SessionWrapper = Callable[[str, InferenceSession], InferenceSession]


def open_pipeline(version_dir: Path, manifest: Manifest, options: RuntimeOptions,
                  wrap: SessionWrapper | None = None) -> OcrPipeline:
    """Open each stage's network (passed through `wrap(stage, session)` when given) and assemble the
    pipeline. Raises `FamilyError` for settings the pipeline cannot follow, before opening anything;
    closes what it opened if a stage then fails."""
    settings = resolve_settings(version_dir, manifest)
    opened: list[InferenceSession] = []

    def open_stage(name: str) -> InferenceSession:
        spec = manifest.stages[name]
        session = open_session(version_dir / spec.dir, options, spec.runtime)
        opened.append(session)
        return wrap(name, session) if wrap is not None else session

    try:
        rec_spec = manifest.stages["rec"]
        assert rec_spec.dict is not None  # the manifest schema requires it
        charset = load_charset(version_dir / rec_spec.dict, settings.rec.use_space_char)
        detector = TextDetector(open_stage("det"))
        classifier = AngleClassifier(open_stage("cls")) if "cls" in manifest.stages else None
        recognizer = TextRecognizer(open_stage("rec"), charset)
    except BaseException:
        for session in opened:
            session.close()
        raise
    batcher = None
    if options.rec_batch_wait_ms > 0:  # cross-request batching (server.pipeline.batching), off by default
        batcher = RecognitionBatcher(recognizer, BatchPolicy(
            wait_s=options.rec_batch_wait_ms / 1000, max_lines=options.rec_batch_max,
            max_requests=options.request_threads, runners=options.concurrency))
    return OcrPipeline(detector, classifier, recognizer, settings, batcher)
