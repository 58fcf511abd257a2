"""The audit log: one JSON line per governance and lifecycle event, hash-chained, from every process.

Fields of every line: `time` (UTC, ISO 8601 with milliseconds), `seq` (1, 2, ... over the whole
file), `actor` (who: `worker-N`, `api:<address>`, `cli:<user@host>`, `key:<name>`, `jwt:<subject>`,
`admin-token`, `anonymous`), `action`, `version`, `result`, `reason`; when known, `roles`, `address`
(the client address), `version_digest` (sha256 of the version's manifest.json), `request_id`; then
the event's details; last `prev` and `hash`. Actions:

    publish   a version was published with `ocr-server models publish`, or copied from the MLflow
              registry by the sync (actor `system:mlflow`; details: mlflow_version, registry)
    push      a version was registered in the MLflow registry with `ocr-server models push`
    sign      a version was signed with `ocr-server models sign` (details: key_id)
    reject    a version was rejected (recorded once per version and fingerprint, machine-wide)
    approve   a version passed verification, warm-up and the quality gate (once, machine-wide)
    load      a worker loaded a version (result success) or failed to (result = failure code)
    swap      a worker switched the version it serves (details: from)
    retire    a worker freed a replaced version after its last request finished
    missing   the version a worker serves disappeared from disk (it keeps serving it from memory)
    repository  the repository became unreadable (result unavailable) or readable again
    recheck   the version a worker serves failed its periodic re-check (result: tampered, revoked_key, ...)
    pin, unpin, rollback, request_promotion   admin API calls (result ok, or refused/denied with the reason)
              pin and unpin are also written by the registry sync following `@champion` (actor `system:mlflow`)
    models.read, audit.read, ocr.infer, ocr.feedback   a read or OCR call refused by the access policy

**The chain.** `hash` is the sha256 of the line as written with `hash` set to 64 zeros; `prev` is the
previous line's `hash` (64 zeros for the first line; the sha256 of the previous line's bytes when
that line predates the chain). So a changed byte shows at its own line (its hash no longer matches),
a deleted line at the next one (`prev` and `seq` skip). Someone who can write the file and
recomputes every hash after a change is caught only by a copy kept elsewhere: forward the log to a
SIEM (`OCR_AUDIT_SYSLOG`), which also keeps what a truncation of the file's end would remove.

Lines are appended under an exclusive flock on the log itself: the lock covers reading the last line
(for `prev` and `seq`) and the one `write` of the new line, so lines from different workers neither
interleave nor fork the chain. A failure to write is logged, never raised: auditing must not stop
serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from server.config import Settings
from server.governance.syslog import SyslogForwarder, SyslogTarget
from server.storage.locks import locked

log = logging.getLogger(__name__)

GENESIS = "0" * 64
_HASH_TAIL = re.compile(rb', "hash": "([0-9a-f]{64})"\}$')
_RESERVED = {"time", "seq", "actor", "action", "version", "result", "reason", "roles", "address", "version_digest",
             "request_id", "prev", "hash"}
_BLOCK = 1 << 16


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def line_hash(line: bytes) -> str | None:
    """The hash a chained line must carry (None when the line does not end in a `hash` field)."""
    match = _HASH_TAIL.search(line)
    if match is None:
        return None
    return hashlib.sha256(line[:match.start(1)] + GENESIS.encode() + line[match.end(1):]).hexdigest()


def _last_line(fd: int) -> bytes | None:
    """The file's last complete line (without its newline), read backwards from the end."""
    end = os.fstat(fd).st_size
    if end == 0:
        return None
    tail = b""
    position = end
    while position > 0:
        start = max(0, position - _BLOCK)
        tail = os.pread(fd, position - start, start) + tail
        position = start
        newline = tail.rfind(b"\n", 0, len(tail) - 1)
        if newline >= 0:
            return tail[newline + 1:].rstrip(b"\n")
    return tail.rstrip(b"\n")


