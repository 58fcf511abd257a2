"""Int8 versions of ONNX versions (`ocr-server models quantize VERSION --calibration DIR`).

Static quantization with ONNX Runtime's own tooling (`onnxruntime.quantization.quantize_static`):
QDQ format (QuantizeLinear/DequantizeLinear pairs around each quantized operator: the form both ONNX
Runtime and OpenVINO turn into int8 kernels, so a QDQ file runs on either runtime), weights int8 per
output channel, activations uint8 with ranges calibrated (min/max) on what each network really sees.

What each network sees is taken from the source version's own pipeline, not rebuilt here: the
calibration images are read by the version as a server would read them, every stage's session wrapped
so that it keeps each batch it is given. The detector is calibrated on the page tensors the
detection resize and padding make, the classifier and recogniser on the line batches that the crops,
turns and width buckets make, so calibration cannot drift from serving when the preprocessing changes.

The result is a new version with its own manifest, published through the repository's publishing path
(`server.repository.publish`): a watcher sees all of it or nothing, and it is verified, probed and
judged by the quality gate against the live version like any other. Its manifest records what it is
(`source.quantized`): the source version and the digest of its manifest, the calibration set's image
count and digest, the method, and each stage's precision. Int8 changes what a version reads, so it
is only ever a version of its own, which a deployment opts into by publishing it (bench/RESULTS.md
has what it costs).

Only ONNX stages are quantized: this tooling rewrites ONNX graphs. A Paddle Inference stage is refused
with the name of a version (installed, or installable) holding the same networks in ONNX.

The calibration set should look like the documents served but be neither the quality gate's golden set
(a gate judging on its own calibration images would flatter the version) nor the data the version is
evaluated on. Every batch of every image is kept in memory until its stage is calibrated: tens of
images, not thousands.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from server.documents.decode import decode_image
from server.documents.errors import DecodeError
from server.repository.assembly import open_pipeline
from server.repository.family import FamilyError
from server.repository.layout import GOLDEN_DIR, ModelRepository, parse_version
from server.repository.manifest import (
    MANIFEST_NAME,
    STAGES,
    Manifest,
    ManifestError,
    read_manifest,
    sha256_file,
    verify_files,
    write_manifest,
)
from server.repository.publish import publish
from server.repository.recipes import RECIPES
from server.runtime import InferenceSession, RuntimeOptions
from server.runtime.base import OPENVINO_PRECISION, PADDLE, ModelFilesError, detect_runtime
from server.runtime.onnx import find_onnx_model
from server.runtime.openvino import IR_FILE

# What `stages` defaults to. Detection only: int8 recognition cost far more CER on the dev receipts than
# int8 detection, for every family tried (bench/RESULTS.md, "Int8 versions"); `--stages det,rec` asks
# for it anyway.
DEFAULT_STAGES = ("det",)
MIN_OPSET = 13
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_CALIBRATION_PIXELS = 40_000_000
LABEL_SUFFIX = "_int8"


class QuantizeError(ValueError):
    """The version cannot be quantized as asked; the message says why."""


@dataclass(frozen=True)
class CalibrationSet:
    images: list[np.ndarray]
    count: int
    digest: str  # sha256 over the sorted (name, sha256 of the file) pairs


def load_calibration_set(directory: Path) -> CalibrationSet:
    """The images of `directory` (PNG/JPEG, not its subfolders), decoded as a request's image is."""
    if not directory.is_dir():
        raise QuantizeError(f"--calibration {directory} is not a directory")
    paths = sorted(p for p in directory.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise QuantizeError(f"--calibration {directory} holds no .png/.jpg/.jpeg images")
    digest = hashlib.sha256()
    images = []
    for path in paths:
        data = path.read_bytes()
        digest.update(f"{path.name}\0{hashlib.sha256(data).hexdigest()}\n".encode())
        try:
            images.append(decode_image(data, MAX_CALIBRATION_PIXELS))
        except DecodeError as exc:
            raise QuantizeError(f"calibration image {path}: {exc.message}") from exc
    return CalibrationSet(images=images, count=len(paths), digest=digest.hexdigest())


def default_version_name(source: str) -> str:
    """`3.1.0-ppocrv6_small` -> `3.1.0-ppocrv6_small_int8`: sorts right after its source."""
    key = parse_version(source)
    return f"{key.major}.{key.minor}.{key.patch}-{key.label + LABEL_SUFFIX if key.label else LABEL_SUFFIX[1:]}"


def _onnx_sibling(repo: ModelRepository, manifest: Manifest) -> str:
    """Where the same networks are to be had in ONNX: an installed version or an installable recipe."""
    models = {k: v for k, v in manifest.source.get("models", {}).items() if k in STAGES}
    if models:
        for version in reversed(repo.version_names()):
            try:
                other = read_manifest(repo.version_dir(version))
            except ManifestError:
                continue
            if other.framework.get("format") == "onnx" and \
                    {k: v for k, v in other.source.get("models", {}).items() if k in STAGES} == models:
                return f"quantize {version}, the same networks in ONNX"
        for recipe in RECIPES.values():
            onnx = any(rel.endswith(".onnx") for rel in recipe.source.members)
            if recipe.models == models and onnx and all(spec.runtime is None for spec in recipe.stages.values()):
                return (f"install the same networks in ONNX with `ocr-server models install {recipe.name}` "
                        f"({recipe.version}) and quantize that")
    return "publish its networks in ONNX (paddle2onnx) as a version and quantize that"


def _quantizable(version_dir: Path, manifest: Manifest, stages: list[str], repo: ModelRepository) -> dict[str, Path]:
    """The ONNX file of each stage to quantize; QuantizeError for a stage that is not ONNX."""
    files = {}
    for name in stages:
        spec = manifest.stages[name]
        stage_dir = version_dir / spec.dir
        try:
            runtime = detect_runtime(stage_dir, spec.runtime)
            model = find_onnx_model(stage_dir)
        except ModelFilesError as exc:
            raise QuantizeError(str(exc)) from exc
        if runtime == PADDLE or model is None or (runtime in OPENVINO_PRECISION and (stage_dir / IR_FILE).is_file()):
            raise QuantizeError(f"{manifest.version}: stage {name} runs {runtime} files, and int8 quantization "
                                f"rewrites ONNX graphs only: {_onnx_sibling(repo, manifest)}")
        files[name] = model
    return files


class _Recording:
    """An `InferenceSession` that keeps a copy of every batch it runs (see the module docstring)."""

    def __init__(self, session: InferenceSession) -> None:
        self.session = session
        self.batches: list[np.ndarray] = []

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(np.array(batch, dtype=np.float32, copy=True))
        return self.session.run(batch)

    def close(self) -> None:
        self.session.close()


def collect_inputs(version_dir: Path, manifest: Manifest, images: list[np.ndarray],
                   options: RuntimeOptions) -> dict[str, list[np.ndarray]]:
    """Every batch each stage's network is given while the version reads `images`."""
    recorders: dict[str, _Recording] = {}

    def wrap(stage: str, session: InferenceSession) -> InferenceSession:
        recorders[stage] = _Recording(session)
        return recorders[stage]

    try:
        pipeline = open_pipeline(version_dir, manifest, options, wrap)
    except FamilyError as exc:
        raise QuantizeError(f"{manifest.version}: bad settings: {exc}") from exc
    try:
        for image in images:
            pipeline.run(image)
    finally:
        pipeline.close()
    return {stage: recorder.batches for stage, recorder in recorders.items()}


METHOD = {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ", "weights": "int8, per channel",
          "activations": "uint8", "calibration": "MinMax"}


def quantize_model(model: Path, output: Path, batches: list[np.ndarray]) -> None:
    """Write the int8 QDQ form of `model` to `output`, calibrated on `batches` (its one input)."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory(prefix="ocr-quantize-") as tmp:
        model = _with_opset(model, Path(tmp) / "opset.onnx")
        # ORT's recommended first step: shapes inferred and the graph optimised (folded batch norms), so
        # that each quantized operator is one the runtime fuses. Symbolic shape inference needs sympy,
        # which these fully convolutional, dynamic-shape networks gain nothing from.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(output), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)


def _with_opset(model: Path, scratch: Path) -> Path:
    """`model`, or its conversion to opset `MIN_OPSET` written to `scratch` when its opset is older:
    per-channel scales need DequantizeLinear's `axis`, which opset 13 brought (some exports are 11)."""
    import onnx
    from onnx import version_converter

    proto = onnx.load(str(model))
    if next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), MIN_OPSET) >= MIN_OPSET:
        return model
    onnx.save(version_converter.convert_version(proto, MIN_OPSET), str(scratch))
    return scratch


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def quantize_version(repo: ModelRepository, source: str, calibration: Path, stages: list[str] | None = None,
                     version: str | None = None, created_by: str = "ocr-server models quantize",
                     finalize: Callable[[Path], object] | None = None,
                     options: RuntimeOptions | None = None) -> Path:
    """Publish `source` with `stages` (`DEFAULT_STAGES` by default) quantized to int8 as `version`
    (`default_version_name` by default); returns the new version's directory. `finalize` runs on the
    finished copy before it is renamed into place (signing), as for `publish`."""
    source_dir = repo.version_dir(source)
    if not source_dir.is_dir():
        raise QuantizeError(f"version {source} is not in {repo.pipeline_dir}")
    try:
        manifest = read_manifest(source_dir)
    except ManifestError as exc:
        raise QuantizeError(f"{source}: {exc}") from exc
    problems = verify_files(source_dir, manifest)
    if problems:
        raise QuantizeError(f"{source} does not verify: " + "; ".join(problems[:5]))
    chosen = [s for s in DEFAULT_STAGES if s in manifest.stages] if stages is None else stages
    unknown = [s for s in chosen if s not in manifest.stages]
    if not chosen or unknown or len(set(chosen)) != len(chosen):
        raise QuantizeError(f"--stages {','.join(chosen)}: name each of {source}'s stages at most once "
                            f"({', '.join(manifest.stages)})")
    target = version or default_version_name(source)
    parse_version(target)
    if repo.version_dir(target).exists():
        raise QuantizeError(f"version {target} already exists; name another with --version")
    calib = load_calibration_set(calibration)
    models = _quantizable(source_dir, manifest, chosen, repo)
    options = options or RuntimeOptions(cpu_threads=os.cpu_count() or 1)
    inputs = collect_inputs(source_dir, manifest, calib.images, options)
    empty = [s for s in chosen if not inputs.get(s)]
    if empty:
        raise QuantizeError(f"the calibration images gave stage {', '.join(empty)} nothing to run on "
                            "(no text found): calibrate on pages with text")

    with tempfile.TemporaryDirectory(prefix=f"ocr-quantize-{target}-") as tmp:
        work = Path(tmp) / "version"
        folders = sorted({spec.dir.split("/")[0] for spec in manifest.stages.values()} | {GOLDEN_DIR})
        for folder in folders:
            if (source_dir / folder).is_dir():
                shutil.copytree(source_dir / folder, work / folder)
        for stage, model in models.items():
            quantize_model(model, work / model.relative_to(source_dir), inputs[stage])
        precision = {stage: "int8" if stage in models else OPENVINO_PRECISION.get(spec.runtime or "", "f32")
                     for stage, spec in manifest.stages.items()}
        record: dict[str, Any] = {
            "description": f"{manifest.source.get('description', source)}; int8 ({', '.join(models)})",
            "quantized": {
                "from": {"version": source, "version_digest": sha256_file(source_dir / MANIFEST_NAME)},
                "method": {**METHOD, "onnxruntime": _dist_version("onnxruntime")},
                "calibration": {"images": calib.count, "digest": calib.digest,
                                "batches": {stage: len(inputs[stage]) for stage in models}},
                "precision": precision,
            },
        }
        # The template publish carries stages, settings, gate, card and rollout over from.
        write_manifest(work, replace(manifest, version=target, files={}))
        return publish(work, repo, target, created_by=created_by, source=record, finalize=finalize)
