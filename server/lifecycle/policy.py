"""Which version should serve, and what a failure means: the rules every worker and the admin API
apply to the same inputs. Pure functions of the scan, the verdicts and the pin; no I/O, no state.

Eligible versions are the whole versions on disk (state NEW in `server.lifecycle.source`) without a
standing rejection. They are preferred in this order:

1. the pinned version, if it is eligible (a pin on a rejected or missing version is reported and
   ignored - availability first: the workers keep serving the best version they can);
2. then every other eligible version, highest first.

A worker serves the first version of that list that it can load; a version that turns out to be
pending or is rejected on loading makes it try the next one, down to the version it already serves.

Rollback pins the highest eligible version below the one serving now (see `rollback_target`), so
repeated rollbacks walk down the versions one at a time; unpinning returns to "highest wins".

Signatures (`signature_refused`): a signature that says the version is not what its signer released
(tampered, incomplete, not genuine) or that was withdrawn (a revoked key or version) refuses the
version always; one that merely does not vouch for it (unsigned, a key outside the trust store or
not allowed for the pipeline) refuses it only when signatures are required (OCR_REQUIRE_SIGNATURE).
"""

from __future__ import annotations

from dataclasses import dataclass

from server.governance.verify import SignatureProblem, SignatureStatus
from server.lifecycle.pins import Pin
from server.lifecycle.source import Inspection, Scan
from server.lifecycle.states import VersionState
from server.lifecycle.verdicts import Verdict
from server.repository.layout import parse_version

# Longest wait between two attempts at a version that failed for a reason outside itself.
MAX_RETRY_DELAY_S = 300.0
# Signature problems that refuse a version whether signatures are required or not.
ALWAYS_REFUSED = frozenset({SignatureProblem.TAMPERED, SignatureProblem.INCOMPLETE, SignatureProblem.BAD_SIGNATURE,
                            SignatureProblem.REVOKED_KEY, SignatureProblem.REVOKED_VERSION})


@dataclass(frozen=True)
class Preference:
    order: list[str]  # versions to try, most preferred first
    pin_effective: bool
    pin_reason: str = ""  # why a pin is not honoured

    @property
    def desired(self) -> str | None:
        return self.order[0] if self.order else None


def rejected(scan: Scan, verdicts: dict[str, Verdict], version: str) -> Verdict | None:
    """The standing rejection of `version` (made on its current files), if there is one."""
    verdict = verdicts.get(version)
    if verdict is None or verdict.approved or verdict.fingerprint != scan.versions[version].fingerprint:
        return None
    return verdict


def eligible(scan: Scan, verdicts: dict[str, Verdict]) -> list[str]:
    """Eligible versions, highest first."""
    names = [name for name, inspection in scan.versions.items()
             if inspection.state is VersionState.NEW and rejected(scan, verdicts, name) is None]
    return sorted(names, key=parse_version, reverse=True)


def preference(scan: Scan, verdicts: dict[str, Verdict], pin: Pin | None) -> Preference:
    order = eligible(scan, verdicts)
    if pin is None:
        return Preference(order, pin_effective=False)
    if pin.version in order:
        order.remove(pin.version)
        return Preference([pin.version, *order], pin_effective=True)
    inspection = scan.versions.get(pin.version)
    if inspection is None:
        why = "the pinned version is not in the repository"
    elif inspection.state is not VersionState.NEW:
        why = f"the pinned version is {inspection.state.value}: {inspection.reason}"
    else:
        why = f"the pinned version was rejected: {verdicts[pin.version].reason}"
    return Preference(order, pin_effective=False, pin_reason=why)


def versions_to_try(chosen: Preference, scan: Scan, serving: str | None) -> list[str]:
    """The versions a worker serving `serving` tries, in order, this pass.

    A serving version whose files are changing or unreadable right now (a copy over it, a flaky mount)
    is PENDING: that is no reason to go down to an older version, so only what is preferred above it
    (the effective pin, or a higher version) may replace it until its files settle.
    """
    current = scan.versions.get(serving) if serving else None
    if serving is None or current is None or current.state is not VersionState.PENDING:
        return chosen.order
    return [v for v in chosen.order
            if (chosen.pin_effective and v == chosen.order[0]) or parse_version(v) > parse_version(serving)]


def rollback_target(
    scan: Scan, verdicts: dict[str, Verdict], pin: Pin | None, served: list[str]
) -> tuple[str | None, str | None]:
    """(the version rolled back from, the version a rollback pins - None when there is none below).

    Rolled back from: the preferred version, or the highest version a worker serves if that is lower
    (a new version still being loaded or about to be rejected is not what clients see yet).
    """
    current = preference(scan, verdicts, pin).desired
    if served:
        highest_served = max(served, key=parse_version)
        if current is None or parse_version(highest_served) < parse_version(current):
            current = highest_served
    if current is None:
        return None, None
    below = [name for name in eligible(scan, verdicts) if parse_version(name) < parse_version(current)]
    return current, (below[0] if below else None)


def gated_against_live(version: str, live: str, pin: Pin | None) -> bool:
    """Whether the gate compares `version` with the live version `live`, or holds it to its ceiling only.

    Against the live one whenever `version` would replace it by itself (a higher version: highest wins):
    an upgrade must not read worse. Not when a releaser pinned `version` below the live one (activate
    of an older version, a rollback): serving an older, perhaps weaker reader is what that call asks
    for, and PP-OCRv4, installed beside the better default, must stay one call away.
    """
    return pin is None or pin.version != version or parse_version(version) > parse_version(live)


def pin_refusal(inspection: Inspection, verdict: Verdict | None) -> tuple[str, str] | None:
    """Why `inspection` cannot be pinned, as (code, message): a rejected or pending version."""
    if inspection.state is VersionState.REJECTED:
        return "version_rejected", f"version {inspection.version} is rejected: {inspection.reason}"
    if verdict is not None and not verdict.approved and verdict.fingerprint == inspection.fingerprint:
        return "version_rejected", f"version {inspection.version} is rejected: {verdict.reason}"
    if inspection.state is VersionState.PENDING:
        return "version_not_ready", f"version {inspection.version} is not ready: {inspection.reason}"
    return None


def becomes_rejection(sticky: bool, standing: Verdict | None, withdraws: bool = False) -> bool:
    """Whether a failed load makes the version REJECTED machine-wide (else it is RETRYING here).

    Only a failure that says something about the version itself, and only for a version nobody has
    approved: a version other workers approved that fails on one worker is that worker's problem -
    unless the failure holds for every worker alike (`withdraws`: its signature no longer verifies).
    """
    return sticky and (withdraws or not (standing is not None and standing.approved))


def recheck_applies(serving_fingerprint: str, inspection: Inspection, verdict: Verdict | None) -> bool:
    """Whether the re-check of the serving version can say anything: not while its files are being
    changed or are others than those it was loaded from (the scan and the verdicts judge those), nor
    once it is rejected."""
    return (inspection.state is VersionState.NEW and inspection.fingerprint == serving_fingerprint
            and (verdict is None or verdict.approved or verdict.fingerprint != inspection.fingerprint))


def signature_refused(status: SignatureStatus, required: bool) -> bool:
    """Whether a version with this signature status may not serve (see the module docstring)."""
    return status.problem is not None and (required or status.problem in ALWAYS_REFUSED)


def retry_delay(failures: int, base_s: float) -> float:
    """Seconds before the next attempt after `failures` consecutive failures: doubling from `base_s`."""
    return min(MAX_RETRY_DELAY_S, base_s * 2 ** (failures - 1))