def _chain_from(last: bytes | None) -> tuple[str, int]:
    """(prev, seq) for the line after `last`."""
    if last is None:
        return GENESIS, 1
    try:
        record = json.loads(last)
        seq = int(record.get("seq", 0)) + 1 if isinstance(record, dict) else 1
    except (ValueError, TypeError):
        seq = 1  # a damaged last line: `audit verify` reports it; the chain goes on from its bytes
    return line_hash(last) or hashlib.sha256(last).hexdigest(), seq


class AuditLog:
    def __init__(self, path: Path, syslog: SyslogTarget | None = None, *, forward_queue_size: int = 10_000) -> None:
        self.path = path
        self._syslog = syslog
        self._queue_size = forward_queue_size
        self._forwarder: SyslogForwarder | None = None
        self._forwarder_pid = 0

    @property
    def forwarder(self) -> SyslogForwarder | None:
        """This process's forwarder (a forked worker starts its own: threads do not survive fork)."""
        if self._syslog is None:
            return None
        if self._forwarder is None or self._forwarder_pid != os.getpid():
            self._forwarder = SyslogForwarder(self._syslog, queue_size=self._queue_size)
            self._forwarder_pid = os.getpid()
        return self._forwarder

    def append(
        self, action: str, *, actor: str, version: str | None = None, result: str = "ok", reason: str = "",
        roles: list[str] | None = None, address: str | None = None, version_digest: str | None = None,
        request_id: str | None = None, **details: Any,
    ) -> dict[str, Any]:
        """Append one event and return it as written (with `seq`, `prev` and `hash` once written)."""
        clash = _RESERVED & set(details)
        if clash:
            raise ValueError(f"audit details may not be named {sorted(clash)}")
        entry: dict[str, Any] = {"time": _now(), "seq": 0, "actor": actor}
        optional = {"roles": roles, "address": address}
        entry.update({k: v for k, v in optional.items() if v is not None})
        entry.update({"action": action, "version": version})
        if version_digest is not None:
            entry["version_digest"] = version_digest
        entry.update({"result": result, "reason": reason})
        if request_id is not None:
            entry["request_id"] = request_id
        entry.update(details)
        try:
            with locked(self.path, "a+b", permissions=0o640) as handle:
                fd = handle.fileno()
                last = _last_line(fd)
                entry["prev"], entry["seq"] = _chain_from(last)
                entry["hash"] = GENESIS
                line = json.dumps(entry, ensure_ascii=False, default=str).encode("utf-8")
                entry["hash"] = line_hash(line)
                line = line[:-66] + entry["hash"].encode() + line[-2:]
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # a torn last line stays alone on its line
                data = line + b"\n"
                try:
                    while data:
                        data = data[os.write(fd, data):]
                except OSError:  # a full disk may take part of the line: leave none of it (the chain holds)
                    os.ftruncate(fd, size)
                    raise
        except OSError as exc:
            log.error("cannot write the audit log %s: %s (event: %s)", self.path, exc, entry)
            return entry
        forwarder = self.forwarder
        if forwarder is not None:
            forwarder.submit(entry, line.lstrip(b"\n").decode("utf-8"))
        return entry


def audit_log_from_settings(settings: Settings) -> AuditLog:
    target = settings.audit_syslog_target
    return AuditLog(settings.effective_audit_log, SyslogTarget(*target) if target else None)


