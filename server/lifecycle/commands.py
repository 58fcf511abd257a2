"""Admin commands on the lifecycle: pin a version, unpin, roll back, request a promotion, and the
canary's three (start or change its share, promote, abort; `server.lifecycle.rollout`).

Each command checks its request against the same policy the workers apply (`server.lifecycle.policy`),
writes the shared pin file that every worker follows, records the outcome in the audit log (refusals
too) and wakes this worker's controller; the workers then switch in the background. Who may call a
command is the caller's business (the HTTP layer authorises, and passes who called as `actor` and the
`**audit` fields: roles, address, request id); each record also carries the target version's digest
(sha256 of its manifest.json) when the version is on disk. A refusal is a `Refused` with a kind the
caller maps to its own answer.
"""

from __future__ import annotations

from typing import Any, NoReturn

from server.governance.access import PromotionRequest
from server.governance.audit import AuditLog
from server.governance.verify import version_digest
from server.lifecycle.controller import LifecycleController
from server.lifecycle.loader import LoadFailure
from server.lifecycle.pins import Pin
from server.lifecycle.policy import pin_refusal, rollback_target
from server.lifecycle.promotions import PromotionStore
from server.lifecycle.rollout import Rollout
from server.lifecycle.source import Inspection
from server.repository.layout import VersionNameError, parse_version
from server.repository.manifest import now_iso


