"""A real `ocr-server serve` (Gunicorn) on a free loopback port, for tests and benchmarks.

The server is the one a user runs: the CLI's `serve` command of this interpreter, configured through
the same environment variables. It is stopped (SIGTERM to its process group, then SIGKILL) when the
context exits, whatever happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import requests

ROOT = Path(__file__).resolve().parents[2]
# PP-OCRv4 on Paddle Inference, the version most tests serve: `install-default` installs it beside the
# default (PP-OCRv6 small, ONNX_MODELS["ppocrv6_small_cls"]); Paddle is the runtime with the sharpest edges.
PADDLE_VERSION = "1.0.0-ppocrv4"
# `ocr-server models install` names of the ONNX versions and the versions they install as.
ONNX_MODELS = {"ppocrv4_onnx": "1.1.0-ppocrv4_onnx", "ppocrv5_mobile": "2.0.0-ppocrv5_mobile",
               "ppocrv6_tiny": "3.0.0-ppocrv6_tiny", "ppocrv6_small": "3.1.0-ppocrv6_small",
               "ppocrv6_small_cls": "3.4.0-ppocrv6_small_cls"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_version(source: Path, repo_root: Path, version: str, pipeline: str = "ppocr") -> Path:
    """A real, independent copy of a version (tests may damage it without touching the original)."""
    target = repo_root / pipeline / version
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)
    return target


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (0 once it is gone)."""
    try:
        for row in Path(f"/proc/{pid}/status").read_text().splitlines():
            if row.startswith("VmRSS:"):
                return int(row.split()[1]) * 1024
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """The children that `pid`'s main thread started (Gunicorn forks its workers there)."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def all_children(pid: int) -> list[int]:
    """The children of every thread of `pid` (the master's registry sync is started by a thread)."""
    try:
        tasks = [int(task) for task in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []
    found: list[int] = []
    for task in tasks:
        try:
            found += [int(child) for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen
    log_path: Path
    workers: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """Gunicorn's worker processes (the children of the master)."""
        return children(self.process.pid)

    def process_tree(self) -> list[int]:
        """The master and every process below it (workers, a probe, a registry sync)."""
        found, frontier = [self.process.pid], [self.process.pid]
        while frontier:
            below = all_children(frontier.pop())
            found.extend(below)
            frontier.extend(below)
        return found

    def _check_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log()[-4000:]}")

    def wait_alive(self, timeout: float) -> None:
        """Wait until a worker answers /healthz (it may still be loading, or have no model at all)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_running()
            try:
                if requests.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or a busy machine
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not answering after {timeout}s:\n{self.log()[-4000:]}")

    def wait_ready(self, timeout: float) -> None:
        """Wait until every worker has logged that it serves a model (readyz alone may hit one worker)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_running()
            if self.log().count("] serving ") >= self.workers:
                if requests.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            time.sleep(0.3)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()[-4000:]}")

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM (a graceful stop), SIGKILL to the whole group if it takes longer than `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def post_image(self, data: bytes, content_type: str = "image/png", **kwargs: object) -> requests.Response:
        return requests.post(f"{self.url}/v1/ocr", data=data, headers={"Content-Type": content_type},
                             timeout=kwargs.pop("timeout", 120), **kwargs)  # type: ignore[arg-type]


@contextmanager
def gunicorn_server(
    model_repo: Path,
    log_dir: Path | None = None,
    workers: int = 2,
    threads: int = 4,
    env: dict[str, str] | None = None,
    ready_timeout: float = 180.0,
    wait_ready: bool = True,
) -> Iterator[RunningServer]:
    """Run `ocr-server serve` with `workers` x `threads` on a free port; ready (every worker serving)
    when yielded unless `wait_ready` is False. The log goes to `log_dir` (a temporary file otherwise)."""
    port = free_port()
    full_env = {
        **os.environ,
        "OCR_BIND": f"127.0.0.1:{port}",
        "OCR_WORKERS": str(workers),
        "OCR_THREADS": str(threads),
        "OCR_MODEL_REPO": str(model_repo),
        "OCR_INSTALL_DEFAULT": "0",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    directory = log_dir or Path(tempfile.mkdtemp(prefix="ocr-server-log-"))
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / f"server-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], cwd=ROOT, env=full_env,
                                   stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    server = RunningServer(f"http://127.0.0.1:{port}", process, log_path, workers, full_env)
    try:
        if wait_ready:
            server.wait_ready(ready_timeout)
        yield server
    finally:
        server.stop()
