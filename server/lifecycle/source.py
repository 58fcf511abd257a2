"""The source: what versions the repository offers now (the reading side of the publishing protocol).

A version is whole (state NEW until it is judged) only when its `manifest.json` exists, names the directory's version, and
every file it lists matches its sha256 (a publisher that renames a finished copy into place from a
dot-prefixed staging directory satisfies this at once). Anything short of that is one of:

- PENDING: the directory changed less than `settle_s` ago - a copy is in progress, look again later;
- REJECTED: it has been still for `settle_s` and is still wrong - say why, and do not look again
  until its files change (the fingerprint below tells).

Symlinks are allowed inside the repository (Kubernetes volumes are built from them) but a version
whose directory resolves outside the repository is rejected at once: nothing outside the repository
is ever read as a model.

Inspection is cheap: a stat walk, the manifest, and checksums computed once per fingerprint.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from server.lifecycle.states import VersionState
from server.repository.layout import ModelRepository
from server.repository.manifest import MANIFEST_NAME, Manifest, ManifestError, read_manifest, verify_files


@dataclass(frozen=True)
class Inspection:
    """What one version directory looks like now."""

    version: str
    path: Path
    state: VersionState  # PENDING, NEW (whole) or REJECTED
    reason: str
    fingerprint: str  # changes whenever any file of the version changes
    changed_at: float  # newest ctime under the directory (unix time)
    manifest: Manifest | None = None
    code: str = ""  # short code of the problem, when there is one (used as a metric label)

    def unchanged(self) -> bool:
        """Whether the version's files are still those this inspection saw."""
        try:
            return fingerprint(self.path)[0] == self.fingerprint
        except OSError:
            return False


@dataclass(frozen=True)
class Scan:
    """Every version directory of the repository at one moment, from one worker's point of view."""

    at: float
    versions: dict[str, Inspection] = field(default_factory=dict)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None  # the pipeline directory could not be listed
    unstable: bool = False  # its list of versions changed while it was scanned: look again


class VerifyCache:
    """Checksum results by fingerprint: a version is hashed once per change, not once per scan.
    Shared by the lifecycle thread and admin API requests, hence the lock."""

    def __init__(self, capacity: int = 256) -> None:
        self._results: OrderedDict[str, list[str]] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def problems(self, fingerprint: str, version_dir: Path, manifest: Manifest) -> list[str]:
        with self._lock:
            if fingerprint in self._results:
                self._results.move_to_end(fingerprint)
                return self._results[fingerprint]
        found = verify_files(version_dir, manifest)
        with self._lock:
            self._results[fingerprint] = found
            while len(self._results) > self._capacity:
                self._results.popitem(last=False)
        return found


