"""The state directory: what the workers of one machine share, as small files.

Each Gunicorn worker is its own process, so what one worker decides (a pin, a verdict on a version,
which version it serves) is written here for the others and for whoever answers the admin API:

    <state_dir>/<pipeline>/pin.json           the pinned version (API or ops), watched like versions
    <state_dir>/<pipeline>/verdicts/V.json    approved or rejected, why, gate result, per fingerprint
    <state_dir>/<pipeline>/workers/N.json     what worker slot N serves and loads now
    <state_dir>/<pipeline>/load.lock          held by the one worker loading a version
    <state_dir>/<pipeline>/promotions.json    promotion requests (who asked for which version)
    <state_dir>/<pipeline>/rollout.json       the canary: candidate, share, stable version
    <state_dir>/<pipeline>/rollout_samples.sqlite  what each arm of a canary did, for the judge
    <state_dir>/<pipeline>/reports/V.json     the A/B report of version V's canary (and V.md)
    <state_dir>/<pipeline>/registry.json      what the registry sync last saw and did (OCR_MODEL_SOURCE=mlflow)
    <state_dir>/<pipeline>/registry.lock      held by the one registry sync of the machine
    <state_dir>/<pipeline>/recent_results.sqlite  what was read recently, for feedback by request id

Every JSON file is replaced atomically (`server.storage.statefiles`); the SQLite database makes its
own transactions atomic (`server.quality.recent_results`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    def rollout_file(self) -> Path:
        return self.base / "rollout.json"

    @property
    def rollout_samples(self) -> Path:
        return self.base / "rollout_samples.sqlite"

    @property
    def reports_dir(self) -> Path:
        return self.base / "reports"

    @property
    def promotions_file(self) -> Path:
        return self.base / "promotions.json"

    @property
    def load_lock(self) -> Path:
        return self.base / "load.lock"

    @property
    def registry_file(self) -> Path:
        return self.base / "registry.json"

    @property
    def registry_lock(self) -> Path:
        return self.base / "registry.lock"

    @property
    def recent_results(self) -> Path:
        return self.base / "recent_results.sqlite"

    def ensure(self) -> None:
        for directory in (self.verdicts_dir, self.workers_dir):
            directory.mkdir(parents=True, exist_ok=True)
