"""Forwarding audit records to a SIEM: RFC 5424 syslog over UDP (RFC 5426) or TCP (RFC 6587).

`OCR_AUDIT_SYSLOG` is `udp://HOST:PORT`, `tcp://HOST:PORT`, or plain `HOST:PORT` (UDP, syslog's
classic transport; parsed by `server.config`). Each record becomes one message:

    <109>1 2026-05-04T10:00:00.123+00:00 host ocr-server 4242 pin [audit@32473 seq="7" actor="key:ci" ...] BOM{json}

- PRI: facility 13 (log audit); severity informational for `ok`/`success`, warning for `denied`,
  notice for other results;
- MSGID: the action; STRUCTURED-DATA `audit@32473` (32473 is the enterprise number RFC 5612 sets
  aside for examples; SIEM parsers key on the SD-ID) with the fields a rule needs - seq, actor, roles,
  address, action, version, version_digest, result, request_id, hash, prev;
- MSG: the JSON line exactly as the log file holds it, so the SIEM copy can be checked against
  the file and its hash chain.

Over TCP each message is framed by its length (octet counting), so a newline inside a reason cannot
split a record. Forwarding never blocks nor fails an append: records go to a bounded queue that one
thread per process drains. While the SIEM is unreachable the thread retries the oldest record with
backoff; when the queue is full, new records are dropped from forwarding (counted in `dropped`) -
the log file, which is the canonical record, still has them. UDP offers no delivery guarantee at
all: prefer TCP for an audit trail.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

FACILITY_LOG_AUDIT = 13
SD_ID = "audit@32473"
SD_FIELDS = ("seq", "actor", "roles", "address", "action", "version", "version_digest", "result", "request_id",
             "hash", "prev")
_OK = {"ok", "success", "available", "serving"}
_BOM = "\ufeff"
_MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class SyslogTarget:
    """Where to forward (`Settings.audit_syslog_target` parses `OCR_AUDIT_SYSLOG` into one)."""

    protocol: str  # "udp" or "tcp"
    host: str
    port: int


def _ascii_token(text: str, limit: int) -> str:
    cleaned = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def _sd_value(value: Any) -> str:
    text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def severity(result: str) -> int:
    if result in _OK:
        return 6
    return 4 if result == "denied" else 5


def format_message(record: dict[str, Any], line: str, *, hostname: str, procid: int,
                   app_name: str = "ocr-server") -> bytes:
    """One RFC 5424 message for `record` (`line`: its JSON line as written to the log)."""
    pri = FACILITY_LOG_AUDIT * 8 + severity(str(record.get("result", "")))
    params = " ".join(f'{name}="{_sd_value(record[name])}"' for name in SD_FIELDS if record.get(name) is not None)
    header = (f"<{pri}>1 {record.get('time') or '-'} {_ascii_token(hostname, 255)} {_ascii_token(app_name, 48)} "
              f"{procid} {_ascii_token(str(record.get('action', '')), 32)}")
    return f"{header} [{SD_ID} {params}] {_BOM}{line}".encode("utf-8")


class SyslogForwarder:
    """Sends submitted records from a daemon thread; `submit` only enqueues."""

    def __init__(self, target: SyslogTarget, *, queue_size: int = 10_000, timeout_s: float = 5.0) -> None:
        self.target = target
        self.sent = 0
        self.dropped = 0  # not forwarded because the queue was full
        self.failures = 0  # sends that failed (and were retried, over TCP)
        self._queue: queue.Queue[tuple[dict[str, Any], str]] = queue.Queue(queue_size)
        self._timeout_s = timeout_s
        self._hostname = socket.gethostname()
        self._socket: socket.socket | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-syslog", daemon=True)
        self._thread.start()

    def submit(self, record: dict[str, Any], line: str) -> bool:
        """Queue one record; False when the queue is full and the record is not forwarded. (Formatting
        happens in the sending thread, off the caller's path.)"""
        try:
            self._queue.put_nowait((record, line))
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued record has been sent (or given up); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._timeout_s + 1)
        self._disconnect()

    def _connect(self) -> socket.socket:
        if self._socket is None:
            kind = socket.SOCK_STREAM if self.target.protocol == "tcp" else socket.SOCK_DGRAM
            family, _, _, _, address = socket.getaddrinfo(self.target.host, self.target.port, type=kind)[0]
            sock = socket.socket(family, kind)
            sock.settimeout(self._timeout_s)  # a SIEM that stops reading must not hang the thread
            try:
                sock.connect(address)
            except OSError:
                sock.close()
                raise
            self._socket = sock
        return self._socket

    def _disconnect(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, message: bytes) -> None:
        sock = self._connect()
        if self.target.protocol == "tcp":
            sock.sendall(b"%d %s" % (len(message), message))
        else:
            sock.send(message)

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                record, line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                message = format_message(record, line, hostname=self._hostname, procid=os.getpid())
                while not self._stop.is_set():
                    try:
                        self._send(message)
                        self.sent += 1
                        backoff = 0.0
                        break
                    except OSError as exc:
                        self.failures += 1
                        self._disconnect()
                        if self.target.protocol == "udp":  # no delivery to retry for: next record
                            break
                        backoff = min(_MAX_BACKOFF_S, max(0.5, backoff * 2))
                        log.warning("audit forwarding to %s:%s failed (%s); retrying in %.1f s",
                                    self.target.host, self.target.port, exc, backoff)
                        self._stop.wait(backoff)
            finally:
                self._queue.task_done()
