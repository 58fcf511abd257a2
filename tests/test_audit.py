"""The hash-chained audit log: appends from several real processes, `audit verify` catching a changed
byte and a deleted line by line number, the paging reader, and forwarding to a real syslog listener
over UDP and TCP."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from server.config import ConfigError, Settings
from server.governance.audit import GENESIS, AuditLog, audit_log_from_settings, read_audit, read_page, verify_chain
from server.governance.syslog import SD_ID, SyslogTarget, format_message
from tests.governance_support import Listener
from tests.support.server import ROOT

WORKERS = 3
PER_WORKER = 150


def _append_many(path: str, worker: int, count: int, start: Any) -> None:
    log = AuditLog(Path(path))
    start.wait(60)
    for n in range(count):
        log.append("load", actor=f"worker-{worker}", version="1.0.0", n=n, reason="é" * (n % 7))


@pytest.fixture(scope="module")
def three_worker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log written by 3 processes at once (spawned, so nothing is shared but the file)."""
    path = tmp_path_factory.mktemp("audit") / "audit.log"
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    processes = [context.Process(target=_append_many, args=(str(path), w, PER_WORKER, start)) for w in range(WORKERS)]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    return path


def cli_verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", "audit", "verify", "--audit-log", str(path)],
                          cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60)


def test_three_processes_write_one_intact_chain(three_worker_log: Path) -> None:
    records = read_audit(three_worker_log)
    assert len(records) == WORKERS * PER_WORKER
    assert [r["seq"] for r in records] == list(range(1, WORKERS * PER_WORKER + 1))
    assert {r["actor"] for r in records} == {f"worker-{w}" for w in range(WORKERS)}
    for worker in range(WORKERS):  # each process's own records stay in its order
        assert [r["n"] for r in records if r["actor"] == f"worker-{worker}"] == list(range(PER_WORKER))
    assert records[0]["prev"] == GENESIS and all(b["prev"] == a["hash"] for a, b in zip(records, records[1:]))
    report = verify_chain(three_worker_log)
    assert report.ok and report.lines == WORKERS * PER_WORKER, report
    done = cli_verify(three_worker_log)
    assert done.returncode == 0 and "hash chain intact" in done.stdout


def _copy(source: Path, target: Path) -> list[bytes]:
    target.write_bytes(source.read_bytes())
    return target.read_bytes().split(b"\n")[:-1]


@pytest.mark.parametrize("line_number", [1, 200, WORKERS * PER_WORKER - 1])
def test_a_changed_byte_is_found_at_its_line(three_worker_log: Path, tmp_path: Path, line_number: int) -> None:
    lines = _copy(three_worker_log, tmp_path / "audit.log")
    line = lines[line_number - 1]
    position = line.index(b'"version": "1.0.0"') + len(b'"version": "1.0.')
    lines[line_number - 1] = line[:position] + b"1" + line[position + 1:]  # 1.0.0 -> 1.0.1: still valid JSON
    (tmp_path / "audit.log").write_bytes(b"\n".join(lines) + b"\n")
    report = verify_chain(tmp_path / "audit.log")
    assert not report.ok and report.bad_line == line_number and "changed" in report.problem
    done = cli_verify(tmp_path / "audit.log")
    assert done.returncode == 1 and f"line {line_number}:" in done.stderr


def test_a_byte_that_breaks_the_json_is_found_at_its_line(three_worker_log: Path, tmp_path: Path) -> None:
    lines = _copy(three_worker_log, tmp_path / "audit.log")
    lines[9] = lines[9].replace(b'"seq"', b'"seq', 1)
    (tmp_path / "audit.log").write_bytes(b"\n".join(lines) + b"\n")
    report = verify_chain(tmp_path / "audit.log")
    assert report.bad_line == 10 and "not a JSON record" in report.problem


@pytest.mark.parametrize("deleted", [1, 77, WORKERS * PER_WORKER - 1])
def test_a_deleted_line_is_found_at_the_line_that_follows(three_worker_log: Path, tmp_path: Path, deleted: int) -> None:
    lines = _copy(three_worker_log, tmp_path / "audit.log")
    del lines[deleted - 1]
    (tmp_path / "audit.log").write_bytes(b"\n".join(lines) + b"\n")
    report = verify_chain(tmp_path / "audit.log")
    assert not report.ok and report.bad_line == deleted, report  # the line now at that number is the next one
    if deleted > 1:
        assert f"seq {deleted}) were deleted" in report.problem
    done = cli_verify(tmp_path / "audit.log")
    assert done.returncode == 1 and f"line {deleted}:" in done.stderr


