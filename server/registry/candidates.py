"""`@challenger`: the registry's candidate, handed to whatever delivers candidates to traffic.

The registry's `@challenger` alias names the version a team wants tried against `@champion` before it
is promoted. Trying it - a canary share of requests, or a shadow copy of them, judged against the
stable version - is the lifecycle's canary (`server.lifecycle.rollout`), which a releaser starts with
`POST /v1/models/<version>/canary`; the alias is not wired to it yet. The sync downloads the
challenger like any version (so it is on disk, verified, ready) and offers it to `NoDelivery`, which
does nothing with it and says so in the sync's status: the challenger gets no traffic until someone
starts its canary, and nothing pretends otherwise.

The delivery step plugs in here: implement `ChallengerHook` and pass it to `Syncer`. `offer` is called
after every successful pass, with the candidate synced on this machine or None (no alias, or its
version is not on disk yet); it must be idempotent (the same candidate comes every pass) and quick
(it runs in the sync process, not in a worker), and what it returns is shown under `challenger` in
the status (`GET /v1/models` -> `registry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Candidate:
    version: str  # our version name
    mlflow_version: str  # the registry's number
    version_dir: Path  # where it was synced


class ChallengerHook(Protocol):
    def offer(self, candidate: Candidate | None) -> dict[str, Any]:
        """Take (or drop, with None) the registry's challenger; returns what it did, for the status."""
        ...


class NoDelivery:
    """The hook until the alias starts canaries: the challenger is kept on disk, and served nothing."""

    def offer(self, candidate: Candidate | None) -> dict[str, Any]:
        if candidate is None:
            return {}
        return {"delivered": False,
                "note": "synced and verified; the alias does not start a canary: a releaser does "
                        "(POST /v1/models/<version>/canary), until then it serves no traffic"}
