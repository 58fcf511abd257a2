"""Admin commands on the lifecycle: pin a version, unpin, roll back, request a promotion (the canary's
own are `server.lifecycle.rollout_commands`).

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
from server.lifecycle.pins import Pin
from server.lifecycle.policy import pin_refusal, rollback_target
from server.lifecycle.promotions import PromotionStore
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

    def refuse(self, action: str, version: str | None, kind: str, code: str, message: str, actor: str,
                audit: dict[str, Any]) -> NoReturn:
        self.audit.append(action, actor=actor, version=version, result="refused", reason=message, **audit)
        raise Refused(kind, code, message)

    def write_pin(self, version: str, action: str, actor: str, audit: dict[str, Any]) -> Pin:
        try:
            return self.controller.pins.write(version, actor, action=action)
        except OSError as exc:  # e.g. a read-only state directory: the workers could not learn of the pin
            self.refuse(action, version, "unavailable", "state_unavailable",
                         f"cannot write the pin file: {exc.strerror or exc}", actor, audit)

    def candidate(self, action: str, version: str, actor: str, audit: dict[str, Any]) -> Inspection:
        """`version` as on disk, if it may be made to serve (a whole version, not rejected)."""
        try:
            parse_version(version)
        except VersionNameError as exc:
            self.refuse(action, version, "invalid", "invalid_version", str(exc), actor, audit)
        controller = self.controller
        inspection = controller.scan_now().versions.get(version)
        if inspection is None:
            self.refuse(action, version, "not_found", "version_not_found",
                         f"version {version} is not in {controller.repo.pipeline_dir}", actor, audit)
        audit["version_digest"] = version_digest_of(inspection)
        refusal = pin_refusal(inspection, controller.verdicts.get(version))
        if refusal is not None:
            self.refuse(action, version, "conflict", *refusal, actor, audit)
        return inspection

    def pin(self, version: str, actor: str, **audit: Any) -> Pin:
        """Pin `version`: every worker serves it once loaded (it must be on disk, whole, not rejected)."""
        self.candidate("pin", version, actor, audit)
        pin = self.write_pin(version, "pin", actor, audit)
        self.audit.append("pin", actor=actor, version=version, **audit)
        self.controller.trigger("pin")
        return pin

    def request_promotion(self, version: str, actor: str, **audit: Any) -> PromotionRequest:
        """Record that `actor` asks for `version` to serve (what the four-eyes rule looks at)."""
        self.candidate("request_promotion", version, actor, audit)
        request = PromotionRequest(version, actor, now_iso())
        try:
            self.promotions.add(request)
        except OSError as exc:
            self.refuse("request_promotion", version, "unavailable", "state_unavailable",
                         f"cannot record the request: {exc.strerror or exc}", actor, audit)
        self.audit.append("request_promotion", actor=actor, version=version, **audit)
        return request

    def unpin(self, actor: str, **audit: Any) -> str | None:
        """Remove the pin (back to "highest eligible version wins"); returns the version it pinned."""
        try:
            before = self.controller.pins.clear()
        except OSError as exc:
            self.refuse("unpin", None, "unavailable", "state_unavailable",
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
            self.refuse("rollback", current, "conflict", "no_rollback_target",
                         f"no eligible version below {current}" if current else "no version serves", actor, audit)
        pin = self.write_pin(target, "rollback", actor, audit)
        self.audit.append("rollback", actor=actor, version=target, previous=current,
                          version_digest=version_digest_of(scan.versions.get(target)), **audit)
        controller.trigger("rollback")
        return pin, current


def version_digest_of(inspection: Inspection | None) -> str | None:
    """The version digest of what the scan saw (None when its manifest cannot be read)."""
    if inspection is None:
        return None
    try:
        return version_digest(inspection.path)
    except OSError:
        return None
