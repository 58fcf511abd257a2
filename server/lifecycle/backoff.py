"""Backoff: versions that failed to load here for a reason outside themselves, and when to try again.

Such a failure (an unreadable golden set, files that changed between the scan and the load) makes a
version RETRYING on this worker rather than REJECTED for all: it is tried again after a delay that
doubles with each consecutive failure (`server.lifecycle.policy.retry_delay`). Attempts are keyed by
version and fingerprint, so new files are tried at once.
"""

from __future__ import annotations

import time

from server.lifecycle.policy import retry_delay


class Backoff:
    def __init__(self, base_s: float) -> None:
        self.base_s = base_s
        self._attempts: dict[tuple[str, str], tuple[int, float]] = {}  # -> (failures, next attempt, monotonic)
        self._errors: dict[str, str] = {}  # version -> last failure, with when it is retried

    def waiting(self, version: str, fingerprint: str) -> bool:
        """Whether `version` (these files) failed recently and its next attempt is not due yet."""
        entry = self._attempts.get((version, fingerprint))
        return entry is not None and time.monotonic() < entry[1]

    def failed(self, version: str, fingerprint: str, reason: str) -> None:
        failures = self._attempts.get((version, fingerprint), (0, 0.0))[0] + 1
        delay = retry_delay(failures, self.base_s)
        self._attempts[(version, fingerprint)] = (failures, time.monotonic() + delay)
        self._errors[version] = f"{reason} (retry {failures} in {delay:.0f}s)"

    def succeeded(self, version: str, fingerprint: str) -> None:
        self._attempts.pop((version, fingerprint), None)
        self._errors.pop(version, None)

    def errors(self) -> dict[str, str]:
        """Version -> the failure it is being retried for (for the worker board)."""
        return dict(self._errors)
