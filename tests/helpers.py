"""Test helpers: images with known text, a real Gunicorn server on a free port, model repositories.

Nothing here fakes the product: servers are real Gunicorn processes on the real app, models are the
real PP-OCR weights installed by `ocr-server models install-default`.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import requests
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VERSION = "1.0.0-ppocrv4"
# `ocr-server models install` names of the ONNX versions and the versions they install as.
ONNX_MODELS = {"ppocrv4_onnx": "1.1.0-ppocrv4_onnx", "ppocrv5_mobile": "2.0.0-ppocrv5_mobile", "ppocrv6_tiny": "3.0.0-ppocrv6_tiny",
               "ppocrv6_small": "3.1.0-ppocrv6_small"}


def squash(text: str) -> str:
    """PP-OCR drops spaces in Latin text: compare without whitespace, case-insensitively."""
    return re.sub(r"\s+", "", text).upper()


def read_text(result: dict) -> str:
    """One image's lines in the order returned, joined and squashed. Joined rather than compared line by line:
    the detector may legitimately split a rendered line at a word gap ("MEMO RENT" came back as two boxes on
    one CI CPU and as one box here), while the order and every character are still checked."""
    return squash("".join(line["text"] for line in result["lines"]))


def expected_text(lines: list[str]) -> str:
    """What `read_text` should give for an image rendered from `lines`."""
    return squash("".join(lines))


def render_text(lines: list[str], size: int = 36, padding: int = 40, mode: str = "RGB") -> Image.Image:
    """A white page with `lines` in black, drawn with Pillow's built-in TrueType font."""
    font = ImageFont.load_default(size=size)
    widths = [font.getbbox(line)[2] for line in lines]
    line_height = int(size * 1.6)
    width = max(widths) + 2 * padding
    height = line_height * len(lines) + 2 * padding
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    for i, line in enumerate(lines):
        draw.text((padding, padding + i * line_height), line, fill="black", font=font)
    return page.convert(mode) if mode != "RGB" else page


def encode(image: Image.Image, fmt: str = "PNG", **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


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


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen
    log_path: Path
    workers: int
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def wait_alive(self, timeout: float) -> None:
        """Wait until a worker answers /healthz (it may still be loading, or have no model at all)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not answering after {timeout}s:\n{self.log()[-4000:]}")

    def post_image(self, data: bytes, content_type: str = "image/png", **kwargs: object) -> requests.Response:
        return requests.post(f"{self.url}/v1/ocr", data=data, headers={"Content-Type": content_type},
                             timeout=kwargs.pop("timeout", 120), **kwargs)  # type: ignore[arg-type]


def _wait_ready(server: RunningServer, timeout: float) -> None:
    """Wait until every worker has logged that it serves a model (readyz alone may hit one worker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.process.returncode}:\n{server.log()[-4000:]}")
        if server.log().count("] serving ") >= server.workers:
            response = requests.get(f"{server.url}/readyz", timeout=5)
            if response.status_code == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"server not ready after {timeout}s:\n{server.log()[-4000:]}")


@contextmanager
def gunicorn_server(
    model_repo: Path,
    log_dir: Path,
    workers: int = 2,
    threads: int = 4,
    env: dict[str, str] | None = None,
    ready_timeout: float = 180.0,
    wait_ready: bool = True,
) -> Iterator[RunningServer]:
    """Start `gunicorn -c python:server.process.gunicorn_config` on a free port; stop it (and its workers) after."""
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
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"gunicorn-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:server.process.gunicorn_config"],
            cwd=ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", process, log_path, workers, full_env)
    try:
        if wait_ready:
            _wait_ready(server, ready_timeout)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@dataclass
class Scrape:
    """One parsed Prometheus exposition (`prometheus_client.parser`): samples by name and labels."""

    samples: list[tuple[str, dict[str, str], float]]

    @classmethod
    def parse(cls, text: str) -> "Scrape":
        from prometheus_client.parser import text_string_to_metric_families

        return cls([(s.name, dict(s.labels), s.value)
                    for family in text_string_to_metric_families(text) for s in family.samples])

    def select(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        """Samples called `name` whose labels include `labels`."""
        return [(have, value) for sample, have, value in self.samples
                if sample == name and all(have.get(k) == v for k, v in labels.items())]

    def total(self, name: str, **labels: str) -> float:
        """Sum of the matching samples (0 when there are none, as Prometheus would read an absent counter)."""
        return sum(value for _, value in self.select(name, **labels))


def scrape(url: str) -> Scrape:
    response = requests.get(url, timeout=60)
    response.raise_for_status()
    return Scrape.parse(response.text)
