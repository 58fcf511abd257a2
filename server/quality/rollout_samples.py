"""What each arm of a canary did, request by request, for the judge (`server.quality.judge`).

One SQLite database in the state directory (`server.storage.sqlite`): every worker appends the
requests it answers during a rollout, and whichever worker judges reads all of them, so the verdict
rests on the machine's traffic, not on one worker's share. Samples are kept per rollout (candidate and
start time) for `RETENTION_S`, long enough for a report to be rebuilt, then dropped.

Writing a sample must never fail the request it describes: a store that cannot be written (state
directory full or read-only) logs once and the request is simply not judged.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from server.quality.judge import Sample
from server.storage.sqlite import Database

log = logging.getLogger(__name__)

RETENTION_S = 7 * 24 * 3600.0
ARMS = ("stable", "canary")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    rollout TEXT NOT NULL, arm TEXT NOT NULL, version TEXT NOT NULL, at REAL NOT NULL,
    latency_s REAL NOT NULL, error INTEGER NOT NULL, empty INTEGER NOT NULL, confidence REAL, lines INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_by_rollout ON samples (rollout, at);
CREATE TABLE IF NOT EXISTS feedback (
    rollout TEXT NOT NULL, arm TEXT NOT NULL, version TEXT NOT NULL, at REAL NOT NULL, accuracy REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_by_rollout ON feedback (rollout);
CREATE TABLE IF NOT EXISTS shadow (
    rollout TEXT NOT NULL, version TEXT NOT NULL, at REAL NOT NULL, agreement REAL NOT NULL, latency_s REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS shadow_by_rollout ON shadow (rollout);
"""


class RolloutSamples:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = Database(path, _SCHEMA)
        self._failing = False

    def _write(self, sql: str, values: tuple[object, ...]) -> None:
        try:
            with self._db.transaction() as connection:
                connection.execute(sql, values)
        except (OSError, sqlite3.Error) as exc:
            if not self._failing:
                log.error("canary samples cannot be written to %s (the judge sees fewer): %s", self.path, exc)
            self._failing = True
            return
        self._failing = False

    def add(self, rollout: str, arm: str, version: str, sample: Sample) -> None:
        self._write("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (rollout, arm, version, sample.at, sample.latency_s, int(sample.error), int(sample.empty),
                     sample.confidence, sample.lines))

    def add_feedback(self, rollout: str, arm: str, version: str, accuracy: float) -> None:
        self._write("INSERT INTO feedback VALUES (?, ?, ?, ?, ?)", (rollout, arm, version, time.time(), accuracy))

    def _read(self, sql: str, rollout: str) -> list[tuple[Any, ...]]:
        """The rows, or none (logged) when the file cannot be read: the judge then waits for samples."""
        try:
            return self._db.connection().execute(sql, (rollout,)).fetchall()
        except (OSError, sqlite3.Error) as exc:
            log.error("canary samples cannot be read from %s: %s", self.path, exc)
            return []

    def add_shadow(self, rollout: str, version: str, agreement: float, latency_s: float) -> None:
        self._write("INSERT INTO shadow VALUES (?, ?, ?, ?, ?)", (rollout, version, time.time(), agreement, latency_s))

    def arms(self, rollout: str) -> dict[str, list[Sample]]:
        """Every sample of `rollout`, per arm, oldest first."""
        found: dict[str, list[Sample]] = {arm: [] for arm in ARMS}
        for arm, at, latency, error, empty, confidence, lines in self._read(
                "SELECT arm, at, latency_s, error, empty, confidence, lines FROM samples WHERE rollout = ? ORDER BY at",
                rollout):
            found.setdefault(arm, []).append(Sample(at, latency, bool(error), bool(empty), confidence, lines))
        return found

    def feedback(self, rollout: str) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {arm: [] for arm in ARMS}
        for arm, accuracy in self._read("SELECT arm, accuracy FROM feedback WHERE rollout = ? ORDER BY at", rollout):
            found.setdefault(arm, []).append(accuracy)
        return found

    def shadow(self, rollout: str) -> list[float]:
        """The agreement of each shadow reading of `rollout`, oldest first."""
        return [row[0] for row in self._read("SELECT agreement FROM shadow WHERE rollout = ? ORDER BY at", rollout)]

    def prune(self, now: float) -> None:
        """Drop what is older than `RETENTION_S`."""
        try:
            with self._db.transaction() as connection:
                connection.execute("DELETE FROM samples WHERE at < ?", (now - RETENTION_S,))
                connection.execute("DELETE FROM feedback WHERE at < ?", (now - RETENTION_S,))
                connection.execute("DELETE FROM shadow WHERE at < ?", (now - RETENTION_S,))
        except (OSError, sqlite3.Error) as exc:
            log.error("canary samples cannot be pruned in %s: %s", self.path, exc)