class Refused(Exception):
    """A command that cannot be carried out: `kind` is invalid, not_found, conflict or unavailable."""

    def __init__(self, kind: str, code: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message


class Commands:
    def __init__(self, controller: LifecycleController, audit: AuditLog) -> None:
        self.controller = controller
        self.audit = audit
        self.promotions = PromotionStore(controller.state.promotions_file)
        self.rollouts = controller.canary.store

    def _refuse(self, action: str, version: str | None, kind: str, code: str, message: str, actor: str,
                audit: dict[str, Any]) -> NoReturn:
        self.audit.append(action, actor=actor, version=version, result="refused", reason=message, **audit)
        raise Refused(kind, code, message)

    def _write_pin(self, version: str, action: str, actor: str, audit: dict[str, Any]) -> Pin:
        try:
            return self.controller.pins.write(version, actor, action=action)
        except OSError as exc:  # e.g. a read-only state directory: the workers could not learn of the pin
            self._refuse(action, version, "unavailable", "state_unavailable",
                         f"cannot write the pin file: {exc.strerror or exc}", actor, audit)

    def _candidate(self, action: str, version: str, actor: str, audit: dict[str, Any]) -> Inspection:
        """`version` as on disk, if it may be made to serve (a whole version, not rejected)."""
        try:
            parse_version(version)
        except VersionNameError as exc:
            self._refuse(action, version, "invalid", "invalid_version", str(exc), actor, audit)
        controller = self.controller
        inspection = controller.scan_now().versions.get(version)
        if inspection is None:
            self._refuse(action, version, "not_found", "version_not_found",
                         f"version {version} is not in {controller.repo.pipeline_dir}", actor, audit)
        audit["version_digest"] = _digest(inspection)
        refusal = pin_refusal(inspection, controller.verdicts.get(version))
        if refusal is not None:
            self._refuse(action, version, "conflict", *refusal, actor, audit)
        return inspection

    def pin(self, version: str, actor: str, **audit: Any) -> Pin:
        """Pin `version`: every worker serves it once loaded (it must be on disk, whole, not rejected)."""
        self._candidate("pin", version, actor, audit)
        pin = self._write_pin(version, "pin", actor, audit)
        self.audit.append("pin", actor=actor, version=version, **audit)
        self.controller.trigger("pin")
        return pin

    def request_promotion(self, version: str, actor: str, **audit: Any) -> PromotionRequest:
        """Record that `actor` asks for `version` to serve (what the four-eyes rule looks at)."""
        self._candidate("request_promotion", version, actor, audit)
        request = PromotionRequest(version, actor, now_iso())
        try:
            self.promotions.add(request)
        except OSError as exc:
            self._refuse("request_promotion", version, "unavailable", "state_unavailable",
                         f"cannot record the request: {exc.strerror or exc}", actor, audit)
        self.audit.append("request_promotion", actor=actor, version=version, **audit)
        return request

    def unpin(self, actor: str, **audit: Any) -> str | None:
        """Remove the pin (back to "highest eligible version wins"); returns the version it pinned."""
        try:
            before = self.controller.pins.clear()
        except OSError as exc:
            self._refuse("unpin", None, "unavailable", "state_unavailable",
                         f"cannot remove the pin file: {exc.strerror or exc}", actor, audit)
        removed = before.pin.version if before.pin else None
        self.audit.append("unpin", actor=actor, version=removed, reason="" if removed else "no pin was set", **audit)
        self.controller.trigger("unpin")
        return removed

    def rollback(self, actor: str, **audit: Any) -> tuple[Pin, str]:
        """Pin the highest eligible version below the one serving; returns (the pin, the version left)."""
        controller = self.controller
        served = [worker.serving for worker in controller.reporter.board.live() if worker.serving]
        scan = controller.scan_now()
        current, target = rollback_target(scan, controller.verdicts.all(), controller.pins.read().pin, served)
        if target is None or current is None:
            self._refuse("rollback", current, "conflict", "no_rollback_target",
                         f"no eligible version below {current}" if current else "no version serves", actor, audit)
        pin = self._write_pin(target, "rollback", actor, audit)
        self.audit.append("rollback", actor=actor, version=target, previous=current,
                          version_digest=_digest(scan.versions.get(target)), **audit)
        controller.trigger("rollback")
        return pin, current

    # -- the canary ---------------------------------------------------------------------------------
    def canary(self, version: str, percent: object, actor: str, **audit: Any) -> Rollout:
        """Send `percent` of client keys to `version` beside the version that serves now (the stable one,
        pinned for the rollout's length); called again on the same candidate, change its share."""
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 < percent <= 100:
            self._refuse("canary", version, "invalid", "invalid_percent",
                         f"percent must be a number above 0 and at most 100, got {percent!r}", actor, audit)
        self._candidate("canary", version, actor, audit)
        current = self._rollout("canary", actor, audit)
        if current is not None and current.candidate != version:
            self._refuse("canary", version, "conflict", "rollout_in_progress",
                         f"{current.candidate} is in canary: promote or abort it first", actor, audit)
        stable = current.stable if current else self._stable(version, actor, audit)
        pinned_stable = current.pinned_stable if current else self.controller.pins.read().pin is None
        if current is None and pinned_stable:
            self._write_pin(stable, "canary", actor, audit)
        rollout = Rollout(version, stable, float(percent), current.started_at if current else now_iso(), actor,
                          pinned_stable)
        self._write_rollout("canary", rollout, actor, audit)
        self.audit.append("canary", actor=actor, version=version, percent=rollout.percent, stable=stable, **audit)
        self.controller.trigger("canary")
        return rollout

    def promote(self, version: str, actor: str, **audit: Any) -> Pin:
        """End `version`'s canary by making it serve everywhere (pinned, like an activation)."""
        current = self._in_canary("promote", version, actor, audit)
        self._candidate("promote", version, actor, audit)
        pin = self._write_pin(version, "promote", actor, audit)
        self._write_rollout("promote", None, actor, audit)
        self.audit.append("promote", actor=actor, version=version, stable=current.stable, percent=current.percent,
                          **audit)
        self.controller.trigger("promote")
        return pin

    def abort(self, version: str, reason: str, actor: str, **audit: Any) -> Rollout:
        """End `version`'s canary: its traffic back to the stable version, the candidate rejected as
        `rolled_back` with `reason` (until its files change), the pin the canary set removed."""
        current = self._in_canary("abort", version, actor, audit)
        inspection = self.controller.scan_now().versions.get(version)
        self._write_rollout("abort", None, actor, audit)
        if inspection is not None:
            audit["version_digest"] = _digest(inspection)
            self.controller.decisions.reject(inspection, LoadFailure(  # withdraws: it replaces the approval
                "rolled_back", f"canary aborted by {actor}: {reason}", withdraws=True), already_counted=True)
        if current.pinned_stable:
            try:
                self.controller.pins.clear()
            except OSError as exc:
                self._refuse("abort", version, "unavailable", "state_unavailable",
                             f"cannot remove the canary's pin: {exc.strerror or exc}", actor, audit)
        self.audit.append("abort", actor=actor, version=version, result="rolled_back", reason=reason,
                          stable=current.stable, **audit)
        self.controller.trigger("abort")
        return current

    def _rollout(self, action: str, actor: str, audit: dict[str, Any]) -> Rollout | None:
        rollout, error = self.rollouts.read()
        if error is not None:
            self._refuse(action, None, "unavailable", "state_unavailable", error, actor, audit)
        return rollout

    def _in_canary(self, action: str, version: str, actor: str, audit: dict[str, Any]) -> Rollout:
        current = self._rollout(action, actor, audit)
        if current is None or current.candidate != version:
            self._refuse(action, version, "conflict", "not_in_canary",
                         f"version {version} is not in canary" + (f" ({current.candidate} is)" if current else ""),
                         actor, audit)
        return current

    def _stable(self, version: str, actor: str, audit: dict[str, Any]) -> str:
        """The version every live worker serves now (a canary starts from a settled server)."""
        served = {worker.serving for worker in self.controller.reporter.board.live() if worker.serving}
        pin = self.controller.pins.read().pin
        if len(served) != 1 or (pin is not None and pin.version not in served):
            self._refuse("canary", version, "conflict", "switch_in_progress",
                         "the workers are switching versions: start the canary once they serve one", actor, audit)
        stable = served.pop()
        if stable == version:
            self._refuse("canary", version, "conflict", "already_serving", f"version {version} serves already",
                         actor, audit)
        return stable

    def _write_rollout(self, action: str, rollout: Rollout | None, actor: str, audit: dict[str, Any]) -> None:
        try:
            if rollout is None:
                self.rollouts.clear()
            else:
                self.rollouts.write(rollout)
        except OSError as exc:
            self._refuse(action, rollout.candidate if rollout else None, "unavailable", "state_unavailable",
                         f"cannot write the rollout file: {exc.strerror or exc}", actor, audit)


def _digest(inspection: Inspection | None) -> str | None:
    """The version digest of what the scan saw (None when its manifest cannot be read)."""
    if inspection is None:
        return None
    try:
        return version_digest(inspection.path)
    except OSError:
        return None
