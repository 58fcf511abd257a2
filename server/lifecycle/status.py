"""The machine-wide picture behind `GET /v1/models` and `/readyz`: every version, its state and why,
and which version each worker serves - assembled from a scan and the shared state files, so whichever
worker answers, the answer covers all of them. States and their order of precedence are those of
`server.lifecycle.states`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from server.lifecycle.controller import LifecycleController
from server.lifecycle.policy import preference
from server.lifecycle.source import Inspection, Scan
from server.lifecycle.states import Status, VersionState
from server.lifecycle.verdicts import Verdict
from server.lifecycle.workers import WorkerState
from server.repository.layout import parse_version
from server.repository.manifest import Manifest
from server.storage.statefiles import StateFileError, read_json


@dataclass
class _Activity:
    """What the live workers do with one version (worker slots)."""

    serving: list[int] = field(default_factory=list)
    loading: list[int] = field(default_factory=list)
    draining: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _activity(workers: list[WorkerState]) -> dict[str, _Activity]:
    found: dict[str, _Activity] = {}
    for worker in workers:
        if worker.serving:
            found.setdefault(worker.serving, _Activity()).serving.append(worker.slot)
        if worker.loading:
            found.setdefault(worker.loading, _Activity()).loading.append(worker.slot)
        for version in worker.draining:
            found.setdefault(version, _Activity()).draining.append(worker.slot)
        for version, reason in worker.errors.items():
            found.setdefault(version, _Activity()).errors.append(f"worker {worker.slot}: {reason}")
    return found


def _applicable(verdict: Verdict | None, inspection: Inspection | None) -> Verdict | None:
    """A verdict made on other files (or on a version no longer on disk) no longer applies."""
    if verdict is None or inspection is None or verdict.fingerprint != inspection.fingerprint:
        return None
    return verdict


def _status(inspection: Inspection | None, verdict: Verdict | None, activity: _Activity) -> Status:
    if activity.serving:  # rejected since it was loaded (the re-check): still served until another loads
        rejected = verdict is not None and not verdict.approved
        return Status(VersionState.SERVING, f"rejected since: {verdict.reason}" if rejected and verdict else "")
    if activity.loading:
        return Status(VersionState.LOADING)
    if inspection is not None and inspection.state is VersionState.REJECTED:
        return Status(VersionState.REJECTED, inspection.reason)
    if verdict is not None and not verdict.approved:
        return Status(VersionState.REJECTED, verdict.reason)
    if inspection is not None and inspection.state is VersionState.PENDING:
        return Status(VersionState.PENDING, inspection.reason)
    if verdict is not None:
        return Status(VersionState.RETIRED if verdict.served_at else VersionState.READY)
    if activity.errors:
        return Status(VersionState.RETRYING, "; ".join(activity.errors))
    return Status(VersionState.NEW)


def version_states(scan: Scan, verdicts: dict[str, Verdict], workers: list[WorkerState]) -> dict[str, Status]:
    """Every version on disk or in a worker's memory, with its state."""
    activity = _activity(workers)
    return {name: _status(scan.versions.get(name), _applicable(verdicts.get(name), scan.versions.get(name)),
                          activity.get(name, _Activity()))
            for name in set(scan.versions) | set(activity)}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _manifest_summary(manifest: Manifest) -> dict[str, Any]:
    data = manifest.to_json()
    data["files"] = len(manifest.files)
    return data


def _version_entry(name: str, status: Status, inspection: Inspection | None, verdict: Verdict | None,
                   slots: _Activity) -> dict[str, Any]:
    return {
        "version": name,
        "state": status.state.value,
        "reason": status.reason,
        "on_disk": inspection is not None,
        "workers": {"serving": slots.serving, "loading": slots.loading, "draining": slots.draining},
        "gate": verdict.gate if verdict else None,
        "verdict": None if verdict is None else {
            "decision": verdict.decision, "result": verdict.result, "reason": verdict.reason,
            "decided_by": verdict.decided_by, "decided_at": verdict.decided_at, "served_at": verdict.served_at,
            "signature": verdict.signature,
        },
        "manifest": _manifest_summary(inspection.manifest) if inspection and inspection.manifest else None,
    }


def _consistent_scan(controller: LifecycleController) -> Scan:
    scan = controller.scan_now()
    if scan.unstable:  # a version appeared or went while we looked: one more look gives a consistent list
        scan = controller.scan_now()
    return scan


def version_view(controller: LifecycleController, name: str) -> tuple[dict[str, Any], Inspection | None] | None:
    """One version's entry of the listing (and its inspection), None when it is neither on disk nor served."""
    scan = _consistent_scan(controller)
    workers = controller.reporter.board.live()
    status = version_states(scan, controller.verdicts.all(), workers).get(name)
    if status is None:
        return None
    inspection = scan.versions.get(name)
    entry = _version_entry(name, status, inspection, _applicable(controller.verdicts.get(name), inspection),
                           _activity(workers).get(name, _Activity()))
    return entry, inspection


def models_view(controller: LifecycleController) -> dict[str, Any]:
    scan = _consistent_scan(controller)
    verdicts = controller.verdicts.all()
    pin_read = controller.pins.read()
    workers = controller.reporter.board.live()
    chosen = preference(scan, verdicts, pin_read.pin)
    activity = _activity(workers)
    states = version_states(scan, verdicts, workers)
    versions = [_version_entry(name, states[name], scan.versions.get(name),
                               _applicable(verdicts.get(name), scan.versions.get(name)), activity.get(name, _Activity()))
                for name in sorted(states, key=parse_version, reverse=True)]

    pin: dict[str, Any] | None = None
    if pin_read.pin is not None:
        pin = {**pin_read.pin.__dict__, "effective": chosen.pin_effective, "reason": chosen.pin_reason}
    rollout, rollout_error = controller.canary.store.read()
    return {
        "pipeline": controller.repo.pipeline,
        "repository": str(controller.repo.pipeline_dir),
        "repository_error": scan.error or ("changed while being scanned" if scan.unstable else None),
        "scanned_at": _iso(scan.at),
        "desired": chosen.desired,
        "pin": pin,
        "pin_error": pin_read.error,
        "rollout": {**rollout.__dict__, "workers": [w.slot for w in workers if w.canary == rollout.candidate]}
        if rollout else None,
        "rollout_error": rollout_error,
        "workers": [_worker_json(worker) for worker in workers],
        "versions": versions,
        "ignored": [{"name": name, "reason": reason} for name, reason in scan.ignored],
        "gate_defaults": {"tolerance": controller.config.gate.tolerance, "max_cer": controller.config.gate.max_cer},
        "watcher": {"armed": controller.watcher.armed, "rearmed": controller.watcher.rearmed,
                    "poll_s": controller.config.poll_s},
        "registry": _registry_status(controller),
    }


def _registry_status(controller: LifecycleController) -> dict[str, Any] | None:
    """The registry sync's own report (`server.registry.status`), as it wrote it; None without a sync."""
    try:
        report = read_json(controller.state.registry_file)
    except (StateFileError, OSError) as exc:
        return {"state": "unknown", "error": f"cannot read the sync's status: {exc}"}
    return report if isinstance(report, dict) else None


def _worker_json(worker: WorkerState) -> dict[str, Any]:
    return {"slot": worker.slot, "pid": worker.pid, "serving": worker.serving, "canary": worker.canary,
            "loading": worker.loading, "draining": worker.draining, "since": worker.since, "errors": worker.errors,
            "updated_at": worker.updated_at}
