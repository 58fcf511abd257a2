"""A worker told to stop (SIGTERM: what Gunicorn sends old workers on a reload and every worker on
shutdown) finishes the requests it has in flight and exits cleanly. Importing Paddle installs a failure
handler that turns SIGTERM into an abort with a stack dump; the worker must take its signals back."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.support.images import encode, expected_text, read_text, receipt_lines, render_text
from tests.support.server import gunicorn_server

# Enough lines that a request is still being read when the signal arrives (~2 s here, 2 cores busy).
PAGE_LINES = [line for index in range(12) for line in receipt_lines(index)]


def _timed_post(url: str, body: bytes) -> tuple[requests.Response, float]:
    response = requests.post(f"{url}/v1/ocr", data=body, headers={"Content-Type": "image/png"}, timeout=120)
    return response, time.monotonic()


def test_sigterm_lets_a_worker_finish_the_requests_in_flight(model_repo: Path, tmp_path: Path) -> None:
    page = encode(render_text(PAGE_LINES, size=24))
    with gunicorn_server(model_repo, tmp_path / "logs", workers=1, threads=2) as server:
        [worker] = server.worker_pids()
        with ThreadPoolExecutor(max_workers=2) as pool:
            pending = [pool.submit(_timed_post, server.url, page) for _ in range(2)]
            time.sleep(0.5)
            signalled = time.monotonic()
            os.kill(worker, signal.SIGTERM)
            answers = [future.result() for future in pending]
        assert any(ended > signalled for _, ended in answers), "no request was in flight: make the page bigger"
        for response, _ in answers:
            assert response.status_code == 200, response.text
            assert read_text(response.json()["results"][0]) == expected_text(PAGE_LINES)

        deadline = time.monotonic() + 60
        while worker in server.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        log = server.log()
        assert worker not in server.worker_pids()
        assert "Aborted at" not in log and "SIGTERM (@" not in log, log[-3000:]
        assert f"Worker exiting (pid: {worker})" in log
