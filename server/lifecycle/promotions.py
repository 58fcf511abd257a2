"""Promotion requests: who asked for a version to serve, kept so the four-eyes rule can be applied.

A submitter asks for a version's promotion (`POST /v1/models/<version>/request-promotion`); a releaser
then activates it. Under the policy's `four_eyes: true` the HTTP layer refuses an activation by whoever
made the latest request for that version (`server.governance.access.four_eyes_violation`). The requests
are one small JSON file in the state directory (`<state_dir>/<pipeline>/promotions.json`), so every
worker and a restart see the same ones; it is rewritten atomically under a lock, newest last, and
keeps the latest `MAX_REQUESTS` (the audit log keeps them all).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from server.governance.access import PromotionRequest
from server.storage.locks import locked
from server.storage.statefiles import StateFileError, read_json, write_json_atomic

MAX_REQUESTS = 1000


class PromotionStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[PromotionRequest]:
        """Every kept request, oldest first; a file that cannot be read holds none (the next `add` replaces it)."""
        try:
            data = read_json(self.path)
        except (StateFileError, OSError):
            return []
        if not isinstance(data, list):
            return []
        return [PromotionRequest(str(r["version"]), str(r["requested_by"]), str(r.get("at", "")))
                for r in data if isinstance(r, dict) and "version" in r and "requested_by" in r]

    def add(self, request: PromotionRequest) -> None:
        """Append `request` (raises OSError when the state directory cannot be written)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.path.with_name(f".{self.path.name}.lock")):
            kept = [asdict(r) for r in self.all()][-(MAX_REQUESTS - 1):]
            write_json_atomic(self.path, [*kept, asdict(request)])