def fingerprint(version_dir: Path) -> tuple[str, float]:
    """(digest of every entry's path, type, size, mtime and inode plus the manifest's bytes, newest ctime).

    ctime, not mtime, tells whether a copy is still going on: `cp -p` and `rsync -t` preserve mtimes
    from the source, but every write or rename sets ctime to now.
    """
    digest = hashlib.sha256()
    newest = 0.0
    root = version_dir.resolve()
    visited: set[tuple[int, int]] = set()
    def fail(error: OSError) -> None:  # os.walk would skip what it cannot read: a vanished directory
        raise error  # would look like an empty (hence "settled, no manifest") one

    for current, dirs, files in os.walk(root, onerror=fail, followlinks=True):  # symlinked stages count
        info = os.stat(current)
        if (info.st_dev, info.st_ino) in visited:  # a symlink loop: do not walk it again
            dirs.clear()
            continue
        visited.add((info.st_dev, info.st_ino))
        dirs.sort()
        newest = max(newest, os.lstat(current).st_ctime)
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(current, d))]:
            path = os.path.join(current, name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:  # deleted while we walked: the next scan sees the result
                continue
            newest = max(newest, info.st_ctime)
            rel = os.path.relpath(path, root)
            link = os.readlink(path) if stat.S_ISLNK(info.st_mode) else ""
            digest.update(f"{rel}\0{stat.S_IFMT(info.st_mode)}\0{info.st_size}\0{info.st_mtime_ns}\0"
                          f"{info.st_ino}\0{link}\n".encode())
    try:
        digest.update((root / MANIFEST_NAME).read_bytes())
    except OSError:
        pass
    return digest.hexdigest()[:32], newest


def inspect_version(
    repo: ModelRepository, version: str, settle_s: float, cache: VerifyCache, now: float | None = None
) -> Inspection:
    """Classify `version` of `repo` as NEW (whole), PENDING or REJECTED (see the module docstring).

    Raises OSError when the directory vanishes or cannot be read while it is inspected."""
    now = time.time() if now is None else now
    path = repo.version_dir(version)
    if not repo.is_inside(path):
        target = os.path.realpath(path)
        return Inspection(version, path, VersionState.REJECTED,
                          f"resolves outside the model repository (symlink to {target})",
                          fingerprint=f"outside:{target}", changed_at=0.0, code="outside_repository")
    if not path.is_dir():
        link_changed = path.lstat().st_ctime if path.is_symlink() else now
        settled_link = now - link_changed >= settle_s
        return Inspection(version, path, VersionState.REJECTED if settled_link else VersionState.PENDING,
                          "not a directory (dangling symlink?)", f"notdir:{os.path.realpath(path)}", link_changed,
                          code="not_a_directory")
    digest, changed_at = fingerprint(path)
    settled = now - changed_at >= settle_s

    def problem(code: str, reason: str, manifest: Manifest | None = None) -> Inspection:
        if settled:
            return Inspection(version, path, VersionState.REJECTED, reason, digest, changed_at, manifest, code)
        return Inspection(version, path, VersionState.PENDING, f"still changing (copy in progress?): {reason}",
                          digest, changed_at, manifest, code)

    try:
        manifest = read_manifest(path)
    except ManifestError as exc:
        if "not found" in str(exc):
            return problem("no_manifest", f"no {MANIFEST_NAME}: publish with `ocr-server models publish`")
        return problem("bad_manifest", str(exc))
    if manifest.version != version:
        return problem("version_mismatch",
                       f"manifest says version {manifest.version!r} but the directory is {version!r}", manifest)
    problems = cache.problems(digest, path, manifest)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        return problem("verify_failed", f"verification failed: {shown}", manifest)
    return Inspection(version, path, VersionState.NEW, "", digest, changed_at, manifest)


def scan_repository(repo: ModelRepository, settle_s: float, cache: VerifyCache) -> Scan:
    """Inspect every version directory; a repository that cannot be listed gives an empty scan with
    the error (the caller keeps serving what it has - a missing mount is not a reason to unload)."""
    now = time.time()
    try:
        names, ignored = repo.list_entries()
    except OSError as exc:
        return Scan(at=now, error=f"cannot list {repo.pipeline_dir}: {exc.strerror or exc}")
    versions = {}
    for name in names:
        try:
            versions[name] = inspect_version(repo, name, settle_s, cache, now)
        except OSError as exc:  # removed or changed under our feet: the next scan sees how it ends
            versions[name] = Inspection(name, repo.version_dir(name), VersionState.PENDING,
                                        f"cannot be read yet: {exc.strerror or exc}", "unreadable", now,
                                        code="unreadable")
    # A repository that vanished or changed while we looked (an unmount, a directory swap) gives a
    # picture of no moment at all: versions "missing" from it must not make anyone switch.
    try:
        still = repo.list_entries()[0]
    except OSError as exc:
        return Scan(at=now, error=f"cannot list {repo.pipeline_dir}: {exc.strerror or exc}")
    return Scan(at=now, versions=versions, ignored=ignored, unstable=still != names)
