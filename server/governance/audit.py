"""The audit log: one JSON line per lifecycle event, appended by every process of the machine.

Fields of every line: `time` (UTC, ISO 8601 with milliseconds), `actor` (who caused it: `worker-N`,
`api:<client address>`, `cli:<user@host>`), `action`, `version`, `result`, `reason`; some lines add
details (`worker`, `pid`, timings, gate figures). Actions:

    publish   a version was published with `ocr-server models publish`
    reject    a version was rejected (recorded once per version and fingerprint, machine-wide)
    approve   a version passed verification, warm-up and the quality gate (once, machine-wide)
    load      a worker loaded a version (result success) or failed to (result = failure code)
    swap      a worker switched the version it serves (details: from)
    retire    a worker freed a replaced version after its last request finished
    missing   the version a worker serves disappeared from disk (it keeps serving it from memory)
    repository  the repository became unreadable (result unavailable) or readable again
    pin, unpin, rollback   admin API calls (result ok, or refused/denied with the reason)

Lines are appended under an exclusive flock on the log itself, so lines from different workers
never interleave.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from server.storage.locks import locked

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(
        self, action: str, *, actor: str, version: str | None = None, result: str = "ok", reason: str = "",
        **details: Any,
    ) -> dict[str, Any]:
        """Append one event; a failure to write is logged, never raised (auditing must not stop serving)."""
        entry = {"time": _now(), "actor": actor, "action": action, "version": version, "result": result,
                 "reason": reason, **details}
        line = (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        try:
            with locked(self.path, "ab", permissions=0o640) as handle:
                handle.write(line)
        except OSError as exc:
            log.error("cannot write the audit log %s: %s (event: %s)", self.path, exc, entry)
        return entry


def read_audit(path: Path) -> list[dict[str, Any]]:
    """Every event of the log, oldest first (for tools and tests)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]
