"""Which version should serve: the one rule every worker and the admin API apply to the same inputs.

Eligible versions are the candidates on disk (see `server.repository.candidates`) without a standing
rejection. They are preferred in this order:

1. the pinned version, if it is eligible (a pin on a rejected or missing version is reported and
   ignored - availability first: the workers keep serving the best version they can);
2. then every other eligible version, highest first.

A worker serves the first version of that list that it can load; a candidate that turns out to be
pending or is rejected on loading makes it try the next one, down to the version it already serves.

Rollback pins the highest eligible version below the one serving now (see `rollback_target`), so
repeated rollbacks walk down the versions one at a time; unpinning returns to "highest wins".
"""

from __future__ import annotations

from dataclasses import dataclass

from server.lifecycle.pins import Pin
from server.lifecycle.verdicts import Verdict
from server.repository.candidates import Readiness, Scan
from server.repository.layout import parse_version


@dataclass(frozen=True)
class Preference:
    order: list[str]  # versions to try, most preferred first
    pin_effective: bool
    pin_reason: str = ""  # why a pin is not honoured

    @property
    def desired(self) -> str | None:
        return self.order[0] if self.order else None


def rejected(scan: Scan, verdicts: dict[str, Verdict], version: str) -> bool:
    inspection = scan.versions[version]
    verdict = verdicts.get(version)
    return verdict is not None and verdict.fingerprint == inspection.fingerprint and not verdict.approved


def eligible(scan: Scan, verdicts: dict[str, Verdict]) -> list[str]:
    """Eligible versions, highest first."""
    names = [name for name, inspection in scan.versions.items()
             if inspection.readiness is Readiness.CANDIDATE and not rejected(scan, verdicts, name)]
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
    elif inspection.readiness is not Readiness.CANDIDATE:
        why = f"the pinned version is {inspection.readiness.value}: {inspection.reason}"
    else:
        verdict = verdicts[pin.version]
        why = f"the pinned version was rejected: {verdict.reason}"
    return Preference(order, pin_effective=False, pin_reason=why)


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
