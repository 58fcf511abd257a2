"""What one worker's lifecycle tells the outside world: audit events, metrics, logs and the worker board.

Every lifecycle event goes through here, so each is written once, in one shape: the audit line names
the worker (`actor` `worker-N`, `worker`, `pid`), the metric and the log line say the same thing.
Conditions that persist (the repository is unreadable, the serving version's directory is gone) are
reported once when they start, not on every pass, and the repository's recovery once when it ends.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from server.governance.audit import AuditLog
from server.lifecycle.loader import Loaded, LoadFailure
from server.lifecycle.workers import WorkerBoard, WorkerState
from server.observability.metrics import MODEL_GOLDEN_CER, MODEL_LAST_RELOAD, MODEL_LOADS, MODEL_RECHECK_FAILURES, \
    MODEL_SWAPS, MODEL_UNVERIFIED_SERVING, model_serving
from server.repository.manifest import now_iso

log = logging.getLogger("server.lifecycle")


def _signed(signature: dict[str, Any] | None) -> dict[str, Any]:
    """The audit fields of a signature check: the version digest, the key, whether it verified."""
    if not signature:
        return {}
    return {"version_digest": signature.get("version_digest"), "key_id": signature.get("key_id"),
            "signature": "verified" if signature.get("verified") else signature.get("problem")}


class Reporter:
    def __init__(self, audit: AuditLog, board: WorkerBoard, slot: int, device: str) -> None:
        self.audit = audit
        self.board = board
        self.slot = slot
        self.device = device
        self.actor = f"worker-{slot}"
        self._active: set[str] = set()  # conditions reported once (see `_starts`)
        self._published: WorkerState | None = None

    def event(self, action: str, version: str | None = None, result: str = "ok", reason: str = "",
              **details: Any) -> None:
        self.audit.append(action, actor=self.actor, version=version, result=result, reason=reason,
                          worker=self.slot, pid=os.getpid(), **details)

    # -- decisions and loads ------------------------------------------------------------------------
    def approved(self, version: str, loaded: Loaded) -> None:
        self.event("approve", version, reason=str(loaded.gate.get("reason", "")), gate=loaded.gate,
                   **_signed(loaded.signature))

    def rejected(self, version: str, failure: LoadFailure, counted: bool) -> None:
        """A rejection this worker recorded; `counted` True when its failed load was counted already."""
        if not counted:
            MODEL_LOADS.labels(result=failure.code).inc()
        log.warning("version %s rejected (%s): %s", version, failure.code, failure.reason)
        self.event("reject", version, result=failure.code, reason=failure.reason, gate=failure.gate,
                   **_signed(failure.signature))

    def load_failed(self, version: str, failure: LoadFailure) -> None:
        MODEL_LOADS.labels(result=failure.code).inc()
        log.warning("version %s not loaded (%s): %s", version, failure.code, failure.reason)
        self.event("load", version, result=failure.code, reason=failure.reason, **_signed(failure.signature))

    def recheck_failed(self, version: str, failure: LoadFailure) -> None:
        """The version this worker serves failed its re-check: it is rejected; this worker keeps serving
        it until another version loads (an alert: `ocr_model_recheck_failures_total`)."""
        MODEL_RECHECK_FAILURES.labels(result=failure.code).inc()
        MODEL_UNVERIFIED_SERVING.set(1)
        log.error("version %s, which this worker serves, failed its re-check (%s): %s", version, failure.code,
                  failure.reason)
        self.event("recheck", version, result=failure.code, reason=failure.reason, **_signed(failure.signature))

    def serving(self, loaded: Loaded, previous: str | None) -> None:
        """This worker now serves `loaded` (after `previous`, if it served one)."""
        model = loaded.model
        MODEL_LOADS.labels(result="success").inc()
        if previous is not None:
            MODEL_SWAPS.inc()
        if loaded.gate.get("cer") is not None:
            MODEL_GOLDEN_CER.labels(model.version).set(loaded.gate["cer"])
        backend = str(model.manifest.framework.get("name", "unknown"))
        model_serving(model.version, worker=str(self.slot), backend=backend, device=self.device)
        MODEL_UNVERIFIED_SERVING.set(0 if loaded.verified else 1)
        MODEL_LAST_RELOAD.set_to_current_time()
        log.info("serving %s/%s (load %.2fs, warm-up %.2fs)", model.name, model.version,
                 model.load_seconds, model.warmup_seconds)
        self.event("load", model.version, result="success", load_s=round(model.load_seconds, 3),
                   warmup_s=round(model.warmup_seconds, 3), **_signed(loaded.signature))
        self.event("swap", model.version, previous=previous)
        self._active.discard(f"missing:{model.version}")

    def retired(self, version: str, closed: bool, waited_s: float) -> None:
        self.event("retire", version, result="ok" if closed else "timeout",
                   reason="" if closed else f"still in use after {waited_s:.0f}s; freed when its last request ends",
                   drained_s=round(waited_s, 3))

    # -- conditions, reported when they start ------------------------------------------------------
    def _starts(self, key: str, active: bool) -> bool:
        """True when condition `key` turns active (and remembers it); forgets it when inactive."""
        if not active:
            self._active.discard(key)
            return False
        if key in self._active:
            return False
        self._active.add(key)
        return True

    def repository(self, error: str | None) -> None:
        was_down = "repository" in self._active
        if self._starts("repository", error is not None):
            log.warning("%s; serving continues from memory", error)
            self.event("repository", result="unavailable", reason=error or "")
        elif was_down and error is None:
            log.info("the model repository is readable again")
            self.event("repository", result="available")

    def missing(self, version: str, gone: bool) -> None:
        """The serving version's directory is (still) gone from the repository, or back."""
        if self._starts(f"missing:{version}", gone):
            reason = "its directory is gone from the repository; serving it from memory until another version loads"
            log.warning("version %s: %s", version, reason)
            self.event("missing", version, result="serving", reason=reason)

    # -- the worker board ---------------------------------------------------------------------------
    def publish(self, state: WorkerState) -> None:
        """Write this worker's state for the others (only when it changed)."""
        if state == self._published:
            return
        try:
            self.board.publish(WorkerState(**{**state.__dict__, "updated_at": now_iso()}))
            self._published = state
        except OSError as exc:
            log.error("cannot write worker state to %s: %s", self.board.directory, exc)
