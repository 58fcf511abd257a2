"""The real loader: a version directory -> a verified, probed, warmed-up and gated OCR pipeline.

    signature  model.sig against the trust store and the revocation list (`server.governance.verify`),
             at every load on every worker, approved or not; refused as `policy.signature_refused`
             says, with the problem as the code (a rejection that replaces any approval)
    verify   the manifest names the version and every file matches its sha256 (the files may have
             changed since the scan: a copy over the version - retried, not rejected)
    probe    the networks are opened in a throw-away child process first (`server.lifecycle.probe`),
             unless an approved version already has these very network files
    build    each stage on the runtime its manifest entry or its files name, with the settings the
             manifest and the stages' `inference.yml` give (`server.repository.family`)
    warm up  the whole pipeline on a few page shapes; the dictionary is checked against the network
    gate     the golden-set CER against the live version's (`server.lifecycle.evaluation`)

A version with a standing approval skips the probe and the gate and carries the approval's result.
`recheck` repeats the two verifications on a version being served: the files against the manifest it
was approved with, the signature against today's trust store and revocations.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from server.governance.verify import SignatureChecker, SignatureStatus
from server.lifecycle.evaluation import Evaluator
from server.lifecycle.loader import Loaded, LoadedModel, LoadFailure, LoadRequest
from server.lifecycle.policy import signature_refused
from server.lifecycle.probe import ProbeCrash, ProbeError, network_digest, probe_networks
from server.lifecycle.verdicts import VerdictStore
from server.observability.metrics import MODEL_LOAD_DURATION
from server.pipeline import OcrPipeline
from server.pipeline.batching import BatchPolicy, RecognitionBatcher
from server.pipeline.cls import AngleClassifier
from server.pipeline.det import TextDetector
from server.pipeline.rec import TextRecognizer, load_charset
from server.quality.gate import GatePolicyError
from server.repository.family import FamilyError, resolve_settings
from server.repository.layout import ModelRepository
from server.repository.manifest import Manifest, ManifestError, read_manifest, verify_files
from server.runtime import InferenceSession, RuntimeOptions, open_session

# (height, width) of the synthetic pages used to warm up: portrait receipt, landscape, small photo.
WARMUP_SHAPES = ((960, 480), (480, 800), (320, 320))


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
        settings = resolve_settings(version_dir, manifest)
    except FamilyError as exc:
        raise LoadFailure("load_error", f"bad settings: {exc}") from exc
    opened: list[InferenceSession] = []

    def open_stage(name: str) -> InferenceSession:
        spec = manifest.stages[name]
        session = open_session(version_dir / spec.dir, options, spec.runtime)
        opened.append(session)
        return session

    try:
        rec_spec = manifest.stages["rec"]
        assert rec_spec.dict is not None  # the manifest schema requires it
        charset = load_charset(version_dir / rec_spec.dict, settings.rec.use_space_char)
        detector = TextDetector(open_stage("det"))
        classifier = AngleClassifier(open_stage("cls")) if "cls" in manifest.stages else None
        recognizer = TextRecognizer(open_stage("rec"), charset)
    except Exception as exc:  # Paddle raises many types for corrupt files; all mean "cannot load"
        for session in opened:
            session.close()
        raise LoadFailure("load_error", f"cannot build pipeline: {type(exc).__name__}: {exc}") from exc
    batcher = None
    if options.rec_batch_wait_ms > 0:
        batcher = RecognitionBatcher(recognizer, BatchPolicy(
            wait_s=options.rec_batch_wait_ms / 1000, max_lines=options.rec_batch_max,
            max_requests=options.request_threads, runners=options.concurrency))
    return OcrPipeline(detector, classifier, recognizer, settings, batcher)


def warm_up(pipeline: OcrPipeline, shapes: tuple[tuple[int, int], ...] = WARMUP_SHAPES) -> None:
    """Run the whole pipeline on a few (height, width) shapes, and check the dictionary fits the recogniser.

    A dictionary with the wrong number of characters would not fail, it would read garbage, so the
    class count is checked against the network's output here.
    """
    _, height, width = pipeline.settings.rec.image_shape
    classes = pipeline.recognizer.session.run(np.zeros((1, 3, height, width), dtype=np.float32)).shape[-1]
    if classes != len(pipeline.recognizer.charset):
        raise LoadFailure(
            "load_error",
            f"the recogniser outputs {classes} classes but its dictionary gives "
            f"{len(pipeline.recognizer.charset)} (blank and space included): wrong or damaged dictionary",
        )
    for shape in shapes:
        pipeline.run(_warmup_page(*shape))


def verified_manifest(repo: ModelRepository, version: str) -> Manifest:
    """The manifest of `version`, once every file it lists matches; else a (retried) LoadFailure."""
    version_dir = repo.version_dir(version)
    if not repo.is_inside(version_dir):
        raise LoadFailure("outside_repository", f"{version_dir} resolves outside the model repository")
    try:
        manifest = read_manifest(version_dir)
    except ManifestError as exc:
        raise LoadFailure("verify_failed", str(exc), sticky=False) from exc
    if manifest.version != version:
        raise LoadFailure("verify_failed", f"manifest says version {manifest.version!r} but the directory is "
                                           f"{version!r}", sticky=False)
    problems = verify_files(version_dir, manifest)
    if problems:
        raise LoadFailure("verify_failed", "verification failed: " + "; ".join(problems[:5]), sticky=False)
    return manifest


def verified_signature(checker: SignatureChecker, version_dir: Path, pipeline: str, required: bool) -> SignatureStatus:
    """The version's signature status, or the LoadFailure that refuses it (sticky, for every worker)."""
    status = checker.check(version_dir, pipeline)
    if signature_refused(status, required):
        assert status.problem is not None
        raise LoadFailure(status.problem.value, f"signature: {status.reason}", withdraws=True,
                          signature=status.to_json())
    return status