def test_a_rewritten_line_with_a_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    """Whoever recomputes a changed line's own hash still breaks the `prev` of the line after it."""
    log = AuditLog(tmp_path / "audit.log")
    for n in range(3):
        log.append("pin", actor="api:1.2.3.4", version=f"1.{n}.0")
    lines = (tmp_path / "audit.log").read_bytes().split(b"\n")[:-1]
    from server.governance.audit import line_hash
    forged = lines[1].replace(b'"1.1.0"', b'"9.9.9"')
    forged = forged[:-66] + line_hash(forged).encode() + forged[-2:]  # type: ignore[union-attr]
    (tmp_path / "audit.log").write_bytes(b"\n".join([lines[0], forged, lines[2]]) + b"\n")
    report = verify_chain(tmp_path / "audit.log")
    assert report.bad_line == 3 and "does not follow" in report.problem


def test_a_log_from_before_the_chain_is_continued(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text('{"time": "t", "actor": "worker-0", "action": "load", "version": "1", "result": "success"}\n')
    AuditLog(path).append("swap", actor="worker-0", version="1")
    report = verify_chain(path)
    assert report.ok and report.legacy_lines == 1 and report.lines == 2
    assert read_audit(path)[1]["seq"] == 1
    path.write_text(path.read_text().replace('"worker-0", "action": "load"', '"worker-9", "action": "load"', 1))
    assert verify_chain(path).bad_line == 2  # the old line is not protected by its own hash, but by the link


def test_a_torn_last_line_is_reported_and_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    log.append("pin", actor="a", version="1")
    with path.open("ab") as handle:
        handle.write(b'{"time": "2026')  # a write cut short (disk full, crash)
    assert verify_chain(path).bad_line == 2
    log.append("unpin", actor="a")
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["action"] == "unpin"
    report = verify_chain(path)
    assert report.bad_line == 2 and "not a JSON record" in report.problem


def test_new_fields_and_reserved_names(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    entry = log.append("models.activate", actor="key:ci", version="1.1.0", result="denied", reason="no role",
                       roles=["submitter"], address="10.0.0.7", version_digest="ab" * 32, request_id="r-1", pid=7)
    written = read_audit(tmp_path / "audit.log")[0]
    assert written == entry
    assert list(written)[:7] == ["time", "seq", "actor", "roles", "address", "action", "version"]
    assert list(written)[-2:] == ["prev", "hash"] and written["pid"] == 7
    with pytest.raises(ValueError, match="hash"):
        log.append("pin", actor="x", hash="forged")


def test_an_unwritable_log_does_not_raise(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    entry = AuditLog(tmp_path / "dir").append("pin", actor="x")  # a directory cannot be opened for writing
    assert entry["action"] == "pin" and "hash" not in entry


def test_paging_newest_first_with_a_stable_cursor(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    for n in range(25):
        log.append("pin" if n % 2 else "load", actor=f"worker-{n % 3}", version=f"1.{n}.0")
    first = read_page(path, limit=10)
    assert [r["seq"] for r in first.records] == list(range(25, 15, -1)) and first.next_cursor
    log.append("late", actor="x")  # new records do not shift the next page
    second = read_page(path, cursor=first.next_cursor, limit=10)
    assert [r["seq"] for r in second.records] == list(range(15, 5, -1))
    third = read_page(path, cursor=second.next_cursor, limit=10)
    assert [r["seq"] for r in third.records] == list(range(5, 0, -1)) and third.next_cursor is None
    pins = read_page(path, action="pin", actor="worker-1", limit=100)
    assert [r["seq"] for r in pins.records] == [r["seq"] for r in reversed(read_audit(path))
                                                 if r["action"] == "pin" and r["actor"] == "worker-1"]
    assert read_page(path, version="1.3.0").records[0]["seq"] == 4
    for cursor in ("abc", "-1", "5", str(path.stat().st_size + 1)):
        with pytest.raises(ValueError, match="invalid cursor"):
            read_page(path, cursor=cursor)
    with pytest.raises(ValueError, match="limit"):
        read_page(path, limit=0)
    assert read_page(tmp_path / "none.log").records == []


def test_paging_reads_lines_longer_than_a_block(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    for n in range(4):
        log.append("load", actor="w", reason="x" * 100_000, n=n)
    page = read_page(path, limit=3)
    assert [r["n"] for r in page.records] == [3, 2, 1]
    assert [r["n"] for r in read_page(path, cursor=page.next_cursor).records] == [0]
    assert verify_chain(path).ok


# -- syslog ------------------------------------------------------------------------------------------------

_RFC5424 = re.compile(r"^<(\d+)>1 (\S+) (\S+) ocr-server (\d+) (\S+) \[" + re.escape(SD_ID) + r" (.*?)\] \ufeff(.*)$",
                      re.DOTALL)


@pytest.fixture(params=["udp", "tcp"])
def listener(request: pytest.FixtureRequest) -> Iterator[Listener]:
    server = Listener(request.param)
    yield server
    server.close()


def test_every_event_reaches_the_syslog_listener(tmp_path: Path, listener: Listener) -> None:
    log = AuditLog(tmp_path / "audit.log", listener.target)
    log.append("pin", actor="key:ci", version="1.1.0", roles=["releaser"], address="127.0.0.1", request_id="r-9")
    log.append("models.activate", actor="jwt:eve", result="denied", reason='no "releaser" role]\nsecond line')
    log.append("load", actor="worker-1", version="1.1.0", result="failed", reason="x")
    assert log.forwarder is not None and log.forwarder.flush(30)
    messages = listener.wait_for(3)
    lines = (tmp_path / "audit.log").read_text(encoding="utf-8").splitlines()
    assert len(messages) == 3
    for message, line in zip(messages, lines):
        match = _RFC5424.match(message)
        assert match, message
        pri, timestamp, _host, pid, msgid, params, body = match.groups()
        record = json.loads(line)
        assert body == line  # the canonical JSON line, byte for byte
        assert timestamp == record["time"] and int(pid) == os.getpid() and msgid == record["action"]
        assert int(pri) // 8 == 13  # facility: log audit
        assert f'seq="{record["seq"]}"' in params and f'hash="{record["hash"]}"' in params
    assert [int(_RFC5424.match(m).group(1)) % 8 for m in messages] == [6, 4, 5]  # type: ignore[union-attr]
    assert 'roles="releaser"' in messages[0] and 'request_id="r-9"' in messages[0]
    assert 'reason' not in _RFC5424.match(messages[1]).group(6)  # type: ignore[union-attr]
    assert log.forwarder.sent == 3 and log.forwarder.dropped == 0


def test_structured_data_values_are_escaped() -> None:
    record = {"time": "2026-01-01T00:00:00.000+00:00", "seq": 1, "actor": 'a"b\\c]d', "action": "pin x",
              "result": "ok"}
    message = format_message(record, "{}", hostname="my host", procid=1).decode()
    assert 'actor="a\\"b\\\\c\\]d"' in message and " myhost ocr-server 1 pinx [" in message


def test_forwarding_never_blocks_an_append(tmp_path: Path) -> None:
    """A SIEM that accepts the connection and never reads: once the socket buffers and the queue are
    full, records are dropped from forwarding and counted, and every append still completes."""
    stalled = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(stalled.accept()[0]), daemon=True).start()
    try:
        log = AuditLog(tmp_path / "audit.log", SyslogTarget("tcp", "127.0.0.1", stalled.getsockname()[1]),
                       forward_queue_size=4)
        for n in range(400):  # 40 MB: more than the loopback socket buffers hold
            log.append("load", actor="w", reason="x" * 100_000, n=n)
        assert len(read_audit(tmp_path / "audit.log")) == 400
        assert log.forwarder is not None and log.forwarder.dropped > 0
        assert verify_chain(tmp_path / "audit.log").ok
    finally:
        stalled.close()
        for connection in accepted:
            connection.close()


def test_an_unreachable_syslog_server_does_not_stop_appends(tmp_path: Path) -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there: connections are refused
    log = AuditLog(tmp_path / "audit.log", SyslogTarget("tcp", "127.0.0.1", port))
    for n in range(5):
        log.append("pin", actor="x", n=n)
    assert len(read_audit(tmp_path / "audit.log")) == 5


@pytest.mark.parametrize(("value", "expected"), [
    ("siem.example.com:514", ("udp", "siem.example.com", 514)),
    ("udp://10.1.2.3:5514", ("udp", "10.1.2.3", 5514)),
    ("tcp://siem:6514", ("tcp", "siem", 6514)),
    ("tcp://[::1]:6514", ("tcp", "::1", 6514)),
])
def test_syslog_targets(value: str, expected: tuple[str, str, int]) -> None:
    assert Settings.from_env({"OCR_AUDIT_SYSLOG": value}).audit_syslog_target == expected


def test_the_audit_log_from_settings_forwards_where_they_say(tmp_path: Path) -> None:
    listener = Listener("tcp")
    try:
        settings = Settings.from_env({"OCR_AUDIT_LOG": str(tmp_path / "a.log"),
                                      "OCR_AUDIT_SYSLOG": f"tcp://127.0.0.1:{listener.target.port}"})
        log = audit_log_from_settings(settings)
        log.append("pin", actor="x")
        assert len(listener.wait_for(1)) == 1 and log.path == tmp_path / "a.log"
        assert audit_log_from_settings(Settings.from_env({})).forwarder is None
    finally:
        listener.close()


@pytest.mark.parametrize("value", ["siem", "tls://siem:6514", "siem:0", "siem:port", "tcp://siem:514/path"])
def test_bad_syslog_targets_name_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="OCR_AUDIT_SYSLOG"):
        Settings.from_env({"OCR_AUDIT_SYSLOG": value})
