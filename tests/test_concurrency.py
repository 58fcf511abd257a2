"""Concurrency against a real Gunicorn server (2 workers x 4 threads): every request gets its own
answer, and bad input sent in the middle of good traffic harms neither the traffic nor the workers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from tests.support.images import (
    encode,
    expected_text,
    png_declaring,
    read_text,
    receipt_lines,
    render_text,
    truncated,
)
from tests.support.server import RunningServer


def _read(server: RunningServer, index: int) -> tuple[int, str, str]:
    """OCR the page of `index`; (status, expected text, recognised text), whitespace-insensitive."""
    lines = receipt_lines(index)
    response = server.post_image(encode(render_text(lines)))
    got = read_text(response.json()["results"][0]) if response.ok else ""
    return response.status_code, expected_text(lines), got


def test_sixteen_concurrent_requests_each_get_their_own_text(shared_server: RunningServer) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda i: _read(shared_server, i), range(16)))
    assert len({expected for _, expected, _ in answers}) == 16  # all texts differ
    for status, expected, got in answers:
        assert status == 200 and got == expected


def _bad_requests(url: str) -> list[requests.Response]:
    page = encode(render_text(["SHOULD NOT BE READ"]), "JPEG")
    sends = [
        lambda: requests.post(url, data=truncated(page), headers={"Content-Type": "image/jpeg"}, timeout=120),
        lambda: requests.post(url, data=png_declaring(60_000, 60_000), headers={"Content-Type": "image/png"},
                              timeout=120),
        lambda: requests.post(url, data=b"{not json", headers={"Content-Type": "application/json"}, timeout=120),
        lambda: requests.post(url, data=b"\x00" * (21 * 1024 * 1024), headers={"Content-Type": "image/png"},
                              timeout=120),
        lambda: requests.post(url + "?det_thresh=-1", data=page, headers={"Content-Type": "image/jpeg"}, timeout=120),
        lambda: requests.get(url, timeout=120),
    ]
    return [send() for _ in range(3) for send in sends]


def test_bad_input_during_good_traffic(shared_server: RunningServer) -> None:
    workers = sorted(shared_server.worker_pids())
    with ThreadPoolExecutor(max_workers=10) as pool:
        good = [pool.submit(_read, shared_server, 100 + i) for i in range(8)]
        bad = [pool.submit(_bad_requests, f"{shared_server.url}/v1/ocr") for _ in range(2)]
        bad_answers = [response for future in bad for response in future.result()]
        good_answers = [future.result() for future in good]
    assert all(400 <= r.status_code < 500 and r.json()["error"] for r in bad_answers)
    for status, expected, got in good_answers:
        assert status == 200 and got == expected
    assert sorted(shared_server.worker_pids()) == workers