def read_audit(path: Path) -> list[dict[str, Any]]:
    """Every event of the log, oldest first (for tools and tests)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    lines: int  # lines read
    legacy_lines: int = 0  # lines before the chain began (written before it existed): not protected
    bad_line: int | None = None  # 1-based number of the first bad line
    problem: str = ""

    def message(self, path: Path) -> str:
        if self.ok:
            legacy = f" ({self.legacy_lines} older unchained lines before it)" if self.legacy_lines else ""
            return f"{path}: {self.lines} lines, hash chain intact{legacy}"
        return f"{path}: line {self.bad_line}: {self.problem}"


def verify_chain(path: Path) -> ChainReport:
    """Check every line's hash and its link to the line before; stops at the first bad line.
    Raises OSError when the file cannot be read."""
    previous: bytes | None = None
    previous_hash = GENESIS
    previous_seq = 0
    chained = False
    legacy = 0
    number = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip(b"\n")

            def bad(problem: str) -> ChainReport:
                return ChainReport(False, number, legacy, number, problem)

            if not raw.endswith(b"\n"):
                return bad("the last line is incomplete (a torn write, or the file was cut)")
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return bad("not a JSON record (changed, or a torn write)")
            if not isinstance(record, dict):
                return bad("not a JSON object")
            expected = line_hash(line)
            if expected is None:
                if chained or "hash" in record or "prev" in record:
                    return bad("its hash field is missing or malformed")
                legacy += 1
                previous = line
                continue
            if record.get("hash") != _HASH_TAIL.search(line).group(1).decode():  # type: ignore[union-attr]
                return bad("its hash field is missing or malformed")
            if expected != record["hash"]:
                return bad("its content was changed (the hash does not match)")
            link = previous_hash if chained else (GENESIS if previous is None else hashlib.sha256(previous).hexdigest())
            seq = record.get("seq")
            if record.get("prev") != link:
                if isinstance(seq, int) and seq > previous_seq + 1:
                    missing = f"seq {previous_seq + 1}" if seq == previous_seq + 2 else \
                        f"seq {previous_seq + 1} to {seq - 1}"
                    return bad(f"the record(s) before it ({missing}) were deleted")
                return bad("does not follow the line before it (prev does not match: a line was deleted, "
                           "inserted or changed)")
            if seq != previous_seq + 1:
                return bad(f"seq {seq} where {previous_seq + 1} was expected")
            chained = True
            previous, previous_hash, previous_seq = line, record["hash"], seq
    return ChainReport(True, number, legacy)


@dataclass(frozen=True)
class AuditPage:
    records: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None  # pass back to get the next (older) page; None at the start of the log


def _lines_before(handle: Any, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) pairs, newest first, of the lines that end at or before byte `end`."""
    buffer = b""
    position = end
    while position > 0:
        start = max(0, position - _BLOCK)
        handle.seek(start)
        buffer = handle.read(position - start) + buffer
        position = start
        lines = buffer.split(b"\n")
        buffer = lines[0]  # may be the end of a line that started in an earlier block
        offset = position + len(buffer) + 1
        complete = []
        for line in lines[1:]:
            complete.append((offset, line))
            offset += len(line) + 1
        for item in reversed(complete):
            if item[1]:
                yield item
    if buffer:
        yield 0, buffer


def read_page(path: Path, *, cursor: str | None = None, limit: int = 100, action: str | None = None,
              actor: str | None = None, version: str | None = None) -> AuditPage:
    """Records newest first, `limit` at most, optionally only those with the given action, actor or
    version. The cursor is a byte offset into the file (opaque to clients): the log only grows, so
    a cursor stays valid while new records arrive, and a page costs what it reads, not the log's size.
    Raises ValueError for a cursor that is not one this function returned."""
    if not 1 <= limit <= 1000:
        raise ValueError("limit must be between 1 and 1000")
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return AuditPage()
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if cursor is None:
            end = size
        else:
            if not (cursor.isascii() and cursor.isdigit()) or int(cursor) > size:
                raise ValueError(f"invalid cursor {cursor!r}")
            end = int(cursor)
            if end > 0:
                handle.seek(end - 1)
                if handle.read(1) != b"\n":
                    raise ValueError(f"invalid cursor {cursor!r}")
        records: list[dict[str, Any]] = []
        next_cursor: str | None = None
        for offset, line in _lines_before(handle, end):
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = {"unreadable": line.decode("utf-8", errors="replace")}  # shown, not hidden
            if ((action is None or record.get("action") == action) and (actor is None or record.get("actor") == actor)
                    and (version is None or record.get("version") == version)):
                records.append(record)
            if len(records) == limit:
                next_cursor = str(offset) if offset > 0 else None
                break
    return AuditPage(records, next_cursor)
