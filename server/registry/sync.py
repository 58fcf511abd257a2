"""The registry sync: make this machine's repository and pin follow an MLflow registered model.

One pass (`Syncer.sync_once`):

1. list the registered model's versions and aliases (one failure here fails the pass, and nothing
   local changes: the workers keep serving what they serve);
2. copy each READY version tagged with one of our version names (`server.registry.tags`; the first
   registered, when several claim one name) that is not on disk yet into the repository through the
   publishing protocol (`publish_exact`: a dot-named staging directory, every checksum, the
   manifest's digest against the `ocr.version_digest` tag, one atomic rename), manifest and model.sig
   byte for byte, so a synced version verifies - checksums and signature - exactly as the one that
   was pushed. The workers then see it as they see any published version, and judge it (signature,
   probe, gate) themselves. A download that fails is retried with backoff; a version already on disk
   under the same name with another digest is a conflict, never overwritten (versions are immutable);
3. `@champion` is the pin: its version is copied first, and once it is on disk `pin.json` names it
   (actor `system:mlflow`, audited) and every worker moves to it. The registry wins: a pin set by
   hand on this machine is replaced at the next pass while the alias names another version. When the
   alias is removed, a pin the sync wrote is removed too (back to "highest approved version wins");
   a hand-set pin then stays;
4. `@challenger` is offered to the delivery hook (`server.registry.candidates`);
5. the status file (`server.registry.status`) and the metrics say what happened.

`run` repeats passes every `poll_s`, and after failures backs off (doubling, up to 5 minutes), so a
registry that is down costs one request per attempt and never stops serving.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

from server.governance.audit import AuditLog
from server.governance.verify import version_digest
from server.lifecycle.backoff import Backoff
from server.lifecycle.pins import PinStore
from server.lifecycle.policy import retry_delay
from server.lifecycle.statedir import StatePaths
from server.observability import metrics
from server.registry.candidates import Candidate, ChallengerHook
from server.registry.client import READY, RegistryError, RegistryVersion, redact
from server.registry.status import SyncStatus, VersionRecord, now_iso
from server.registry.tags import TAG_DIGEST, TAG_PIPELINE
from server.repository.layout import ModelRepository, is_version_name
from server.repository.manifest import SIGNATURE_NAME
from server.repository.publish import PublishError, publish_exact

log = logging.getLogger(__name__)

ACTOR = "system:mlflow"
CHAMPION = "champion"
CHALLENGER = "challenger"
STAGING_LABEL = "mlflow"  # in the names of the sync's staging directories: .staging-<version>-mlflow-*


class Registry(Protocol):
    tracking_uri: str
    model: str

    def versions(self) -> list[RegistryVersion]: ...

    def aliases(self) -> dict[str, str]: ...

    def download(self, version: RegistryVersion, dest: Path) -> None: ...


class Syncer:
    def __init__(self, registry: Registry, repo: ModelRepository, state: StatePaths, audit: AuditLog,
                 challenger: ChallengerHook, poll_s: float) -> None:
        self.registry = registry
        self.repo = repo
        self.state = state
        self.audit = audit
        self.challenger = challenger
        self.poll_s = poll_s
        self.pins = PinStore(state.pin_file)
        self.downloads = Backoff(poll_s)  # per (version, MLflow number): failed copies wait before a retry
        self.status = SyncStatus("mlflow", redact(registry.tracking_uri), registry.model, os.getpid())
        self._source = {"registry": self.status.tracking_uri, "mlflow_model": registry.model}

    # -- one pass -------------------------------------------------------------------------------
    def sync_once(self) -> bool:
        """One pass; False when the registry could not be read (nothing local changed then)."""
        self.status.last_attempt = now_iso()
        try:
            listed = self.registry.versions()
            aliases = self.registry.aliases()
        except RegistryError as exc:
            self._failed(str(exc))
            return False
        # Our name -> the MLflow version that holds it: the first registered, when several claim one.
        owners: dict[str, str] = {}
        for version in listed:
            if version.name and version.status == READY:
                owners.setdefault(version.name, version.number)
        # The champion first, and pinned as soon as it is on disk: a worker that sees the other new
        # versions then never starts on the highest of them instead.
        champion = aliases.get(CHAMPION)
        records: dict[str, VersionRecord] = {}
        for version in sorted(listed, key=lambda v: (v.number != champion, int(v.number))):
            records[version.number] = self._sync_version(version, owners)
            if version.number == champion:
                self.status.champion = self._follow_champion(champion, records)
        if champion not in records:
            self.status.champion = self._follow_champion(champion, records)
        self.status.versions = [records[v.number] for v in listed]
        self.status.aliases = aliases
        self.status.challenger = self._offer_challenger(aliases.get(CHALLENGER), records)
        if self.status.consecutive_failures:
            log.info("registry %s reachable again after %d failed passes", self.status.tracking_uri,
                     self.status.consecutive_failures)
        self.status.state, self.status.error, self.status.consecutive_failures = "ok", None, 0
        self.status.last_success = self.status.last_attempt
        metrics.REGISTRY_PASSES.labels(result="ok").inc()
        metrics.REGISTRY_UP.set(1)
        metrics.REGISTRY_LAST_SUCCESS.set(time.time())
        return True

    def _failed(self, error: str) -> None:
        self.status.state, self.status.error = "failing", error
        self.status.consecutive_failures += 1
        metrics.REGISTRY_PASSES.labels(result="failed").inc()
        metrics.REGISTRY_UP.set(0)
        log.warning("registry %s: %s (pass %d in a row to fail; serving goes on with what is on disk)",
                    self.status.tracking_uri, error, self.status.consecutive_failures)

    def _sync_version(self, version: RegistryVersion, owners: dict[str, str]) -> VersionRecord:
        name = version.name
        record = VersionRecord(version.number, name, "skipped")
        if name is None or not is_version_name(name):
            record.reason = "no ocr.version tag naming a version (register versions with `ocr-server models push`)"
            return record
        pipeline = version.tags.get(TAG_PIPELINE, self.repo.pipeline)
        if pipeline != self.repo.pipeline:
            record.reason = f"a version of pipeline {pipeline}, not {self.repo.pipeline}"
            return record
        if version.status != READY:
            record.state, record.reason = "registering", f"MLflow status {version.status}"
            return record
        if owners.get(name) != version.number:
            record.state, record.reason = "conflict", f"{name} is already MLflow version {owners.get(name)}"
            return record
        expected = version.tags.get(TAG_DIGEST)
        if not expected:
            record.reason = "no ocr.version_digest tag: its copy could not be checked"
            return record
        target = self.repo.version_dir(name)
        if target.exists():
            return self._compare(record, target, expected)
        key = (name, version.number)
        if self.downloads.waiting(*key):
            record.state, record.reason = "failed", self.downloads.errors().get(name, "")
            return record
        try:
            publish_exact(self.repo, name, lambda staging: self._download(version, staging, expected), STAGING_LABEL)
        except (RegistryError, PublishError, OSError) as exc:
            self.downloads.failed(*key, str(exc))
            metrics.REGISTRY_DOWNLOADS.labels(result="failed").inc()
            record.state, record.reason = "failed", self.downloads.errors()[name]
            log.warning("registry: cannot copy MLflow version %s (%s): %s", version.number, name, exc)
            return record
        self.downloads.succeeded(*key)
        metrics.REGISTRY_DOWNLOADS.labels(result="published").inc()
        record.state, record.signed = "synced", (target / SIGNATURE_NAME).is_file()
        self.audit.append("publish", actor=ACTOR, version=name, version_digest=expected, source="mlflow",
                          mlflow_version=version.number, run_id=version.run_id, signed=record.signed, **self._source)
        log.info("registry: MLflow version %s published as %s (%s)", version.number, name,
                 "signed" if record.signed else "unsigned")
        return record

    def _download(self, version: RegistryVersion, staging: Path, expected_digest: str) -> None:
        self.registry.download(version, staging)
        try:
            digest = version_digest(staging)
        except OSError as exc:
            raise PublishError(f"MLflow version {version.number} has no readable manifest.json: {exc}") from exc
        if digest != expected_digest:
            raise PublishError(f"its manifest's sha256 is {digest}, the registry's ocr.version_digest tag says "
                               f"{expected_digest}")

    @staticmethod
    def _compare(record: VersionRecord, target: Path, expected: str) -> VersionRecord:
        try:
            local = version_digest(target)
        except OSError as exc:
            record.state, record.reason = "conflict", f"{target} is on disk but its manifest is unreadable: {exc}"
            return record
        if local != expected:
            record.state = "conflict"
            record.reason = (f"{record.version} on disk has manifest sha256 {local}, the registry's has {expected}; "
                             "versions are immutable: register the new files under a new version name")
            return record
        record.state, record.signed = "synced", (target / SIGNATURE_NAME).is_file()
        return record

    # -- aliases --------------------------------------------------------------------------------
    def _follow_champion(self, number: str | None, records: dict[str, VersionRecord]) -> dict[str, Any]:
        current = self.pins.read().pin
        if number is None:
            if current is not None and current.actor == ACTOR:
                self.pins.clear()
                self.audit.append("unpin", actor=ACTOR, version=current.version,
                                  reason=f"@{CHAMPION} was removed in the registry", **self._source)
                log.info("registry: @%s removed; pin on %s removed", CHAMPION, current.version)
            return {}
        record = records.get(number)
        view: dict[str, Any] = {"mlflow_version": number, "version": record.version if record else None}
        if record is None or record.state != "synced" or not record.version:
            why = record.reason if record else "not in the registry's list of versions"
            return {**view, "applied": False, "reason": f"not on this machine: {why}"}
        if current is None or current.version != record.version:
            try:
                self.pins.write(record.version, ACTOR)
            except OSError as exc:
                return {**view, "applied": False, "reason": f"cannot write the pin: {exc.strerror or exc}"}
            self.audit.append("pin", actor=ACTOR, version=record.version,
                              reason=f"@{CHAMPION} is MLflow version {number}", mlflow_version=number,
                              previous=current.version if current else None,
                              previous_actor=current.actor if current else None, **self._source)
            log.info("registry: @%s is MLflow version %s: pinned %s (was %s)", CHAMPION, number, record.version,
                     current.version if current else "unpinned")
        return {**view, "applied": True}

    def _offer_challenger(self, number: str | None, records: dict[str, VersionRecord]) -> dict[str, Any]:
        record = records.get(number) if number else None
        candidate = None
        if record is not None and record.state == "synced" and record.version:
            candidate = Candidate(record.version, record.mlflow_version, self.repo.version_dir(record.version))
        outcome = self.challenger.offer(candidate)
        if number is None:
            return {}
        view = {"mlflow_version": number, "version": record.version if record else None, **outcome}
        if candidate is None:
            view["reason"] = f"not on this machine: {record.reason if record else 'not in the list of versions'}"
        return view

    # -- the loop -------------------------------------------------------------------------------
    def run(self, stop: threading.Event, keep_going: Callable[[], bool] = lambda: True) -> None:
        """Pass after pass until `stop` is set or `keep_going()` turns False (the parent died)."""
        while not stop.is_set() and keep_going():
            ok = self.sync_once()
            delay = self.poll_s if ok else retry_delay(self.status.consecutive_failures, self.poll_s)
            self.status.next_attempt = (datetime.now(timezone.utc) + timedelta(seconds=delay)).isoformat(
                timespec="seconds")
            self.write_status()
            deadline = time.monotonic() + delay
            while not stop.is_set() and keep_going() and time.monotonic() < deadline:
                stop.wait(min(1.0, max(0.0, deadline - time.monotonic())))

    def write_status(self) -> None:
        try:
            self.status.write(self.state.registry_file)
        except OSError as exc:
            log.error("registry: cannot write %s: %s", self.state.registry_file, exc)
