"""Controller: one per worker; keeps the version it serves in line with the repository and the pin.

A single background thread reconciles: scan the repository (cheap; checksums once per change), apply
the policy (`server.lifecycle.policy`) to the scan, the machine-wide verdicts and the pin, and serve
the first version of the resulting order that can be loaded. It wakes on watcher events (debounced:
a copy is handled once, not per file), on admin calls, and every `poll_s` regardless. Any failure
in a pass is logged and the next pass runs anyway: nothing stops detection.

Loading a version (`_attempt`), with the machine-wide load lock held whenever this worker already
serves something, so that across all workers at most one extra copy of a model is in memory:

    standing verdict? rejected -> skip | approved -> skip probe and gate, follow it
    probe (child process) unless these network files already opened on this machine
    loader: verify checksums -> build predictors -> warm up on several page shapes
    quality gate on the golden set against the version this worker serves -> record the verdict
    swap (atomic; requests in flight keep their snapshot) -> wait for the old one to drain, free it

A rejection is recorded once, machine-wide, and holds until the version's files change. A failure
that says nothing about the version (the golden set is unreadable, a version other workers approved
fails only here) is retried with backoff instead. The serving version is never unloaded for lack of
a replacement: a repository that vanishes or a deleted directory leaves it serving from memory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from server.config import Settings
from server.governance.audit import AuditLog
from server.quality.gate import GatePolicy, GateResult, GoldenScore, GoldenSet, golden_cer, judge, \
    resolve_golden_set
from server.lifecycle.loader import LoadedModel, LoadError, VerificationError, load_version
from server.storage.locks import FileLock
from server.lifecycle.manager import ModelHandle, ModelManager
from server.lifecycle.memory import release_freed_memory
from server.lifecycle.pins import PinRead, PinStore
from server.lifecycle.policy import preference
from server.lifecycle.probe import ProbeCrash, network_digest, probe_networks
from server.storage.statefiles import StatePaths
from server.lifecycle.verdicts import APPROVED, REJECTED, Verdict, VerdictStore
from server.lifecycle.watcher import RepositoryWatcher
from server.lifecycle.workers import WorkerBoard, WorkerState
from server.observability.metrics import MODEL_GOLDEN_CER, MODEL_LAST_RELOAD, MODEL_LOAD_DURATION, MODEL_LOADS, MODEL_SWAPS, \
    model_serving
from server.repository.candidates import Inspection, Readiness, Scan, VerifyCache, scan_repository
from server.repository.layout import ModelRepository, parse_version
from server.repository.manifest import now_iso
from server.runtime import RuntimeOptions

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 300.0


@dataclass(frozen=True)
class LifecycleConfig:
    """The lifecycle's share of `Settings` (see server/config.py for what each means)."""

    poll_s: float
    debounce_s: float
    settle_s: float
    gate: GatePolicy
    warmup_shapes: tuple[tuple[int, int], ...]
    drain_timeout_s: float
    probe_timeout_s: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "LifecycleConfig":
        return cls(
            poll_s=settings.poll_interval_s,
            debounce_s=settings.debounce_s,
            settle_s=settings.settle_s,
            gate=GatePolicy(tolerance=settings.gate_tolerance, max_cer=settings.gate_max_cer),
            warmup_shapes=settings.warmup_shape_list,
            drain_timeout_s=float(settings.timeout_s),
        )


@dataclass
class Serving:
    model: LoadedModel
    fingerprint: str
    since: str = field(default_factory=now_iso)


@dataclass(frozen=True)
class VersionStatus:
    """One version as this worker's last pass saw it (the machine-wide view is `server.lifecycle.status`)."""

    version: str
    state: str  # "serving", "rejected", "pending" or "candidate"
    reason: str = ""


class Rejection(Exception):
    """A load attempt failed. `sticky` failures say the version itself is bad: they become a verdict."""

    def __init__(self, result: str, reason: str, sticky: bool = True, gate: dict | None = None) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason
        self.sticky = sticky
        self.gate = gate


class _Replan(Exception):
    """The inputs of this pass changed while it waited: end it and start a new one."""


