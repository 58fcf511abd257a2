"""The worker board: what each worker process serves and loads right now, for the admin API.

A request to `GET /v1/models` reaches one worker; the board lets it answer for all of them. Each worker
writes its own file (`workers/<slot>.json`) when its state changes; entries of processes that no longer
exist are left out (Gunicorn reuses the slot of a dead worker for its replacement).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from server.storage.statefiles import StateFileError, read_json, write_json_atomic


@dataclass(frozen=True)
class WorkerState:
    slot: int
    pid: int
    serving: str | None = None
    serving_fingerprint: str | None = None
    loading: str | None = None
    draining: list[str] = field(default_factory=list)  # retired versions still finishing requests
    since: str = ""  # when it started serving its version
    errors: dict[str, str] = field(default_factory=dict)  # version -> local load failure being retried
    canary: str | None = None  # the rollout's candidate it holds beside `serving`
    updated_at: str = ""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class WorkerBoard:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, slot: int) -> Path:
        return self.directory / f"{slot}.json"

    def publish(self, state: WorkerState) -> None:
        write_json_atomic(self._path(state.slot), asdict(state))

    def get(self, slot: int) -> WorkerState | None:
        try:
            data = read_json(self._path(slot))
            return WorkerState(**data) if isinstance(data, dict) else None
        except (StateFileError, OSError, TypeError):
            return None

    def live(self) -> list[WorkerState]:
        """Every live worker's state, by slot."""
        states = []
        try:
            paths = sorted(self.directory.glob("*.json"))
        except OSError:
            return []
        for path in paths:
            if not path.stem.isdigit():
                continue
            state = self.get(int(path.stem))
            if state is not None and pid_alive(state.pid):
                states.append(state)
        return sorted(states, key=lambda s: s.slot)
