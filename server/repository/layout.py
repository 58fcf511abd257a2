"""The model repository on disk: `<root>/<pipeline>/<version>/`, and how versions are named and ordered.

Version names look like `1.2.3` or `1.2.3-label` (`1.0.0-ppocrv4`) and order by their numbers, then
their label. Directories whose names start with a dot are staging areas: a publisher copies into
`.staging-*` and renames into place, so a half-written version never appears under a valid name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# The golden set (images with known text the quality gate reads) of a version, or of the whole
# repository: `<version>/golden/`, `<root>/golden/`.
GOLDEN_DIR = "golden"

_VERSION = re.compile(r"^(\d{1,9})(?:\.(\d{1,9}))?(?:\.(\d{1,9}))?(?:-([0-9A-Za-z][0-9A-Za-z._]{0,62}))?$")


class VersionNameError(ValueError):
    """A name that is not a valid version (and could be a path-traversal attempt)."""


@dataclass(frozen=True, order=True)
class VersionKey:
    """Sort key: numeric parts, then the label (no label sorts first)."""

    major: int
    minor: int
    patch: int
    label: str


def parse_version(name: str) -> VersionKey:
    match = _VERSION.fullmatch(name)
    if match is None:
        raise VersionNameError(
            f"invalid version name {name!r}: expected MAJOR[.MINOR[.PATCH]][-label], e.g. 1.0.0-ppocrv4"
        )
    major, minor, patch, label = match.groups()
    return VersionKey(int(major), int(minor or 0), int(patch or 0), label or "")


def is_version_name(name: str) -> bool:
    return _VERSION.fullmatch(name) is not None


@dataclass(frozen=True)
class ModelRepository:
    root: Path
    pipeline: str = "ppocr"

    @property
    def pipeline_dir(self) -> Path:
        return self.root / self.pipeline

    def version_dir(self, version: str) -> Path:
        """The directory of `version`; raises VersionNameError for names that are not versions."""
        parse_version(version)
        return self.pipeline_dir / version

    def version_names(self) -> list[str]:
        """Valid version directory names present now, lowest first. Staging (dot) entries are skipped."""
        try:
            entries = list(self.pipeline_dir.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        names = [e.name for e in entries if is_version_name(e.name) and e.is_dir()]
        return sorted(names, key=parse_version)

    def list_entries(self) -> tuple[list[str], list[tuple[str, str]]]:
        """(version names, [(other name, why it is ignored)]) in the pipeline directory, as it is now.

        Dot entries (staging areas, lock files) are skipped silently; anything else that is not a
        version is reported, so that ops can see why `v2` or `latest` is never picked up. Raises
        OSError when the directory cannot be listed (missing, unmounted, permissions).
        """
        versions, ignored = [], []
        for entry in sorted(self.pipeline_dir.iterdir(), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if not is_version_name(entry.name):
                ignored.append((entry.name, "not a version name (MAJOR[.MINOR[.PATCH]][-label])"))
            elif not entry.is_dir() and not entry.is_symlink():
                ignored.append((entry.name, "not a directory"))
            else:
                versions.append(entry.name)
        return sorted(versions, key=parse_version), ignored

    def is_inside(self, path: Path) -> bool:
        """Whether `path`, with every symlink resolved, stays inside the repository root."""
        root = self.root.resolve()
        resolved = path.resolve()
        return resolved == root or root in resolved.parents