class LifecycleController:
    def __init__(
        self,
        repo: ModelRepository,
        manager: ModelManager,
        options: RuntimeOptions,
        config: LifecycleConfig,
        state: StatePaths,
        audit: AuditLog,
        slot: int = 0,
    ) -> None:
        self.repo = repo
        self.manager = manager
        self.options = options
        self.config = config
        self.state = state
        self.audit = audit
        self.slot = slot
        self.actor = f"worker-{slot}"
        self.pins = PinStore(state.pin_file)
        self.verdicts = VerdictStore(state.verdicts_dir)
        self.board = WorkerBoard(state.workers_dir)
        self.device = "cpu" if options.device == "cpu" else f"gpu:{options.gpu_id}"
        self._load_lock = FileLock(state.load_lock)
        self._verify_cache = VerifyCache()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_event = 0.0
        self._thread: threading.Thread | None = None
        self._serving: Serving | None = None
        self._loading: str | None = None
        self._errors: dict[str, str] = {}  # version -> last local failure (being retried)
        self._backoff: dict[tuple[str, str], tuple[int, float]] = {}
        self._baseline: tuple[LoadedModel, str, GoldenScore] | None = None
        self._noted: set[str] = set()  # once-only audit events (repository unavailable, version missing)
        self._published: WorkerState | None = None
        self.pin: PinRead = PinRead(None)  # as read by the current pass
        self._last_scan: Scan | None = None
        self.watcher = RepositoryWatcher(self._watched_paths(), self._relevant, self.trigger)

    # -- running -----------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self.state.ensure()
        except OSError as exc:  # read-only state: serving still works, sharing does not
            log.error("cannot create the state directory %s: %s", self.state.base, exc)
        self._thread = threading.Thread(target=self._run, name="model-lifecycle", daemon=True)
        self._thread.start()
        self.watcher.start()

    def stop(self) -> None:
        """End the lifecycle thread and the watcher (the served model stays with the manager)."""
        self._stop.set()
        self._wake.set()
        self.watcher.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def trigger(self, reason: str = "") -> None:
        """Ask for a reconcile pass soon (after `debounce_s` without further triggers)."""
        log.debug("change: %s", reason)
        self._last_event = time.monotonic()
        self._wake.set()

    def _run(self) -> None:
        self._reconcile_safely()
        while not self._stop.is_set():
            woken = self._wake.wait(self.config.poll_s)
            if self._stop.is_set():
                break
            if woken:
                deadline = time.monotonic() + max(5 * self.config.debounce_s, 5.0)
                while not self._stop.is_set() and time.monotonic() < deadline:
                    quiet = time.monotonic() - self._last_event
                    if quiet >= self.config.debounce_s:
                        break
                    self._stop.wait(self.config.debounce_s - quiet)
            self._wake.clear()
            self._reconcile_safely()

    def _reconcile_safely(self) -> None:
        try:
            self.reconcile()
        except Exception:  # a bug or an odd filesystem must not end detection
            log.exception("model lifecycle pass failed; the next pass runs in %.1fs", self.config.poll_s)

    # -- watching ------------------------------------------------------------------------------------
    def _watched_paths(self) -> list[Path]:
        root = self.repo.root.absolute()
        state = self.state.base.absolute()
        return [root] if state.is_relative_to(root) else [root, state]

    def _relevant(self, raw: str) -> bool:
        """Whether a filesystem event can change a decision: a version directory, the pin, a verdict."""
        path = Path(raw)
        if path == self.state.pin_file.absolute():
            return True
        if path.parent == self.state.verdicts_dir.absolute():
            return path.suffix == ".json" and not path.name.startswith(".")
        pipeline_dir = self.repo.pipeline_dir.absolute()
        if path == pipeline_dir:
            return True
        if path.is_relative_to(pipeline_dir):
            return not path.relative_to(pipeline_dir).parts[0].startswith(".")
        return False

    # -- reconciling ---------------------------------------------------------------------------------
    def scan_now(self) -> Scan:
        """A fresh scan of the repository (checksums cached per fingerprint, shared with the API)."""
        return scan_repository(self.repo, self.config.settle_s, self._verify_cache)

    def reconcile(self) -> None:
        scan = self.scan_now()
        self._last_scan = scan
        self._note_repository(scan)
        if scan.error is not None or scan.unstable:  # nothing reliable to act on: keep serving
            if scan.unstable:
                self.trigger("the repository changed during the scan")
            self._publish_state()
            return
        for inspection in scan.versions.values():
            if inspection.readiness is Readiness.REJECTED:
                self._record_rejection(inspection, inspection.code or "invalid", inspection.reason)
        verdicts = self.verdicts.all()
        self.pin = self.pins.read()
        chosen = preference(scan, verdicts, self.pin.pin)
        order = chosen.order
        self._note_missing(scan)
        serving = self._serving
        current = scan.versions.get(serving.model.version) if serving else None
        if serving and current is not None and current.readiness is Readiness.PENDING:
            # Its files are changing or unreadable right now (a copy over it, a flaky mount): that is no
            # reason to go down to an older version. Only what is preferred above it may replace it.
            order = [v for v in order if (chosen.pin_effective and v == order[0])
                     or parse_version(v) > parse_version(serving.model.version)]
        for version in order:
            if self._stop.is_set():
                break
            inspection = scan.versions[version]
            serving = self._serving
            if serving and serving.model.version == version and serving.fingerprint == inspection.fingerprint:
                break
            if self._backing_off(inspection):
                continue
            try:
                if self._attempt(inspection):
                    break
            except _Replan:
                self.trigger("re-plan")
                break
        self._publish_state()

    def _backing_off(self, inspection: Inspection) -> bool:
        entry = self._backoff.get((inspection.version, inspection.fingerprint))
        return entry is not None and time.monotonic() < entry[1]

    def _attempt(self, inspection: Inspection) -> bool:
        """Try to make `inspection` the serving version; True if it now serves."""
        needs_lock = self.manager.ready
        if needs_lock:
            try:
                if not self._load_lock.acquire(self._stop):
                    return False
            except OSError as exc:  # unwritable state directory: load anyway, unsynchronised
                log.error("cannot take the load lock %s (%s); loading without it", self.state.load_lock, exc)
                needs_lock = False
        try:
            if needs_lock and self.pins.read() != self.pin:  # re-pinned while we waited for the lock
                raise _Replan()
            verdict = self.verdicts.current(inspection.version, inspection.fingerprint)
            if verdict is not None and not verdict.approved:
                return False
            self._set_loading(inspection.version)
            try:
                model = self._load(inspection, verdict)
            except Rejection as failure:
                self._set_loading(None)  # before the verdict: readers never see "loading" and "rejected"
                self._on_failure(inspection, verdict, failure)
                return False
            finally:
                self._loading = None  # on success, `_swap` publishes "serving" in the same update
            old = self._swap(model, inspection)
            if old is not None:
                self._drain(old)
            return True
        finally:
            if needs_lock:
                self._load_lock.release()

    def _load(self, inspection: Inspection, verdict: Verdict | None) -> LoadedModel:
        version = inspection.version
        manifest = inspection.manifest
        assert manifest is not None  # candidates always have one
        approved = verdict is not None and verdict.approved
        networks = network_digest(manifest)
        if not approved and not self._networks_known(networks):
            try:
                probe_networks(inspection.path, manifest, self.options, self.config.probe_timeout_s)
            except ProbeCrash as exc:
                raise Rejection("crashed", str(exc)) from exc
            except LoadError as exc:
                raise Rejection("load_error", str(exc)) from exc
        try:
            model = load_version(self.repo, version, self.options, self.config.warmup_shapes)
        except VerificationError as exc:  # the files changed since the scan: look again next pass
            raise Rejection("verify_failed", str(exc), sticky=False) from exc
        except LoadError as exc:
            raise Rejection("load_error", str(exc)) from exc
        MODEL_LOAD_DURATION.labels(phase="load").observe(model.load_seconds)
        MODEL_LOAD_DURATION.labels(phase="warmup").observe(model.warmup_seconds)
        if approved:
            assert verdict is not None
            gate = verdict.gate or {}
        else:
            try:
                result = self._gate(model)
            except Exception as exc:  # an unusable golden set says nothing about the version
                model.close()
                raise Rejection("gate_error", f"the quality gate cannot run: {exc}", sticky=False) from exc
            gate = result.to_json()
            if not result.passed:
                model.close()
                raise Rejection("gate_rejected", result.reason, gate=gate)
            standing, created = self.verdicts.record(Verdict(
                version, inspection.fingerprint, APPROVED, "success", result.reason, gate, networks,
                decided_by=self.actor))
            if created:
                self.audit.append("approve", actor=self.actor, version=version, reason=result.reason,
                                  worker=self.slot, pid=os.getpid(), gate=gate)
            elif not standing.approved:  # another worker decided otherwise first: follow it
                model.close()
                raise Rejection(standing.result, standing.reason)
        if gate.get("cer") is not None:
            MODEL_GOLDEN_CER.labels(version).set(gate["cer"])
        return model

    def _networks_known(self, digest: str) -> bool:
        """Whether an approved version with these very network files exists (they open without crashing)."""
        return any(v.approved and v.networks == digest for v in self.verdicts.all().values())

    def _gate(self, model: LoadedModel) -> GateResult:
        policy = self.config.gate.for_manifest(model.manifest.quality_gate)
        golden = resolve_golden_set(model.path, self.repo.root)
        score = golden_cer(model.pipeline, golden.samples)
        live = self.manager.active  # only this thread swaps, so it stays loaded while we use it
        baseline = None
        if live is not None:
            baseline = (live.version, self._live_score(live, golden))
        return judge(score, golden, policy, baseline)

    def _live_score(self, live: LoadedModel, golden: GoldenSet) -> GoldenScore:
        """The live version's score on `golden`: remembered, or from its own gate on the same set, or run."""
        cached = self._baseline
        if cached is not None and cached[0] is live and cached[1] == golden.key:
            return cached[2]
        serving = self._serving
        verdict = self.verdicts.current(live.version, serving.fingerprint) if serving else None
        gate = verdict.gate if verdict is not None and verdict.approved and verdict.gate else {}
        if gate.get("golden_set_key") == golden.key and gate.get("errors") is not None:
            score = GoldenScore(cer=gate["errors"] / gate["chars"] if gate["chars"] else 0.0,
                                errors=gate["errors"], chars=gate["chars"], images=gate["images"])
        else:
            score = golden_cer(live.pipeline, golden.samples)
            MODEL_GOLDEN_CER.labels(live.version).set(score.cer)
        self._baseline = (live, golden.key, score)
        return score

    def _on_failure(self, inspection: Inspection, verdict: Verdict | None, failure: Rejection) -> None:
        version = inspection.version
        MODEL_LOADS.labels(result=failure.result).inc()
        log.warning("version %s not loaded (%s): %s", version, failure.result, failure.reason)
        self.audit.append("load", actor=self.actor, version=version, result=failure.result, reason=failure.reason,
                          worker=self.slot, pid=os.getpid())
        if failure.sticky and not (verdict is not None and verdict.approved):
            self._record_rejection(inspection, failure.result, failure.reason, failure.gate, count=False)
            return
        key = (version, inspection.fingerprint)
        failures = self._backoff.get(key, (0, 0.0))[0] + 1
        delay = min(MAX_BACKOFF_S, self.config.poll_s * 2 ** (failures - 1))
        self._backoff[key] = (failures, time.monotonic() + delay)
        self._errors[version] = f"{failure.reason} (retry {failures} in {delay:.0f}s)"

    def _record_rejection(self, inspection: Inspection, result: str, reason: str, gate: dict | None = None,
                          count: bool = True) -> None:
        standing, created = self.verdicts.record(Verdict(
            inspection.version, inspection.fingerprint, REJECTED, result, reason, gate, decided_by=self.actor))
        if created:
            if count:
                MODEL_LOADS.labels(result=result).inc()
            log.warning("version %s rejected (%s): %s", inspection.version, result, reason)
            self.audit.append("reject", actor=self.actor, version=inspection.version, result=result, reason=reason,
                              worker=self.slot, pid=os.getpid(), gate=gate)

    def _swap(self, model: LoadedModel, inspection: Inspection) -> ModelHandle | None:
        previous = self._serving
        old = self.manager.activate(model)
        self._serving = Serving(model, inspection.fingerprint)
        self._baseline = None
        self._errors.pop(model.version, None)
        self._backoff.pop((model.version, inspection.fingerprint), None)
        MODEL_LOADS.labels(result="success").inc()
        if previous is not None:
            MODEL_SWAPS.inc()
        backend = str(model.manifest.framework.get("name", "unknown"))
        model_serving(model.version, worker=str(self.slot), backend=backend, device=self.device)
        MODEL_LAST_RELOAD.set_to_current_time()
        self.verdicts.mark_served(model.version, inspection.fingerprint)
        log.info("serving %s/%s (load %.2fs, warm-up %.2fs)", model.name, model.version,
                 model.load_seconds, model.warmup_seconds)
        details = dict(worker=self.slot, pid=os.getpid(), load_s=round(model.load_seconds, 3),
                       warmup_s=round(model.warmup_seconds, 3))
        self.audit.append("load", actor=self.actor, version=model.version, result="success", **details)
        self.audit.append("swap", actor=self.actor, version=model.version,
                          previous=previous.model.version if previous else None, worker=self.slot, pid=os.getpid())
        self._noted.discard(f"missing:{model.version}")
        self._publish_state()
        return old

    def _drain(self, old: ModelHandle) -> None:
        """Wait (lock held) until the replaced version's last request ends, then give its memory back."""
        self._publish_state()
        started = time.monotonic()
        closed = False
        while not self._stop.is_set() and time.monotonic() - started < self.config.drain_timeout_s:
            if old.wait_closed(0.5):
                closed = True
                break
        waited = time.monotonic() - started
        if closed:
            release_freed_memory()
        self.audit.append("retire", actor=self.actor, version=old.model.version,
                          result="ok" if closed else "timeout",
                          reason="" if closed else f"still in use after {waited:.0f}s; freed when its last request ends",
                          worker=self.slot, pid=os.getpid(), drained_s=round(waited, 3))
        self._publish_state()

    # -- reporting -----------------------------------------------------------------------------------
    def _note_once(self, key: str, active: bool) -> bool:
        """True when `key` turns active (and remembers it); forgets it when inactive."""
        if not active:
            self._noted.discard(key)
            return False
        if key in self._noted:
            return False
        self._noted.add(key)
        return True

    def _note_repository(self, scan: Scan) -> None:
        was_down = "repository" in self._noted
        if self._note_once("repository", scan.error is not None):
            log.warning("%s; serving continues from memory", scan.error)
            self.audit.append("repository", actor=self.actor, result="unavailable", reason=scan.error or "",
                              worker=self.slot, pid=os.getpid())
        elif was_down and scan.error is None:
            log.info("the model repository is readable again")
            self.audit.append("repository", actor=self.actor, result="available", worker=self.slot,
                              pid=os.getpid())

    def _note_missing(self, scan: Scan) -> None:
        serving = self._serving
        if serving is None or scan.error is not None:
            return
        version = serving.model.version
        if self._note_once(f"missing:{version}", version not in scan.versions):
            reason = "its directory is gone from the repository; serving it from memory until another version loads"
            log.warning("version %s: %s", version, reason)
            self.audit.append("missing", actor=self.actor, version=version, result="serving", reason=reason,
                              worker=self.slot, pid=os.getpid())

    def statuses(self) -> list[VersionStatus]:
        """Each version of the last pass's scan with its state here; `/readyz` lists the rejected ones
        (with why) while nothing serves."""
        scan = self._last_scan
        if scan is None:
            return []
        verdicts = self.verdicts.all()
        serving = self._serving.model.version if self._serving else None
        found = []
        for name, inspection in scan.versions.items():
            verdict = verdicts.get(name)
            if name == serving:
                found.append(VersionStatus(name, "serving"))
            elif inspection.readiness is Readiness.REJECTED:
                found.append(VersionStatus(name, "rejected", inspection.reason))
            elif verdict and verdict.fingerprint == inspection.fingerprint and not verdict.approved:
                found.append(VersionStatus(name, "rejected", verdict.reason))
            else:
                found.append(VersionStatus(name, inspection.readiness.value, inspection.reason))
        return found

    def _set_loading(self, version: str | None) -> None:
        self._loading = version
        self._publish_state()

    def _publish_state(self) -> None:
        serving = self._serving
        state = WorkerState(
            slot=self.slot,
            pid=os.getpid(),
            serving=serving.model.version if serving else None,
            serving_fingerprint=serving.fingerprint if serving else None,
            loading=self._loading,
            draining=[model.version for model in self.manager.draining()],
            since=serving.since if serving else "",
            errors=dict(self._errors),
        )
        if state == self._published:
            return
        try:
            self.board.publish(WorkerState(**{**state.__dict__, "updated_at": now_iso()}))
            self._published = state
        except OSError as exc:
            log.error("cannot write worker state to %s: %s", self.state.workers_dir, exc)
