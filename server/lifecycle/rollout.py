"""The rollout: a candidate version taking a share of live requests (a canary) beside the stable one.

One small file in the state directory (`rollout.json`), written atomically by the admin API and
followed by every worker like the pin, so all workers route alike and a restart keeps the canary:

    {"candidate": "1.1.0", "stable": "1.0.0", "percent": 25, "started_at": ..., "actor": ...,
     "pinned_stable": true, "shadow_percent": 0}

While it stands, the stable version is pinned (the canary pins it if nothing was), so the candidate,
often the highest version, does not simply take over; each worker holds the candidate as a second
model and sends it the requests whose client key falls in its share (`in_canary`); with a shadow share,
requests the stable version answers are also read by the candidate, unseen (`server.lifecycle.shadow`). Promoting pins
the candidate and ends the rollout; aborting ends it, rejects the candidate with the reason, and
removes the pin the canary itself set. With a bake period (`OCR_ROLLOUT_BAKE_S`), promoting first
sends every client to the candidate while the stable version stays loaded and pinned (`phase` "bake"),
so a rollback is a routing change, not a load; the bake's end pins the candidate.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from server.storage.locks import locked
from server.storage.statefiles import StateFileError, read_json, write_json_atomic

# Shares are kept to 0.01 %: a client key lands in one of 10,000 buckets.
BUCKETS = 10_000


@dataclass(frozen=True)
class Rollout:
    candidate: str
    stable: str
    percent: float
    started_at: str = ""
    actor: str = "unknown"
    pinned_stable: bool = False  # the canary set the stable pin, so ending it removes that pin
    shadow_percent: float = 0.0  # share of the stable version's requests also read by the candidate
    min_requests: int = 0  # the judge passes it only after this many canary (or shadow) requests
    max_minutes: float = 0.0  # past this without a verdict the judge ends it (0: no limit)
    phase: str = "canary"  # "bake": promoted, every client on the candidate, the stable one kept loaded
    bake_until: str = ""  # the end of the bake (ISO time)

    @property
    def key(self) -> str:
        """What its samples are filed under: a candidate canaried twice gets two sets."""
        return f"{self.candidate}@{self.started_at}"


def in_canary(client_key: str, percent: float) -> bool:
    """Whether requests of `client_key` go to the candidate: a hash of the key, not a coin toss, so one
    client sees one version on every worker and across restarts, and raising the share only moves
    clients from stable to candidate, never back."""
    bucket = int.from_bytes(hashlib.sha256(client_key.encode("utf-8")).digest()[:8], "big") % BUCKETS
    return bucket < percent * BUCKETS / 100


class RolloutStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> tuple[Rollout | None, str | None]:
        """(the rollout, None), (None, None) when there is none, or (None, why the file is ignored)."""
        try:
            data = read_json(self.path)
        except (StateFileError, OSError) as exc:
            return None, f"rollout file ignored: {exc}"
        if data is None:
            return None, None
        try:
            rollout = Rollout(**data) if isinstance(data, dict) else None
        except TypeError as exc:
            return None, f"rollout file ignored: {exc}"
        if rollout is None or not isinstance(rollout.candidate, str) or not isinstance(rollout.percent, (int, float)):
            return None, f"rollout file ignored: {self.path} must hold a candidate and a percent"
        return rollout, None

    def write(self, rollout: Rollout) -> None:
        write_json_atomic(self.path, asdict(rollout))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def lock(self) -> AbstractContextManager[IO[Any]]:
        """Held by whoever starts or ends a rollout on its own (a worker or a judge), so two never do both."""
        return locked(self.path.with_name("rollout.lock"))
