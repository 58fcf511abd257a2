"""Slow clients: what connections that trickle a body, or sit idle after a request, do to normal ones.

Starts the real server (2 workers x 2 threads: gthread), keeps `--clients` normal clients posting a
rendered page, and runs three phases of `--seconds` each: no other connections; `--slow` connections
that send their headers and then one byte of a declared 100 kB body every 2 s; `--slow` idle
keep-alive connections (one small request each, then silence). Per phase it reports the normal
requests answered and failed, their p50/p99 latency, and how the slow connections ended (HTTP status,
or still open at the end). Run from the repository root after `make models`:

    .venv/bin/python bench/slow_clients.py                       # today's settings
    OCR_BODY_TIMEOUT_S=0 .venv/bin/python bench/slow_clients.py  # without the body read timeout

Writes the figures to bench/results/slow_clients-<OCR_BODY_TIMEOUT_S>.json (and prints them).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.lifecycle import load_image  # noqa: E402
from tests.support.load import LoadGenerator, percentile  # noqa: E402
from tests.support.server import PADDLE_VERSION, copy_version, gunicorn_server  # noqa: E402

PADDLE_VERSION_DIR = ROOT / "models" / "ppocr" / PADDLE_VERSION


def _status(sock: socket.socket) -> str:
    try:
        head = sock.recv(64)
    except OSError as exc:
        return type(exc).__name__
    return head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else ("closed" if not head else "garbage")


def slow_body(port: int, stop: threading.Event, ended: Counter) -> None:
    """Headers, then one byte of the declared body every 2 s until the server answers or `stop`."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/ocr HTTP/1.1\r\nHost: bench\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
    sock.settimeout(2.0)
    try:
        while not stop.is_set():
            try:
                sock.send(b"\x89")
            except OSError:
                ended[_status(sock)] += 1
                return
            try:
                head = sock.recv(64)
            except socket.timeout:
                continue
            ended[head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else "closed"] += 1
            return
        ended["still open"] += 1
    finally:
        sock.close()


def idle_keepalive(port: int, stop: threading.Event, ended: Counter) -> None:
    """One small request, then an open, silent connection until the server closes it or `stop`."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
    sock.settimeout(1.0)
    try:
        sock.recv(4096)
        while not stop.is_set():
            try:
                if not sock.recv(4096):
                    ended["closed by server"] += 1
                    return
            except socket.timeout:
                continue
        ended["still open"] += 1
    except OSError as exc:
        ended[type(exc).__name__] += 1
    finally:
        sock.close()


def phase(url: str, port: int, clients: int, seconds: float, slow: int, kind: str | None) -> dict[str, object]:
    stop = threading.Event()
    ended: Counter = Counter()
    target = {"slow-body": slow_body, "idle-keepalive": idle_keepalive}.get(kind or "")
    threads = [threading.Thread(target=target, args=(port, stop, ended), daemon=True)
               for _ in range(slow if target else 0)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # the slow connections are in place before the normal ones are measured
    load = LoadGenerator(url, [load_image()], clients=clients, timeout=120).start()
    time.sleep(seconds)
    load.stop()
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    latencies = [o.seconds for o in load.outcomes if not o.problem]
    return {"phase": kind or "baseline", "slow_connections": len(threads), "answered": len(latencies),
            "failed": len([o for o in load.outcomes if o.problem]),
            "p50_s": round(percentile(latencies, 0.5), 2) if latencies else None,
            "p99_s": round(percentile(latencies, 0.99), 2) if latencies else None,
            "slow_connections_ended": dict(ended)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--slow", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    copy_version(PADDLE_VERSION_DIR, work / "models", PADDLE_VERSION)
    with gunicorn_server(work / "models", work / "logs", workers=2, threads=2) as server:
        results = [phase(server.url, server.port, args.clients, args.seconds, args.slow, kind)
                   for kind in (None, "slow-body", "idle-keepalive")]
    report = {"command": " ".join(sys.argv), "workers": 2, "threads": 2, "clients": args.clients,
              "seconds_per_phase": args.seconds, "phases": results}
    out = ROOT / "bench" / "results" / f"slow_clients-{os.environ.get('OCR_BODY_TIMEOUT_S', 'default')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
