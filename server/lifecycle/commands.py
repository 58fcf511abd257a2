"""Admin commands on the lifecycle: pin a version, unpin, roll back.

Each command checks its request against the same policy the workers apply (`server.lifecycle.policy`),
writes the shared pin file that every worker follows, records the outcome in the audit log (refusals
too) and wakes this worker's controller; the workers then switch in the background. Who may call a
command is the caller's business (the HTTP layer authenticates); a refusal is a `Refused` with a kind
the caller maps to its own answer.
"""

from __future__ import annotations

from typing import Any, NoReturn

from server.governance.audit import AuditLog
from server.lifecycle.controller import LifecycleController
from server.lifecycle.pins import Pin
from server.lifecycle.policy import pin_refusal, rollback_target
from server.repository.layout import VersionNameError, parse_version


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

    def pin(self, version: str, actor: str, **audit: Any) -> Pin:
        """Pin `version`: every worker serves it once loaded (it must be on disk, whole, not rejected)."""
        try:
            parse_version(version)
        except VersionNameError as exc:
            self._refuse("pin", version, "invalid", "invalid_version", str(exc), actor, audit)
        controller = self.controller
        inspection = controller.scan_now().versions.get(version)
        if inspection is None:
            self._refuse("pin", version, "not_found", "version_not_found",
                         f"version {version} is not in {controller.repo.pipeline_dir}", actor, audit)
        refusal = pin_refusal(inspection, controller.verdicts.get(version))
        if refusal is not None:
            self._refuse("pin", version, "conflict", *refusal, actor, audit)
        pin = self._write_pin(version, "pin", actor, audit)
        self.audit.append("pin", actor=actor, version=version, **audit)
        controller.trigger("pin")
        return pin

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
        current, target = rollback_target(controller.scan_now(), controller.verdicts.all(),
                                          controller.pins.read().pin, served)
        if target is None or current is None:
            self._refuse("rollback", current, "conflict", "no_rollback_target",
                         f"no eligible version below {current}" if current else "no version serves", actor, audit)
        pin = self._write_pin(target, "rollback", actor, audit)
        self.audit.append("rollback", actor=actor, version=target, previous=current, **audit)
        controller.trigger("rollback")
        return pin, current
