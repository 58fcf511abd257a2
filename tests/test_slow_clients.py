"""Clients that stall or trickle their upload cannot starve a worker: a body that has not arrived
OCR_BODY_TIMEOUT_S after its headers is answered 408 `body_timeout` (JSON) and its thread goes back to
serving.

One worker with two threads, three slow uploads (one more than its threads; one of them sends a byte
every half second, which no per-read timeout would cut): without the deadline a normal request behind
them waits for as long as the slow clients like.
"""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support.images import encode, render_text
from tests.support.server import gunicorn_server

BODY_TIMEOUT_S = 2


def _slow_upload(port: int, trickle: bool) -> tuple[int, dict]:
    """Send the headers and half the declared body, then nothing (or a byte every 0.5 s, with `trickle`);
    (status, JSON body) of the answer."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/ocr HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 2000\r\n\r\n" + b"\x89" * 1000)
        sock.settimeout(0.5)
        received = b""
        deadline = time.monotonic() + 120
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < _length(received):
            assert time.monotonic() < deadline, "no answer to a slow upload"
            try:
                chunk = sock.recv(4096)
            except socket.timeout:
                if trickle and not received:
                    sock.send(b"\x00")
                continue
            if not chunk:
                break
            received += chunk
    head, body = received.split(b"\r\n\r\n", 1)
    return int(head.split(b" ")[1]), json.loads(body[:_length(received)])


def _length(received: bytes) -> int:
    for line in received.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


def test_slow_uploads_are_cut_and_do_not_starve_the_worker(model_repo: Path, tmp_path: Path) -> None:
    page = encode(render_text(["TOTAL DUE 12.50"]))
    env = {"OCR_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)}
    with gunicorn_server(model_repo, tmp_path / "logs", workers=1, threads=2, env=env) as server:
        with ThreadPoolExecutor(max_workers=3) as pool:
            stalled = [pool.submit(_slow_upload, server.port, trickle) for trickle in (True, False, False)]
            time.sleep(0.5)
            response = server.post_image(page, timeout=90)  # queued behind the stalled uploads
            answers = [future.result(timeout=120) for future in stalled]
        assert response.status_code == 200, response.text
        for status, body in answers:
            assert status == 408, body
            assert body["error"] == "body_timeout" and "OCR_BODY_TIMEOUT_S" in body["message"]
        assert server.post_image(page).status_code == 200
        assert "Traceback" not in server.log()
