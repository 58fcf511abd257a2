"""Verdicts: the machine-wide decision on each version, made once and followed by every worker.

The first worker to evaluate a version (verify, load, warm up, gate) records whether it is approved or
rejected and why. The others follow that record instead of repeating the work, so workers never
disagree about a version, a rejected version is not retried by the next worker, and a restart does not
re-admit a version that was rejected (readiness after a restart is therefore predictable).

A verdict holds for one fingerprint of the version's files: when the files change, the verdict no
longer applies and the version is evaluated afresh ("rejected until its files change").
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from server.lifecycle.states import VersionState
from server.repository.layout import is_version_name
from server.repository.manifest import now_iso
from server.storage.locks import locked
from server.storage.statefiles import StateFileError, read_json, write_json_atomic

log = logging.getLogger(__name__)

# A verdict's state as its file (and the admin API) spells it: "decision".
_DECISIONS = {VersionState.READY: "approved", VersionState.REJECTED: "rejected"}


@dataclass(frozen=True)
class Verdict:
    version: str
    fingerprint: str
    state: VersionState  # READY (approved) or REJECTED
    result: str  # why, as a short code: success, verify_failed, load_error, crashed, gate_rejected, invalid
    reason: str = ""
    gate: dict[str, Any] | None = None
    networks: str | None = None  # digest of the network files, known to open without crashing if approved
    signature: dict[str, Any] | None = None  # the signature check it was decided with (SignatureStatus.to_json)
    decided_by: str = ""
    decided_at: str = field(default_factory=now_iso)
    served_at: str | None = None  # first time a worker served it

    @property
    def approved(self) -> bool:
        return self.state is VersionState.READY

    @property
    def decision(self) -> str:
        return _DECISIONS[self.state]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["state"]
        return {"version": self.version, "fingerprint": self.fingerprint, "decision": self.decision, **data}

    @classmethod
    def from_json(cls, data: Any) -> "Verdict":
        if not isinstance(data, dict):
            raise StateFileError("a verdict must be a JSON object")
        states = {spelt: state for state, spelt in _DECISIONS.items()}
        if data.get("decision") not in states:
            raise StateFileError(f"bad verdict: decision must be one of {', '.join(states)}")
        known = set(cls.__dataclass_fields__) - {"state"}
        try:
            return cls(state=states[data["decision"]], **{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise StateFileError(f"bad verdict: {exc}") from exc


class VerdictStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, version: str) -> Path:
        return self.directory / f"{version}.json"

    def get(self, version: str) -> Verdict | None:
        try:
            data = read_json(self._path(version))
            return Verdict.from_json(data) if data is not None else None
        except (StateFileError, OSError) as exc:
            log.warning("ignoring verdict of %s: %s", version, exc)
            return None

    def current(self, version: str, fingerprint: str) -> Verdict | None:
        """The verdict on `version` if it was made on these very files."""
        verdict = self.get(version)
        return verdict if verdict is not None and verdict.fingerprint == fingerprint else None

    def all(self) -> dict[str, Verdict]:
        verdicts = {}
        try:
            names = [p.stem for p in self.directory.glob("*.json")]
        except OSError:
            return {}
        for name in names:
            if is_version_name(name) and (verdict := self.get(name)) is not None:
                verdicts[name] = verdict
        return verdicts

    def record(self, verdict: Verdict, replace_approval: bool = False) -> tuple[Verdict, bool]:
        """Record `verdict` unless one already stands for the same files (with `replace_approval`, a
        rejection replaces a standing approval: a failure that holds for every worker, such as a
        signature that no longer verifies).

        Returns the verdict that stands and whether this call made it: exactly one worker gets True,
        which is the one that writes the audit line. If the state directory cannot be written, the
        verdict holds for this worker only (logged): serving must not depend on sharing.
        """
        try:
            with locked(self.directory / ".lock"):
                existing = self.current(verdict.version, verdict.fingerprint)
                replaces = replace_approval and existing is not None and existing.approved and not verdict.approved
                if existing is not None and not replaces:
                    return existing, False
                write_json_atomic(self._path(verdict.version), verdict.to_json())
                return verdict, True
        except OSError as exc:
            log.error("cannot record the verdict on %s in %s: %s", verdict.version, self.directory, exc)
            return verdict, True

    def mark_served(self, version: str, fingerprint: str) -> None:
        """Note that the version has served (the API then calls it "retired" once replaced)."""
        try:
            with locked(self.directory / ".lock"):
                existing = self.current(version, fingerprint)
                if existing is not None and existing.served_at is None:
                    write_json_atomic(self._path(version), replace(existing, served_at=now_iso()).to_json())
        except OSError as exc:
            log.error("cannot update the verdict on %s in %s: %s", version, self.directory, exc)