def load_version(
    repo: ModelRepository,
    version: str,
    options: RuntimeOptions,
    warmup_shapes: tuple[tuple[int, int], ...] = WARMUP_SHAPES,
) -> LoadedModel:
    """Verify, build and warm up `version` of `repo` (no probe, no gate: benchmarks and tests use it)."""
    manifest = verified_manifest(repo, version)
    version_dir = repo.version_dir(version)
    start = time.perf_counter()
    pipeline = build_pipeline(version_dir, manifest, options)
    built = time.perf_counter()
    try:
        warm_up(pipeline, warmup_shapes)
    except LoadFailure:
        pipeline.close()
        raise
    except Exception as exc:
        pipeline.close()
        raise LoadFailure("load_error", f"warm-up failed: {type(exc).__name__}: {exc}") from exc
    return LoadedModel(name=manifest.name, version=version, path=version_dir, manifest=manifest, pipeline=pipeline,
                       load_seconds=built - start, warmup_seconds=time.perf_counter() - built)


class PipelineLoader:
    """`Loader` for PP-OCR versions of one repository, on this worker's runtime options."""

    def __init__(self, repo: ModelRepository, options: RuntimeOptions, evaluator: Evaluator, verdicts: VerdictStore,
                 warmup_shapes: tuple[tuple[int, int], ...] = WARMUP_SHAPES, probe_timeout_s: float = 600.0,
                 signatures: SignatureChecker | None = None, require_signature: bool = False) -> None:
        self.repo = repo
        self.signatures = signatures or SignatureChecker(None, None)  # no trust store: nothing verifies
        self.require_signature = require_signature
        self.options = options
        self.evaluator = evaluator
        self.verdicts = verdicts
        self.warmup_shapes = warmup_shapes
        self.probe_timeout_s = probe_timeout_s

    def load(self, request: LoadRequest) -> Loaded:
        inspection = request.inspection
        assert inspection.manifest is not None  # whole versions always have one
        try:
            signature = verified_signature(self.signatures, inspection.path, self.repo.pipeline,
                                           self.require_signature).to_json()
        except LoadFailure:
            if not inspection.unchanged():  # a copy over the version: not the files the scan saw
                raise LoadFailure("verify_failed", "its files changed while they were verified", sticky=False)
            raise
        networks = network_digest(inspection.manifest)
        if request.approval is None and not self._networks_known(networks):
            try:
                probe_networks(inspection.path, inspection.manifest, self.options, self.probe_timeout_s)
            except ProbeCrash as exc:
                raise LoadFailure("crashed", str(exc)) from exc
            except ProbeError as exc:
                raise LoadFailure("load_error", str(exc)) from exc
        model = load_version(self.repo, inspection.version, self.options, self.warmup_shapes)
        MODEL_LOAD_DURATION.labels(phase="load").observe(model.load_seconds)
        MODEL_LOAD_DURATION.labels(phase="warmup").observe(model.warmup_seconds)
        if request.approval is not None:
            return Loaded(model, request.approval.gate or {}, networks, signature)
        try:
            result = self.evaluator.judge(model, request.live, request.live_gate)
        except GatePolicyError as exc:
            model.close()
            raise LoadFailure("bad_manifest", str(exc)) from exc
        except Exception as exc:  # an unusable golden set (GoldenSetError, OSError) says nothing about the version
            model.close()
            raise LoadFailure("gate_error", f"the quality gate cannot run: {exc}", sticky=False) from exc
        if not result.passed:
            model.close()
            raise LoadFailure("gate_rejected", result.reason, gate=result.to_json(), signature=signature)
        return Loaded(model, result.to_json(), networks, signature)

    def recheck(self, model: LoadedModel) -> LoadFailure | None:
        try:
            status = verified_signature(self.signatures, model.path, self.repo.pipeline, self.require_signature)
        except LoadFailure as failure:
            return failure
        problems = verify_files(model.path, model.manifest)  # an unsigned version: its approved checksums
        if problems:
            return LoadFailure("tampered", "changed on disk since it was approved: " + "; ".join(problems[:5]),
                               withdraws=True, signature=status.to_json())
        return None

    def _networks_known(self, digest: str) -> bool:
        """Whether an approved version with these very network files exists (they open without crashing)."""
        return any(v.approved and v.networks == digest for v in self.verdicts.all().values())
