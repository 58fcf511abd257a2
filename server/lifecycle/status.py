"""The machine-wide picture behind `GET /v1/models`: every version, its state and why, and which
version each worker serves - assembled from a fresh scan and the shared state files, so whichever
worker answers, the answer covers all of them.

Version states, first match wins:

    serving    a live worker serves it (`workers.serving` lists which)
    loading    a worker is loading, warming up or gating it
    rejected   it failed verification, loading or the quality gate; `reason` says why; it stays
               rejected until its files change
    pending    its files are still changing (copy in progress) or it is not published yet
    retired    approved and served before, replaced since (a rollback or pin can bring it back)
    ready      approved (verified, warmed up, passed the gate) but not serving
    retrying   a worker failed to load it for a reason outside the version (e.g. the golden set is
               unreadable); retried with backoff
    new        published and valid, not evaluated yet (a higher or pinned version serves)
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from server.lifecycle.controller import LifecycleController
from server.lifecycle.policy import preference
from server.lifecycle.verdicts import Verdict
from server.lifecycle.workers import WorkerState
from server.repository.candidates import Inspection, Readiness
from server.repository.layout import parse_version
from server.repository.manifest import Manifest


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _manifest_summary(manifest: Manifest) -> dict[str, Any]:
    data = manifest.to_json()
    data["files"] = len(manifest.files)
    return data


def _state(
    inspection: Inspection | None, verdict: Verdict | None, serving: list[int], loading: list[int],
    errors: list[str],
) -> tuple[str, str]:
    if serving:
        return "serving", ""
    if loading:
        return "loading", ""
    if inspection is not None and inspection.readiness is Readiness.REJECTED:
        return "rejected", inspection.reason
    if verdict is not None and not verdict.approved:
        return "rejected", verdict.reason
    if inspection is not None and inspection.readiness is Readiness.PENDING:
        return "pending", inspection.reason
    if verdict is not None:
        return ("retired" if verdict.served_at else "ready"), ""
    if errors:
        return "retrying", "; ".join(errors)
    return "new", ""


def models_view(controller: LifecycleController) -> dict[str, Any]:
    scan = controller.scan_now()
    if scan.unstable:  # a version appeared or went while we looked: one more look gives a consistent list
        scan = controller.scan_now()
    verdicts = controller.verdicts.all()
    pin_read = controller.pins.read()
    workers = controller.board.live()
    chosen = preference(scan, verdicts, pin_read.pin)

    def slots(predicate: Callable[[WorkerState], list[str]]) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for worker in workers:
            for version in predicate(worker):
                found.setdefault(version, []).append(worker.slot)
        return found

    serving = slots(lambda w: [w.serving] if w.serving else [])
    loading = slots(lambda w: [w.loading] if w.loading else [])
    draining = slots(lambda w: w.draining)
    errors: dict[str, list[str]] = {}
    for worker in workers:
        for version, reason in worker.errors.items():
            errors.setdefault(version, []).append(f"worker {worker.slot}: {reason}")

    names = set(scan.versions) | set(serving) | set(loading) | set(draining)
    versions = []
    for name in sorted(names, key=parse_version, reverse=True):
        inspection = scan.versions.get(name)
        verdict = verdicts.get(name)
        if verdict is not None and (inspection is None or verdict.fingerprint != inspection.fingerprint):
            verdict = None  # made on other files: no longer applies
        state, reason = _state(inspection, verdict, serving.get(name, []), loading.get(name, []),
                               errors.get(name, []))
        versions.append({
            "version": name,
            "state": state,
            "reason": reason,
            "on_disk": inspection is not None,
            "workers": {"serving": serving.get(name, []), "loading": loading.get(name, []),
                        "draining": draining.get(name, [])},
            "gate": verdict.gate if verdict else None,
            "verdict": None if verdict is None else {
                "decision": verdict.decision, "result": verdict.result, "reason": verdict.reason,
                "decided_by": verdict.decided_by, "decided_at": verdict.decided_at, "served_at": verdict.served_at,
            },
            "manifest": _manifest_summary(inspection.manifest) if inspection and inspection.manifest else None,
        })

    pin: dict[str, Any] | None = None
    if pin_read.pin is not None:
        pin = {**pin_read.pin.__dict__, "effective": chosen.pin_effective, "reason": chosen.pin_reason}
    return {
        "pipeline": controller.repo.pipeline,
        "repository": str(controller.repo.pipeline_dir),
        "repository_error": scan.error or ("changed while being scanned" if scan.unstable else None),
        "scanned_at": _iso(scan.at),
        "desired": chosen.desired,
        "pin": pin,
        "pin_error": pin_read.error,
        "workers": [_worker_json(worker) for worker in workers],
        "versions": versions,
        "ignored": [{"name": name, "reason": reason} for name, reason in scan.ignored],
        "gate_defaults": {"tolerance": controller.config.gate.tolerance, "max_cer": controller.config.gate.max_cer},
        "watcher": {"armed": controller.watcher.armed, "rearmed": controller.watcher.rearmed,
                    "poll_s": controller.config.poll_s},
    }


def _worker_json(worker: WorkerState) -> dict[str, Any]:
    return {"slot": worker.slot, "pid": worker.pid, "serving": worker.serving, "loading": worker.loading,
            "draining": worker.draining, "since": worker.since, "errors": worker.errors,
            "updated_at": worker.updated_at}
