"""The writing side of the publishing protocol: put a new version into the repository atomically.

`publish` copies a directory of stage folders (det/, cls/, rec/ with its dictionary, optionally
golden/) into a dot-prefixed staging directory next to the versions, writes its manifest with the
sha256 of every file, checks the copy against it, and renames the staging directory to the version's
name. A rename within one filesystem is atomic, so a watcher sees either nothing or the whole version;
a crash half-way leaves only a `.staging-*` directory, which watchers ignore.

Versions are immutable: publishing a name that exists is refused. Publish a new version instead, so
that what served yesterday can be served again by a rollback.
"""

from __future__ import annotations

import getpass
import importlib.metadata
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from server.repository.layout import GOLDEN_DIR, ModelRepository, parse_version
from server.repository.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    StageSpec,
    hash_tree,
    now_iso,
    read_manifest,
    verify_files,
    write_manifest,
)
from server.storage.locks import locked


class PublishError(RuntimeError):
    """The source cannot be published as asked; the message says why."""


def default_publisher() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _detect_stages(src: Path) -> dict[str, StageSpec]:
    """Stage folders of a source without a manifest: det/ and rec/ required, cls/ optional; the
    recogniser's dictionary is the one .txt file in rec/."""
    missing = [name for name in ("det", "rec") if not (src / name).is_dir()]
    if missing:
        raise PublishError(f"{src} has no {' or '.join(m + '/' for m in missing)} folder (stages: det, cls, rec)")
    dictionaries = sorted(p.name for p in (src / "rec").glob("*.txt"))
    if len(dictionaries) != 1:
        raise PublishError(f"{src / 'rec'} must hold exactly one .txt character dictionary, found {dictionaries}")
    stages = {"det": StageSpec(dir="det"), "rec": StageSpec(dir="rec", dict=f"rec/{dictionaries[0]}")}
    if (src / "cls").is_dir():
        stages["cls"] = StageSpec(dir="cls")
    return stages


def _detect_framework(version_dir: Path) -> dict[str, str]:
    """The runtime the files need, for the manifest's record (each stage still picks by its files)."""
    if any(version_dir.rglob("*.onnx")):
        return {"name": "onnxruntime", "format": "onnx"}
    try:
        version = importlib.metadata.version("paddlepaddle")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": "paddle", "version": version, "format": "paddle-inference"}




def publish(
    src: Path,
    repo: ModelRepository,
    version: str,
    created_by: str | None = None,
    source: dict[str, Any] | None = None,
) -> Path:
    """Publish the stage folders of `src` as `version` of `repo`; returns the version directory.

    When `src` holds a manifest.json (e.g. it is an existing version), its stages, settings, quality
    gate, framework and source record are carried over; only the version, the creation record and the
    checksums are new.
    """
    parse_version(version)
    src = src.resolve()
    if not src.is_dir():
        raise PublishError(f"{src} is not a directory")
    template: Manifest | None = None
    if (src / MANIFEST_NAME).exists():
        try:
            template = read_manifest(src)
        except ManifestError as exc:
            raise PublishError(f"{src / MANIFEST_NAME}: {exc}") from exc
    stages = template.stages if template else _detect_stages(src)
    folders = sorted({spec.dir.split("/")[0] for spec in stages.values()} | {GOLDEN_DIR})

    repo.pipeline_dir.mkdir(parents=True, exist_ok=True)
    target = repo.version_dir(version)
    # One publisher at a time per repository: the 'does the name exist' check and the rename must not
    # interleave (rename(2) silently replaces an empty directory).
    with locked(repo.pipeline_dir / ".publish.lock"):
        if os.path.lexists(target):
            raise PublishError(f"version {version} already exists in {repo.pipeline_dir}; versions are immutable, "
                               "publish under a new version")
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=repo.pipeline_dir))
        try:
            for folder in folders:
                if (src / folder).is_dir():
                    shutil.copytree(src / folder, staging / folder)
                elif folder != GOLDEN_DIR:
                    raise PublishError(f"{src / folder} is missing (named by the stages {sorted(stages)})")
            record = dict(template.source) if template else {}
            record.update(source or {})
            record["published_from"] = str(src)
            manifest = Manifest(
                name=repo.pipeline,
                version=version,
                created_at=now_iso(),
                created_by=created_by or f"{default_publisher()} via ocr-server models publish",
                source=record,
                framework=template.framework if template else _detect_framework(staging),
                stages=stages,
                files=hash_tree(staging),
                settings=template.settings if template else {},
                quality_gate=template.quality_gate if template else {},
            )
            write_manifest(staging, manifest)
            problems = verify_files(staging, manifest)
            if problems:
                raise PublishError("the copy does not verify: " + "; ".join(problems[:5]))
            os.chmod(staging, 0o755)
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target
