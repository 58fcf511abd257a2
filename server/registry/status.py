"""What the registry sync last saw and did, as one small JSON file for the admin view and for people.

Written atomically after every pass to `<state_dir>/<pipeline>/registry.json` (`StatePaths`);
`GET /v1/models` shows it under `registry`. While the registry cannot be reached the file keeps what
the last good pass found, with `state: failing`, the error, how many passes failed in a row and when
the next one is due - so "the registry is down, and we serve what it said an hour ago" is visible.

    state            starting | ok | failing
    versions[]       each registry version: mlflow_version, version (ours), state (synced, failed,
                     skipped, conflict, registering) and reason, signed
    champion         the @champion version and whether this machine's pin follows it (applied), or why not
    challenger       the @challenger version and what the delivery hook did with it
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from server.storage.statefiles import write_json_atomic


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class VersionRecord:
    """One registry version, as this machine has it."""

    mlflow_version: str
    version: str | None  # our name, from the ocr.version tag
    state: str  # synced | failed | skipped | conflict | registering
    reason: str = ""
    signed: bool | None = None  # whether a model.sig came with it (None until synced)


@dataclass
class SyncStatus:
    source: str
    tracking_uri: str  # without a password
    model: str
    pid: int
    state: str = "starting"
    last_attempt: str | None = None
    last_success: str | None = None
    error: str | None = None
    consecutive_failures: int = 0
    next_attempt: str | None = None
    versions: list[VersionRecord] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> MLflow version number
    champion: dict[str, Any] = field(default_factory=dict)
    challenger: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: Path) -> None:
        write_json_atomic(path, self.to_json())
