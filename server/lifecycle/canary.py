"""One worker's side of a canary: hold the rollout's candidate beside the stable version, or drop it.

Each pass of the controller calls `follow` with the scan. While the rollout file names a candidate that
is eligible (whole on disk, not rejected) and is not what this worker serves, the worker loads it as a
second model - under the machine-wide load lock, judged by the same loader and gate as any version, its
baseline the stable version - and gives it the rollout's share of client keys
(`ModelManager.acquire_routed`). When the rollout ends (promoted, aborted) or its candidate is rejected,
the candidate is retired: requests already on it finish, new ones go to the stable version.

A new version may also enter as a canary by itself (`enter`): with `OCR_ROLLOUT=canary`, or when its
manifest asks for one (`rollout`), the first worker to see it pins the version it serves and writes the
rollout, under the rollout lock, before any worker would swap to it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

from server.lifecycle.backoff import Backoff
from server.lifecycle.decisions import Decisions
from server.lifecycle.loader import Loader, LoadFailure, LoadRequest, LoadedModel
from server.lifecycle.manager import ModelManager
from server.lifecycle.pins import PinStore
from server.lifecycle.policy import Preference, rejected
from server.lifecycle.reporting import Reporter
from server.lifecycle.rollout import Rollout, RolloutStore
from server.lifecycle.source import Inspection, Scan
from server.lifecycle.states import VersionState
from server.lifecycle.verdicts import VerdictStore
from server.observability.metrics import ROLLOUT_SHARE
from server.repository.manifest import now_iso
from server.storage.locks import FileLock

log = logging.getLogger(__name__)


class CanaryFollower:
    def __init__(self, store: RolloutStore, manager: ModelManager, loader: Loader, verdicts: VerdictStore,
                 decisions: Decisions, backoff: Backoff, load_lock: FileLock, reporter: Reporter,
                 stopping: threading.Event, drain_timeout_s: float, auto: Rollout | None = None) -> None:
        """`auto`: the shares every new version enters with (OCR_ROLLOUT=canary), as a template."""
        self.store = store
        self.manager = manager
        self.loader = loader
        self.verdicts = verdicts
        self.decisions = decisions
        self.backoff = backoff
        self.load_lock = load_lock
        self.reporter = reporter
        self.stopping = stopping
        self.drain_timeout_s = drain_timeout_s
        self.auto = auto
        self._fingerprint: str | None = None  # of the candidate held
        self.rollout: Rollout | None = None  # the rollout whose candidate is held (for the samples' arms)
        self._file_error: str | None = None  # reported once per change

    def arm(self, version: str) -> tuple[str, str] | None:
        """(the rollout's id, "stable" or "canary") for a request `version` answered while this worker
        holds a candidate; None otherwise (nothing to judge)."""
        rollout = self.rollout
        if rollout is None or version not in (rollout.candidate, rollout.stable):
            return None
        return rollout.key, "canary" if version == rollout.candidate else "stable"

    def shadow_share(self) -> tuple[str, float] | None:
        """(the rollout's key, its shadow share) while this worker holds a candidate with one."""
        rollout = self.rollout
        if rollout is None or rollout.shadow_percent <= 0:
            return None
        return rollout.key, rollout.shadow_percent

    def enter(self, scan: Scan, chosen: Preference, serving: str | None, pins: PinStore) -> bool:
        """Start a canary of the version `chosen` would swap to, if it asks for one (or every new version
        does) and none runs; True when a rollout now stands (so the pin must be read again)."""
        desired = chosen.desired
        if serving is None or desired is None or desired == serving or chosen.pin_effective:
            return False
        verdict = self.verdicts.get(desired)
        inspection = scan.versions[desired]
        if verdict is not None and verdict.served_at and verdict.fingerprint == inspection.fingerprint:
            return False  # it served before: going back to it needs no canary
        asked = inspection.manifest.rollout if inspection.manifest else {}
        if asked:
            rollout = Rollout(desired, serving, asked.get("canary_percent", 0.0), now_iso(), self.reporter.actor, True,
                              asked.get("shadow_percent", 0.0), int(asked.get("min_requests", 0)),
                              asked.get("max_minutes", 0.0))
        elif self.auto is not None:
            rollout = replace(self.auto, candidate=desired, stable=serving, started_at=now_iso(),
                              actor=self.reporter.actor, pinned_stable=True)
        else:
            return False
        try:
            with self.store.lock():
                if self.store.read()[0] is not None:
                    return True
                pins.write(serving, self.reporter.actor, action="canary")
                self.store.write(rollout)
        except OSError as exc:  # no shared state, no canary: the version swaps in as without a rollout
            log.error("cannot start the canary of %s: %s", desired, exc)
            return False
        self.reporter.event("canary", desired, percent=rollout.percent, shadow_percent=rollout.shadow_percent,
                            stable=serving, reason="its manifest asks for a canary" if asked else "OCR_ROLLOUT=canary")
        return True

    def follow(self, scan: Scan, serving: str | None) -> None:
        rollout = self._read()
        target = self._target(rollout, scan, serving)
        held = self.manager.candidate
        if held is not None and (target is None or (held.version, self._fingerprint) != (target.version,
                                                                                        target.fingerprint)):
            retired = self.manager.set_candidate(None)
            self.rollout = None
            ROLLOUT_SHARE.labels(version=held.version).set(0)
            if retired is not None:  # its last requests finish, then its memory goes back to the OS
                self.manager.drain(retired, self.drain_timeout_s, self.stopping)
            self.reporter.event("canary_unload", held.version)
            held = None
        if rollout is None or target is None or serving is None:  # the stable version loads first
            return
        if held is not None:
            self.manager.set_candidate_share(rollout.percent)
            self.rollout = rollout
            ROLLOUT_SHARE.labels(version=held.version).set(rollout.percent)
            return
        model = self._load(target)
        if model is not None:
            self.manager.set_candidate(model, rollout.percent)
            self._fingerprint, self.rollout = target.fingerprint, rollout
            ROLLOUT_SHARE.labels(version=model.version).set(rollout.percent)
            self.reporter.event("canary_load", target.version, percent=rollout.percent, stable=serving)

    def _read(self) -> Rollout | None:
        rollout, error = self.store.read()
        if error != self._file_error and error is not None:
            log.error("%s", error)
        self._file_error = error
        return rollout

    def _target(self, rollout: Rollout | None, scan: Scan, serving: str | None) -> Inspection | None:
        """The rollout's candidate as scanned, if this worker should hold it."""
        if rollout is None or rollout.candidate == serving:
            return None
        inspection = scan.versions.get(rollout.candidate)
        if inspection is None or inspection.state is not VersionState.NEW:
            return None
        if rejected(scan, self.verdicts.all(), inspection.version) is not None:
            return None
        if self.backoff.waiting(inspection.version, inspection.fingerprint):
            return None
        return inspection

    def _load(self, inspection: Inspection) -> LoadedModel | None:
        try:
            if not self.load_lock.acquire(self.stopping):
                return None
        except OSError as exc:  # an unwritable state directory: no canary (nor any rollout file) then
            log.error("cannot take the load lock for the canary %s: %s", inspection.version, exc)
            return None
        try:
            standing = self.verdicts.current(inspection.version, inspection.fingerprint)
            if standing is not None and not standing.approved:
                return None
            try:
                loaded = self.loader.load(LoadRequest(inspection, standing, self.manager.active))
                if not inspection.unchanged():  # copied over while it loaded: not what was judged
                    loaded.model.close()
                    return None
                if standing is None:
                    self.decisions.approve(inspection, loaded)
            except LoadFailure as failure:
                self.decisions.failed(inspection, standing, failure)
                return None
            self.backoff.succeeded(inspection.version, inspection.fingerprint)
            return loaded.model
        finally:
            self.load_lock.release()
