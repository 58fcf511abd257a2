"""Start a real `ocr-server serve` (Gunicorn) for a benchmark, and load it over HTTP.

The server is the one a user runs: the `ocr-server` console script of this virtual environment, on a free
loopback port, configured through the same environment variables. It is stopped (SIGTERM to its process
group, then SIGKILL) when the context exits, whatever happened.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

OCR_SERVER = Path(sys.executable).parent / "ocr-server"


@dataclass
class Server:
    host: str
    port: int
    process: subprocess.Popen
    log_path: Path
    workers: int

    def worker_pids(self) -> list[int]:
        """Gunicorn's worker processes (the children of the master)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(model_repo: Path, workers: int, threads: int, env: dict[str, str] | None = None,
                   timeout: float = 600.0) -> Iterator[Server]:
    """A Gunicorn server with `workers` x `threads`, ready (every worker serving) when yielded.

    SIGTERM to the benchmark becomes SystemExit, so that the server is stopped with it.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    port = _free_port()
    full_env = {
        **os.environ,
        "OCR_BIND": f"127.0.0.1:{port}",
        "OCR_WORKERS": str(workers),
        "OCR_THREADS": str(threads),
        "OCR_MODEL_REPO": str(model_repo),
        "OCR_INSTALL_DEFAULT": "0",
        **(env or {}),
    }
    log = tempfile.NamedTemporaryFile(prefix="ocr-bench-server-", suffix=".log", delete=False)
    log_path = Path(log.name)
    process = subprocess.Popen([str(OCR_SERVER), "serve"], env=full_env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    server = Server("127.0.0.1", port, process, log_path, workers)
    try:
        deadline = time.monotonic() + timeout
        while log_path.read_text(errors="replace").count("] serving ") < workers:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready in {timeout}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield server
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        log.close()
        log_path.unlink(missing_ok=True)


@dataclass
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def post(conn: http.client.HTTPConnection, body: bytes, content_type: str = "image/jpeg") -> tuple[int, bytes]:
    conn.request("POST", "/v1/ocr", body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    return response.status, response.read()


def load(server: Server, bodies: list[bytes], concurrency: int, timeout: float = 300.0) -> LoadResult:
    """POST every body once, `concurrency` clients at a time (keep-alive connections), and time it."""
    result = LoadResult()
    lock = threading.Lock()
    next_index = iter(range(len(bodies)))

    def client() -> None:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
        try:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                start = time.perf_counter()
                try:
                    status, payload = post(conn, bodies[i])
                    error = None if status == 200 else f"HTTP {status}: {payload[:200]!r}"
                except (OSError, http.client.HTTPException) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    conn.close()
                    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
                elapsed = time.perf_counter() - start
                with lock:
                    if error:
                        result.errors.append(error)
                    else:
                        result.latencies_s.append(elapsed)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.wall_s = time.perf_counter() - start
    return result
