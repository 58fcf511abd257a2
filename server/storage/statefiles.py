"""The state directory: what the workers of one machine share, as small files.

Each Gunicorn worker is its own process, so what one worker decides (a pin, a verdict on a version,
which version it serves) is written here for the others and for whoever answers the admin API:

    <state_dir>/<pipeline>/pin.json           the pinned version (API or ops), watched like versions
    <state_dir>/<pipeline>/verdicts/V.json    approved or rejected, why, gate result, per fingerprint
    <state_dir>/<pipeline>/workers/N.json     what worker slot N serves and loads now
    <state_dir>/<pipeline>/load.lock          held by the one worker loading a version

Every file is replaced atomically (temp file + rename), so a reader sees the old content or the new.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class StateFileError(ValueError):
    """A state file exists but is not valid JSON (e.g. edited by hand)."""


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_json(path: Path) -> Any | None:
    """The file's JSON, or None when it does not exist."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StateFileError(f"{path} is not valid JSON: {exc}") from exc


@dataclass(frozen=True)
class StatePaths:
    root: Path
    pipeline: str

    @property
    def base(self) -> Path:
        return self.root / self.pipeline

    @property
    def pin_file(self) -> Path:
        return self.base / "pin.json"

    @property
    def verdicts_dir(self) -> Path:
        return self.base / "verdicts"

    @property
    def workers_dir(self) -> Path:
        return self.base / "workers"

    @property
    def load_lock(self) -> Path:
        return self.base / "load.lock"

    def ensure(self) -> None:
        for directory in (self.verdicts_dir, self.workers_dir):
            directory.mkdir(parents=True, exist_ok=True)
