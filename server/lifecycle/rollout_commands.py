"""The canary's admin commands: start one or change its share, promote its candidate, abort it.

Like the other commands (`server.lifecycle.commands`), each checks its request, writes the shared
state file every worker follows (here the rollout, `server.lifecycle.rollout`, and the pin), records
its outcome in the audit log, refusals too, and wakes this worker's controller. Ending a canary
stores its A/B report (`server.lifecycle.ab_report`) and puts the report's digest in the audit record.
The judge (`server.lifecycle.judging`) ends canaries through the same calls, as `JUDGE_ACTOR`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from server.lifecycle.ab_report import RolloutReports
from server.lifecycle.commands import Commands, version_digest_of
from server.lifecycle.loader import LoadFailure
from server.lifecycle.pins import Pin
from server.lifecycle.rollout import Rollout, RolloutStore
from server.observability.metrics import ROLLOUT_DECISIONS, ROLLOUT_ROLLBACKS
from server.repository.manifest import now_iso

log = logging.getLogger(__name__)
# Who ends a canary without being a person (the `actor` of its audit records).
JUDGE_ACTOR = "rollout-judge"


class RolloutCommands:
    def __init__(self, commands: Commands, store: RolloutStore, reports: RolloutReports,
                 promote_requires_report: bool = False, bake_s: float = 0.0) -> None:
        self.commands = commands
        self.controller = commands.controller
        self.audit = commands.audit
        self.store = store
        self.reports = reports
        self.promote_requires_report = promote_requires_report
        self.bake_s = bake_s

    def canary(self, version: str, percent: object, actor: str, shadow_percent: object = 0, **audit: Any) -> Rollout:
        """Send `percent` of client keys to `version` beside the version that serves now (the stable one,
        pinned for the rollout's length), and have it also read `shadow_percent` of the other requests,
        unseen; called again on the same candidate, change the shares."""
        share, shadow = (self._share(version, name, value, actor, audit)
                         for name, value in (("percent", percent), ("shadow_percent", shadow_percent)))
        if not share and not shadow:
            self.commands.refuse("canary", version, "invalid", "invalid_percent",
                                 "give the candidate a share: percent, shadow_percent or both above 0", actor, audit)
        self.commands.candidate("canary", version, actor, audit)
        current = self._rollout("canary", actor, audit)
        if current is not None and current.candidate != version:
            self.commands.refuse("canary", version, "conflict", "rollout_in_progress",
                                 f"{current.candidate} is in canary: promote or abort it first", actor, audit)
        stable = current.stable if current else self._stable(version, actor, audit)
        pinned_stable = current.pinned_stable if current else self.controller.pins.read().pin is None
        if current is None and pinned_stable:
            self.commands.write_pin(stable, "canary", actor, audit)
        rollout = Rollout(version, stable, share, current.started_at if current else now_iso(), actor, pinned_stable,
                          shadow)
        self._write_rollout("canary", rollout, actor, audit)
        self.audit.append("canary", actor=actor, version=version, percent=rollout.percent,
                          shadow_percent=rollout.shadow_percent, stable=stable, **audit)
        self.controller.trigger("canary")
        return rollout

    def promote(self, version: str, actor: str, **audit: Any) -> Rollout | Pin:
        """Promote `version`'s candidate (with `promote_requires_report`, only once the judge passes it on
        these very versions). Without a bake period it is pinned at once (returns the pin). With one, its
        canary becomes a bake: every client reads with it while the stable version stays loaded and
        pinned (returns the rollout); the bake's end pins it (`complete_bake`), and so does a second
        promote."""
        current = self._in_canary("promote", version, actor, audit)
        if current.phase == "bake":
            return self.complete_bake(version, actor, **audit)
        self.commands.candidate("promote", version, actor, audit)
        judgement = self.reports.judge(current)
        if self.promote_requires_report and judgement.decision != "passed":
            self.commands.refuse("promote", version, "conflict", "report_not_passing",
                                 f"the A/B report of {version} against {current.stable} does not pass yet "
                                 f"({judgement.decision}: {judgement.rule}); OCR_PROMOTE_REQUIRES_REPORT is set",
                                 actor, audit)
        report = self.reports.build(current, judgement, "promoted", actor)
        if self.bake_s > 0:
            until = datetime.fromtimestamp(time.time() + self.bake_s, timezone.utc).isoformat(timespec="seconds")
            baking = replace(current, percent=100.0, shadow_percent=0.0, phase="bake", bake_until=until)
            self._write_rollout("promote", baking, actor, audit)
            report["bake_until"] = until
        else:
            pin = self.commands.write_pin(version, "promote", actor, audit)
            self._write_rollout("promote", None, actor, audit)
        digest = self._save_report(report)
        ROLLOUT_DECISIONS.labels(decision="promoted", by=_by(actor)).inc()
        self.audit.append("promote", actor=actor, version=version, stable=current.stable, percent=current.percent,
                          report_digest=digest, judge=judgement.decision, bake_until=report.get("bake_until"),
                          **audit)
        self.controller.trigger("promote")
        return baking if self.bake_s > 0 else pin

    def complete_bake(self, version: str, actor: str, **audit: Any) -> Pin:
        """End `version`'s bake: it is pinned, and the previous version is freed once no request holds it."""
        current = self._in_canary("bake_complete", version, actor, audit)
        pin = self.commands.write_pin(version, "promote", actor, audit)
        self._write_rollout("bake_complete", None, actor, audit)
        report = self.reports.build(current, self.reports.judge(current), "promoted", actor)
        report["baked_until"] = now_iso()
        digest = self._save_report(report)
        self.audit.append("bake_complete", actor=actor, version=version, stable=current.stable, report_digest=digest,
                          **audit)
        self.controller.trigger("bake_complete")
        return pin

    def rollback_bake(self, actor: str, **audit: Any) -> tuple[Rollout, Pin | None] | None:
        """During a bake, roll the promoted version back: every client to the previous version at once
        (still loaded), the promoted one rejected; (the bake ended, the pin now), or None when no bake runs."""
        current, _ = self.store.read()
        if current is None or current.phase != "bake":
            return None
        ended = self.abort(current.candidate, "rolled back during its bake period", actor, **audit)
        return ended, self.controller.pins.read().pin

    def abort(self, version: str, reason: str, actor: str, metric: str = "manual", **audit: Any) -> Rollout:
        """End `version`'s canary: its traffic back to the stable version, the candidate rejected as
        `rolled_back` with `reason` (until its files change), the pin the canary set removed. `metric`:
        what regressed, when the judge aborts."""
        current = self._in_canary("abort", version, actor, audit)
        inspection = self.controller.scan_now().versions.get(version)
        report = self.reports.build(current, self.reports.judge(current), "rolled_back", actor)  # with its gate
        report["reason"] = reason
        if inspection is not None:  # rejected first: whoever sees the canary ended sees why
            audit["version_digest"] = version_digest_of(inspection)
            self.controller.decisions.reject(inspection, LoadFailure(  # withdraws: it replaces the approval
                "rolled_back", f"canary aborted by {actor}: {reason}", withdraws=True), already_counted=True)
        self._write_rollout("abort", None, actor, audit)
        if current.pinned_stable:
            try:
                self.controller.pins.clear()
            except OSError as exc:
                self.commands.refuse("abort", version, "unavailable", "state_unavailable",
                                     f"cannot remove the canary's pin: {exc.strerror or exc}", actor, audit)
        digest = self._save_report(report)
        ROLLOUT_DECISIONS.labels(decision="rolled_back", by=_by(actor)).inc()
        ROLLOUT_ROLLBACKS.labels(metric=metric).inc()
        self.audit.append("abort", actor=actor, version=version, result="rolled_back", reason=reason,
                          stable=current.stable, metric=metric, report_digest=digest, **audit)
        self.controller.trigger("abort")
        return current

    def _share(self, version: str, name: str, value: object, actor: str, audit: dict[str, Any]) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            self.commands.refuse("canary", version, "invalid", "invalid_percent",
                                 f"{name} must be a number from 0 to 100, got {value!r}", actor, audit)
        return float(value)

    def _save_report(self, report: dict[str, Any]) -> str | None:
        """Store the report; a state directory that cannot take it must not undo the decision (logged)."""
        try:
            return self.reports.save(report)
        except OSError as exc:
            log.error("cannot store the A/B report of %s: %s", report["candidate"]["version"], exc)
            return None

    def _rollout(self, action: str, actor: str, audit: dict[str, Any]) -> Rollout | None:
        rollout, error = self.store.read()
        if error is not None:
            self.commands.refuse(action, None, "unavailable", "state_unavailable", error, actor, audit)
        return rollout

    def _in_canary(self, action: str, version: str, actor: str, audit: dict[str, Any]) -> Rollout:
        current = self._rollout(action, actor, audit)
        if current is None or current.candidate != version:
            also = f" ({current.candidate} is)" if current else ""
            self.commands.refuse(action, version, "conflict", "not_in_canary", f"version {version} is not in canary{also}",
                                 actor, audit)
        return current

    def _stable(self, version: str, actor: str, audit: dict[str, Any]) -> str:
        """The version every live worker serves now (a canary starts from a settled server)."""
        served = {worker.serving for worker in self.controller.reporter.board.live() if worker.serving}
        pin = self.controller.pins.read().pin
        if len(served) != 1 or (pin is not None and pin.version not in served):
            self.commands.refuse("canary", version, "conflict", "switch_in_progress",
                                 "the workers are switching versions: start the canary once they serve one",
                                 actor, audit)
        stable = served.pop()
        if stable == version:
            self.commands.refuse("canary", version, "conflict", "already_serving", f"version {version} serves already",
                                 actor, audit)
        return stable

    def _write_rollout(self, action: str, rollout: Rollout | None, actor: str, audit: dict[str, Any]) -> None:
        try:
            if rollout is None:
                self.store.clear()
            else:
                self.store.write(rollout)
        except OSError as exc:
            self.commands.refuse(action, rollout.candidate if rollout else None, "unavailable", "state_unavailable",
                                 f"cannot write the rollout file: {exc.strerror or exc}", actor, audit)


def _by(actor: str) -> str:
    return "judge" if actor == JUDGE_ACTOR else "releaser"
