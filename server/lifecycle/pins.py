"""The pin: an explicit choice of the version every worker serves, overriding "highest wins".

Kept in one small file in the state directory (`pin.json`), so it applies to every worker, survives a
restart, and can be written by the admin API or by hand (`{"version": "1.2.0"}`, e.g. from a config
management tool). Workers watch it like they watch the versions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from server.storage.statefiles import StateFileError, read_json, write_json_atomic
from server.repository.layout import VersionNameError, parse_version
from server.repository.manifest import now_iso


@dataclass(frozen=True)
class Pin:
    version: str
    actor: str = "unknown"
    pinned_at: str = ""
    action: str = "pin"  # "pin" (activate) or "rollback": how it was set


@dataclass(frozen=True)
class PinRead:
    """The pin file as read: a pin, nothing, or an error saying why the file is ignored."""

    pin: Pin | None
    error: str | None = None


class PinStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> PinRead:
        try:
            data = read_json(self.path)
        except StateFileError as exc:
            return PinRead(None, f"pin file ignored: {exc}")
        except OSError as exc:
            return PinRead(None, f"pin file unreadable: {exc.strerror or exc}")
        if data is None:
            return PinRead(None)
        version = data.get("version") if isinstance(data, dict) else None
        if not isinstance(version, str):
            return PinRead(None, f"pin file ignored: {self.path} must be a JSON object with a 'version' string")
        try:
            parse_version(version)
        except VersionNameError as exc:
            return PinRead(None, f"pin file ignored: {exc}")
        return PinRead(Pin(version=version, actor=str(data.get("actor", "unknown")),
                           pinned_at=str(data.get("pinned_at", "")), action=str(data.get("action", "pin"))))

    def write(self, version: str, actor: str, action: str = "pin") -> Pin:
        parse_version(version)
        pin = Pin(version=version, actor=actor, pinned_at=now_iso(), action=action)
        write_json_atomic(self.path, asdict(pin))
        return pin

    def clear(self) -> PinRead:
        """Remove the pin; returns what it was."""
        before = self.read()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        return before
