"""Turning a load's outcome into machine-wide decisions: an approval, a rejection, or a retry.

Both loads a worker makes - the version it serves and a canary candidate beside it
(`server.lifecycle.canary`) - end here, so both decide alike: the first worker's verdict on a set of
files stands and the others follow it, and only a failure that says the version itself is bad
(`policy.becomes_rejection`) rejects it; any other is retried with backoff.
"""

from __future__ import annotations

from server.lifecycle.backoff import Backoff
from server.lifecycle.loader import Loaded, LoadFailure
from server.lifecycle.policy import becomes_rejection
from server.lifecycle.reporting import Reporter
from server.lifecycle.source import Inspection
from server.lifecycle.states import VersionState
from server.lifecycle.verdicts import Verdict, VerdictStore


class Decisions:
    def __init__(self, verdicts: VerdictStore, reporter: Reporter, backoff: Backoff) -> None:
        self.verdicts = verdicts
        self.reporter = reporter
        self.backoff = backoff

    def approve(self, inspection: Inspection, loaded: Loaded) -> None:
        """Record the approval machine-wide; if another worker decided otherwise first, follow it."""
        reason = str(loaded.gate.get("reason", ""))
        standing, created = self.verdicts.record(Verdict(
            inspection.version, inspection.fingerprint, VersionState.READY, "success", reason, loaded.gate,
            loaded.networks, loaded.signature, decided_by=self.reporter.actor))
        if created:
            self.reporter.approved(inspection.version, loaded)
        elif not standing.approved:
            loaded.model.close()
            raise LoadFailure(standing.result, standing.reason)

    def failed(self, inspection: Inspection, standing: Verdict | None, failure: LoadFailure) -> None:
        self.reporter.load_failed(inspection.version, failure)
        if becomes_rejection(failure.sticky, standing, failure.withdraws):
            self.reject(inspection, failure, already_counted=True)
        else:
            self.backoff.failed(inspection.version, inspection.fingerprint, failure.reason)

    def reject(self, inspection: Inspection, failure: LoadFailure, already_counted: bool) -> None:
        _, created = self.verdicts.record(Verdict(
            inspection.version, inspection.fingerprint, VersionState.REJECTED, failure.code, failure.reason,
            failure.gate, signature=failure.signature, decided_by=self.reporter.actor), failure.withdraws)
        if created:
            self.reporter.rejected(inspection.version, failure, already_counted)
