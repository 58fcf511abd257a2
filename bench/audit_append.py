"""What an audit append costs, and what forwarding to syslog adds to it - including a SIEM that hangs.

    .venv/bin/python -m bench.audit_append [--records 2000] [--rounds 3]

One process, one log file per mode, the modes interleaved round by round so machine load hits them
alike: `file` (hash chain only), `udp` and `tcp` (a local listener that reads everything), and
`tcp-stalled` (a listener that accepts and never reads, as a hung SIEM would). Reports the median and
p99 time of `AuditLog.append` per mode and its ratio to `file`, plus how many records forwarding
dropped. Forwarding runs in a thread behind a bounded queue; this shows what an append pays for it.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from server.governance.audit import AuditLog
from server.governance.syslog import SyslogTarget

MODES = ("file", "udp", "tcp", "tcp-stalled")


def _drain_udp(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(65536)
        except OSError:
            return


def _drain_tcp(server: socket.socket, read: bool, held: list[socket.socket]) -> None:
    while True:
        try:
            connection, _ = server.accept()
        except OSError:
            return
        held.append(connection)
        if read:
            threading.Thread(target=lambda c=connection: [None for _ in iter(lambda: c.recv(65536), b"")],
                             daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000, help="appends per mode per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    threading.Thread(target=_drain_udp, args=(udp,), daemon=True).start()
    held: list[socket.socket] = []
    servers = {}
    for mode, read in (("tcp", True), ("tcp-stalled", False)):
        servers[mode] = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=_drain_tcp, args=(servers[mode], read, held), daemon=True).start()
    targets = {"file": None, "udp": SyslogTarget("udp", "127.0.0.1", udp.getsockname()[1]),
               "tcp": SyslogTarget("tcp", "127.0.0.1", servers["tcp"].getsockname()[1]),
               "tcp-stalled": SyslogTarget("tcp", "127.0.0.1", servers["tcp-stalled"].getsockname()[1])}

    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        logs = {mode: AuditLog(Path(tmp) / f"{mode}.log", targets[mode]) for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                log = logs[mode]
                for n in range(args.records):
                    start = time.perf_counter()
                    log.append("load", actor="worker-1", version="1.0.0-ppocrv4", result="success", n=n,
                               roles=["releaser"], address="127.0.0.1", request_id=f"r-{n}")
                    times[mode].append(time.perf_counter() - start)
        dropped = {mode: (logs[mode].forwarder.dropped if logs[mode].forwarder else 0) for mode in MODES}

    base = statistics.median(times["file"])
    print(f"`python -m bench.audit_append --records {args.records} --rounds {args.rounds}`\n")
    print("| mode | appends | median us | p99 us | median / file | dropped from forwarding |")
    print("|---|---|---|---|---|---|")
    for mode in MODES:
        values = sorted(times[mode])
        median = statistics.median(values)
        p99 = values[int(len(values) * 0.99) - 1]
        print(f"| {mode} | {len(values)} | {median * 1e6:.0f} | {p99 * 1e6:.0f} | {median / base:.2f}x | "
              f"{dropped[mode]} |")


if __name__ == "__main__":
    main()
