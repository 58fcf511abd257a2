"""The writing side of the publishing protocol: put a new version into the repository atomically.

`publish` copies a directory of stage folders (det/, cls/, rec/ with its dictionary, optionally
golden/) into a dot-prefixed staging directory next to the versions, writes its manifest with the
sha256 of every file, checks the copy against it, and renames the staging directory to the version's
name. A rename within one filesystem is atomic, so a watcher sees either nothing or the whole version;
a crash half-way leaves only a `.staging-*` directory, which watchers ignore.

Versions are immutable: publishing a name that exists is refused. Publish a new version instead, so
that what served yesterday can be served again by a rollback.

A caller that signs on publish passes `finalize`: it runs on the finished, verified staging copy before
the rename, so the version appears signed or not at all (a watcher never sees it unsigned first).

`publish_exact` is the same protocol for a version that was published elsewhere and travels whole (a
registry's copy): its manifest and signature are kept byte for byte instead of written anew, and
the copy must match them exactly before it is renamed into place.
"""

from __future__ import annotations

import getpass
import importlib.metadata
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable

from server.repository.card import ModelCard
from server.repository.layout import GOLDEN_DIR, ModelRepository, parse_version
from server.repository.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    StageSpec,
    hash_tree,
    now_iso,
    read_manifest,
    unlisted_files,
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
    card: ModelCard | None = None,
    finalize: Callable[[Path], object] | None = None,
) -> Path:
    """Publish the stage folders of `src` as `version` of `repo`; returns the version directory.

    When `src` holds a manifest.json (e.g. it is an existing version), its stages, settings, quality
    gate, framework, source record and model card are carried over; only the version, the creation
    record and the checksums are new (a `rollout` request is carried over too). `card` replaces the
    carried-over card. `finalize(staging_dir)`
    runs last, before the rename (signing); if it raises, nothing is published.
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

    def build(staging: Path) -> None:
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
            card=card if card is not None else (template.card if template else None),
            rollout=template.rollout if template else {},
        )
        write_manifest(staging, manifest)
        problems = verify_files(staging, manifest)
        if problems:
            raise PublishError("the copy does not verify: " + "; ".join(problems[:5]))
        if finalize is not None:
            finalize(staging)

    return _into_place(repo, version, build)


def publish_exact(repo: ModelRepository, version: str, fill: Callable[[Path], object], label: str = "exact") -> Path:
    """Publish a finished version as it is: `fill(staging_dir)` writes its files, `manifest.json` and
    `model.sig` included, and they are kept byte for byte - the manifest's checksums and the signature
    over them stay what their publisher made, so the copy verifies as the original does. Used for a
    version that was published elsewhere and travels (a registry's artifacts).

    The copy is refused unless its manifest names this pipeline and `version`, every listed file
    matches its checksum, and nothing else is there (a file no checksum covers is not part of the
    version). `label` goes into the staging directory's name (`.staging-<version>-<label>-*`), so
    that whoever fills it can recognise its own leftovers after a crash.
    """
    parse_version(version)

    def build(staging: Path) -> None:
        fill(staging)
        try:
            manifest = read_manifest(staging)
        except ManifestError as exc:
            raise PublishError(f"the copy of {version} has no usable manifest: {exc}") from exc
        if manifest.version != version or manifest.name != repo.pipeline:
            raise PublishError(f"the manifest names {manifest.name}/{manifest.version}, not {repo.pipeline}/{version}")
        problems = verify_files(staging, manifest)
        problems += [f"{rel}: not listed in the manifest" for rel in unlisted_files(staging, manifest)]
        if problems:
            raise PublishError(f"the copy of {version} does not verify: " + "; ".join(problems[:5]))

    return _into_place(repo, version, build, label)


def _into_place(repo: ModelRepository, version: str, build: Callable[[Path], object], label: str = "") -> Path:
    """Run `build` on a fresh staging directory beside the versions, then rename it to `version`."""
    repo.pipeline_dir.mkdir(parents=True, exist_ok=True)
    target = repo.version_dir(version)
    # One publisher at a time per repository: the 'does the name exist' check and the rename must not
    # interleave (rename(2) silently replaces an empty directory).
    with locked(repo.pipeline_dir / ".publish.lock"):
        if os.path.lexists(target):
            raise PublishError(f"version {version} already exists in {repo.pipeline_dir}; versions are immutable, "
                               "publish under a new version")
        prefix = f".staging-{version}-{label}-" if label else f".staging-{version}-"
        staging = Path(tempfile.mkdtemp(prefix=prefix, dir=repo.pipeline_dir))
        try:
            build(staging)
            os.chmod(staging, 0o755)
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target
