"""Controller: one per worker; keeps the version it serves in line with the repository and the pin.

Each pass (`reconcile`, run by `server.lifecycle.loop.PassLoop`) scans the repository (cheap;
checksums once per change), applies the policy (`server.lifecycle.policy`) to the scan, the
machine-wide verdicts and the pin, and serves the first version of the resulting order that loads.

Loading a version (`_attempt`) holds the machine-wide load lock whenever this worker already serves
something, so that across all workers at most one extra copy of a model is in memory:

    standing rejection?  -> skip;  standing approval? -> the loader skips probe and gate
    loader (`server.lifecycle.loader`): verify, probe, build, warm up, gate -> a model or a failure
    files changed meanwhile (a copy over it, deleted)? -> drop it and plan again
    record the approval machine-wide (the first worker's verdict stands; the others follow it)
    swap (atomic; requests in flight keep their snapshot) -> wait for the old one to drain, free it

A failure that says the version is bad becomes a machine-wide rejection; any other is retried with
backoff (`server.lifecycle.backoff`). The serving version is never unloaded for lack of a
replacement: a repository that vanishes or a deleted directory leaves it serving from memory.

Beside the version it serves, a worker may hold a canary candidate (`server.lifecycle.canary`): the
rollout file says which, and each pass follows it, before planning (so an ended canary is dropped
before its version loads as the stable one) and after a new stable version serves.

Every `recheck_s` the serving version is checked again (`Loader.recheck`); a failure rejects it
machine-wide, replacing its approval, and the pass goes on to the best other eligible version.
"""

from __future__ import annotations

import logging
import os
import time

from server.lifecycle.backoff import Backoff
from server.lifecycle.canary import CanaryFollower
from server.lifecycle.config import LifecycleConfig
from server.lifecycle.decisions import Decisions
from server.lifecycle.loader import Loaded, Loader, LoadFailure, LoadRequest, Serving
from server.lifecycle.manager import ModelHandle, ModelManager
from server.lifecycle.loop import PassLoop
from server.lifecycle.pins import PinRead, PinStore
from server.lifecycle.policy import gated_against_live, preference, recheck_applies, versions_to_try
from server.lifecycle.reporting import Reporter
from server.lifecycle.rollout import Rollout, RolloutStore
from server.lifecycle.source import Inspection, Scan, VerifyCache, scan_repository
from server.lifecycle.statedir import StatePaths
from server.lifecycle.states import VersionState
from server.lifecycle.verdicts import Verdict, VerdictStore
from server.lifecycle.watcher import RepositoryWatcher, decision_inputs, watched_paths
from server.lifecycle.workers import WorkerState
from server.repository.layout import ModelRepository
from server.storage.locks import FileLock

log = logging.getLogger(__name__)


class _Replan(Exception):
    """The inputs of this pass changed while it waited or loaded: end it and start a new one."""


class LifecycleController:
    def __init__(self, repo: ModelRepository, manager: ModelManager, loader: Loader, config: LifecycleConfig,
                 state: StatePaths, reporter: Reporter) -> None:
        self.repo = repo
        self.manager = manager
        self.loader = loader
        self.config = config
        self.state = state
        self.reporter = reporter
        self.pins = PinStore(state.pin_file)
        self.verdicts = VerdictStore(state.verdicts_dir)
        self.backoff = Backoff(config.poll_s)
        self.decisions = Decisions(self.verdicts, reporter, self.backoff)
        self.loop = PassLoop(self.reconcile, config.poll_s, config.debounce_s, name="model-lifecycle")
        self.watcher = RepositoryWatcher(watched_paths(repo, state), decision_inputs(repo, state), self.loop.trigger)
        self.pin = PinRead(None)  # as read by the current pass
        self.last_scan: Scan | None = None
        self._load_lock = FileLock(state.load_lock)
        auto = Rollout("", "", config.rollout_percent) if config.rollout_mode == "canary" else None
        self.canary = CanaryFollower(RolloutStore(state.rollout_file), manager, loader, self.verdicts, self.decisions,
                                     self.backoff, self._load_lock, reporter, self.loop.stopping,
                                     config.drain_timeout_s, auto)
        self._verify_cache = VerifyCache()
        self._serving: Serving | None = None
        self._loading: str | None = None
        self._recheck_at = 0.0  # monotonic time of the next re-check of the serving version

    def start(self) -> None:
        try:
            self.state.ensure()
        except OSError as exc:  # read-only state: serving still works, sharing does not
            log.error("cannot create the state directory %s: %s", self.state.base, exc)
        self.loop.start()
        self.watcher.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """End the lifecycle thread and the watcher (the served model stays with the manager); False if
        the lifecycle thread is still inside a pass (a load cannot be interrupted) after `timeout`."""
        self.watcher.stop()
        return self.loop.stop(timeout)

    def trigger(self, reason: str = "") -> None:
        self.loop.trigger(reason)

    def scan_now(self) -> Scan:
        """A fresh scan of the repository (checksums cached per fingerprint, shared with the API)."""
        return scan_repository(self.repo, self.config.settle_s, self._verify_cache)

    # -- one pass -------------------------------------------------------------------------------------
    def reconcile(self) -> None:
        scan = self.scan_now()
        self.last_scan = scan
        self.reporter.repository(scan.error)
        if scan.error is not None or scan.unstable:  # nothing reliable to act on: keep serving
            if scan.unstable:
                self.trigger("the repository changed during the scan")
            self._publish()
            return
        for inspection in scan.versions.values():
            if inspection.state is VersionState.REJECTED:
                self.decisions.reject(inspection, LoadFailure(inspection.code or "invalid", inspection.reason),
                                      already_counted=False)
        self.pin = self.pins.read()
        serving = self._serving
        if serving is not None:
            self.reporter.missing(serving.model.version, serving.model.version not in scan.versions)
            self._recheck(serving, scan.versions.get(serving.model.version))
        before = serving
        self.canary.follow(scan, before.model.version if before else None)  # an ended canary goes first
        chosen = preference(scan, self.verdicts.all(), self.pin.pin)
        if self.canary.enter(scan, chosen, before.model.version if before else None, self.pins):
            self.pin = self.pins.read()  # a new version enters as a canary: the stable one is pinned now
            chosen = preference(scan, self.verdicts.all(), self.pin.pin)
        for version in versions_to_try(chosen, scan, serving.model.version if serving else None):
            if self.loop.stopping.is_set():
                break
            inspection = scan.versions[version]
            serving = self._serving
            if serving and serving.model.version == version and serving.fingerprint == inspection.fingerprint:
                break
            if self.backoff.waiting(version, inspection.fingerprint):
                continue
            try:
                if self._attempt(inspection):
                    break
            except _Replan:
                self.trigger("re-plan")
                break
        if self._serving is not None and self._serving is not before:  # a first or new stable version
            self.canary.follow(scan, self._serving.model.version)
        self._publish()

    def _attempt(self, inspection: Inspection) -> bool:
        """Try to make `inspection` the serving version; True if it now serves."""
        needs_lock = self.manager.ready
        if needs_lock:
            try:
                if not self._load_lock.acquire(self.loop.stopping):
                    return False
            except OSError as exc:  # unwritable state directory: load anyway, unsynchronised
                log.error("cannot take the load lock %s (%s); loading without it", self.state.load_lock, exc)
                needs_lock = False
        try:
            if needs_lock and self.pins.read() != self.pin:  # re-pinned while we waited for the lock
                raise _Replan()
            standing = self.verdicts.current(inspection.version, inspection.fingerprint)
            if standing is not None and not standing.approved:
                return False
            self._set_loading(inspection.version)
            try:
                loaded = self._load(inspection, standing)
            except LoadFailure as failure:
                self._set_loading(None)  # before the verdict: readers never see "loading" and "rejected"
                self.decisions.failed(inspection, standing, failure)
                return False
            finally:
                self._loading = None  # on success, `_swap` publishes "serving" in the same update
            old = self._swap(loaded, inspection)
            if old is not None:
                self._drain(old)
            return True
        finally:
            if needs_lock:
                self._load_lock.release()

    def _load(self, inspection: Inspection, standing: Verdict | None) -> Loaded:
        serving, live = self._serving, self.manager.active
        if live is not None and not gated_against_live(inspection.version, live.version, self.pin.pin):
            live = None
        loaded = self.loader.load(LoadRequest(inspection, standing, live, serving.gate if serving else None))
        if not inspection.unchanged():  # copied over or deleted while it loaded: not what was judged
            loaded.model.close()
            self._set_loading(None)
            raise _Replan()
        if standing is None:
            self.decisions.approve(inspection, loaded)
        return loaded

    def _recheck(self, serving: Serving, inspection: Inspection | None) -> None:
        """Check the serving version again when it is due and `policy.recheck_applies`."""
        now = time.monotonic()
        if not self.config.recheck_s or now < self._recheck_at or inspection is None or not recheck_applies(
                serving.fingerprint, inspection, self.verdicts.get(inspection.version)):
            return
        self._recheck_at = now + self.config.recheck_s
        failure = self.loader.recheck(serving.model)
        if failure is not None:
            self.reporter.recheck_failed(inspection.version, failure)
            self.decisions.reject(inspection, failure, already_counted=True)

    def _swap(self, loaded: Loaded, inspection: Inspection) -> ModelHandle | None:
        previous = self._serving
        old = self.manager.activate(loaded.model)
        self._serving = Serving(loaded.model, inspection.fingerprint, loaded.gate)
        self.backoff.succeeded(inspection.version, inspection.fingerprint)
        self.reporter.serving(loaded, previous.model.version if previous else None)
        self.verdicts.mark_served(inspection.version, inspection.fingerprint)
        self._publish()
        return old

    def _drain(self, old: ModelHandle) -> None:
        """Wait (lock held) until the replaced version's last request ends and it is freed."""
        self._publish()
        closed, waited_s = self.manager.drain(old, self.config.drain_timeout_s, self.loop.stopping)
        self.reporter.retired(old.model.version, closed, waited_s)
        self._publish()

    # -- what this worker does, for the others ----------------------------------------------------
    @property
    def serving(self) -> Serving | None:
        return self._serving

    def _set_loading(self, version: str | None) -> None:
        self._loading = version
        self._publish()

    def _publish(self) -> None:
        serving = self._serving
        self.reporter.publish(WorkerState(
            slot=self.reporter.slot, pid=os.getpid(), serving=serving.model.version if serving else None,
            serving_fingerprint=serving.fingerprint if serving else None, loading=self._loading,
            draining=[model.version for model in self.manager.draining()], since=serving.since if serving else "",
            canary=candidate.version if (candidate := self.manager.candidate) else None,
            errors=self.backoff.errors()))
