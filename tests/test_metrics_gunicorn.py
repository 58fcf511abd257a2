"""Metrics of a real Gunicorn server with several workers, scraped and parsed as Prometheus would.

What must hold (issue 4): every scrape, whichever process answers it, shows the whole server - requests
summed over workers, one stage observation per stage per image, errors by code, accuracy from feedback
- and model info only for live workers: a killed worker's series go, its replacement's come once it
has loaded, and nothing it counted is lost.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, TypeVar

import pytest
import requests
from PIL import Image
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from tests.support.images import encode, render_text
from tests.support.metrics import Scrape, scrape
from tests.support.server import PADDLE_VERSION, RunningServer, free_port, gunicorn_server

V = PADDLE_VERSION
STAGES = ("decode", "det", "cls", "rec")
T = TypeVar("T")


def _wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result is not None and result is not False:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _png(lines: list[str]) -> bytes:
    return encode(render_text(lines))


def _plant_stale_counter(directory: Path) -> None:
    """A previous run's file claiming 1000 answered requests: the start-up must delete it."""
    directory.mkdir(parents=True)
    stale = MmapedDict(str(directory / "counter_999999.db"))
    key = mmap_key("ocr_requests_total", "ocr_requests_total", ["status", "model_version"], ["200", V], "stale")
    stale.write_value(key, 1000.0, 0.0)
    stale.close()


def _per_process(directory: Path, pattern: str, sample: str) -> dict[int, float]:
    """A sample's value in each process's own file (what the exposition sums)."""
    values = {}
    for path in directory.glob(pattern):
        families = MultiProcessCollector.merge([str(path)])
        values[int(path.stem.rsplit("_", 1)[1])] = sum(
            s.value for family in families for s in family.samples if s.name == sample)
    return values


def _busy_worker(directory: Path) -> int | None:
    """The pid of the worker with a request in flight, from its own in-flight gauge file."""
    in_flight = _per_process(directory, "gauge_livesum_*.db", "ocr_inflight_requests")
    return next((pid for pid, value in in_flight.items() if value == 1), None)


def _when_in_flight(seen: Scrape) -> Scrape | None:
    return seen if seen.total("ocr_inflight_requests") == 1 else None


# -- traffic with known outcomes -------------------------------------------------------------------

GOOD_PAGES = {
    "receipt": ["RECEIPT 1001", "TOTAL 12.50"],
    "invoice": ["INVOICE NO: 2026-1187"],
    "cash": ["CASH 20.00", "CHANGE 7.50"],
    "thanks": ["THANK YOU"],
}
# status, error code -> how many of the bad requests below get it. The last one, GET /v1/ocr, is
# answered 405 by routing: it never reaches the OCR endpoint, so it is counted nowhere.
BAD_EXPECTED = {
    ("415", "unsupported_media_type"): 2,
    ("400", "invalid_base64"): 1,
    ("422", "invalid_image"): 1,
    ("400", "empty_image"): 1,
    ("400", "unknown_option"): 1,
}


def _good_calls(url: str) -> list[Callable[[], requests.Response]]:
    """Six answered requests with eight images: raw, multipart with two images, JSON without the angle
    classifier, and a blank page (no lines)."""
    ocr = f"{url}/v1/ocr"
    png = {name: _png(lines) for name, lines in GOOD_PAGES.items()}
    blank = encode(Image.new("RGB", (240, 120), "white"))

    def raw(data: bytes) -> Callable[[], requests.Response]:
        return lambda: requests.post(ocr, data=data, headers={"Content-Type": "image/png"}, timeout=300)

    return [
        raw(png["invoice"]),
        raw(png["cash"]),
        raw(png["thanks"]),
        raw(blank),
        lambda: requests.post(ocr, files=[("image", ("a.png", png["invoice"], "image/png")),
                                          ("image", ("b.png", png["thanks"], "image/png"))], timeout=300),
        lambda: requests.post(ocr, json={"image": base64.b64encode(png["cash"]).decode(), "use_cls": False},
                              timeout=300),
    ]


def _bad_calls(url: str) -> list[Callable[[], requests.Response]]:
    ocr = f"{url}/v1/ocr"
    png = _png(["TOTAL 1.00"])
    return [
        lambda: requests.post(ocr, data=b"hello", headers={"Content-Type": "text/plain"}, timeout=60),
        lambda: requests.post(ocr, data=b"hello", headers={"Content-Type": "text/plain"}, timeout=60),
        lambda: requests.post(ocr, json={"image": "not base64 at all!"}, timeout=60),
        lambda: requests.post(ocr, data=b"not an image", headers={"Content-Type": "image/png"}, timeout=60),
        lambda: requests.post(ocr, data=b"", headers={"Content-Type": "image/png"}, timeout=60),
        lambda: requests.post(f"{ocr}?bogus=1", data=png, headers={"Content-Type": "image/png"}, timeout=60),
        lambda: requests.get(ocr, timeout=60),
    ]


class Expected:
    """What the metrics must say, accumulated from what the server answered."""

    def __init__(self) -> None:
        self.answered = 0
        self.images = 0
        self.stage_seconds = dict.fromkeys(STAGES, 0.0)
        self.lines = 0
        self.score_sum = 0.0
        self.pixels = 0
        self.feedback_cer: list[float] = []
        self.feedback_chars = 0
        self.feedback_edits = 0

    def add_answer(self, response: requests.Response) -> None:
        assert response.status_code == 200, response.text
        assert response.headers["X-Model-Version"] == V
        self.answered += 1
        for result in response.json()["results"]:
            self.images += 1
            for stage in STAGES:
                self.stage_seconds[stage] += result["timing_ms"][stage] / 1000
            self.lines += len(result["lines"])
            self.score_sum += sum(line["score"] for line in result["lines"])
            self.pixels += result["width"] * result["height"]

    def add_feedback(self, edits: int, truth: str) -> None:
        chars = len(re.sub(r"\s+", "", truth))  # the texts used here have no case to fold
        self.feedback_cer.append(edits / chars)
        self.feedback_chars += chars
        self.feedback_edits += edits


def _one_substitution(text: str) -> str:
    return text[:-1] + ("#" if text[-1] != "#" else "%")


def _feedback_by_id(url: str, expected: Expected, answers: list[requests.Response]) -> None:
    """Feedback by request id for every image that read some text, each call on a new connection, so
    most reach another worker than the one that read the image: the store is the machine's, not the
    worker's (with per-worker stores, two of three such calls were 404 under three workers)."""
    for answer in answers:
        results = answer.json()["results"]
        for index, result in enumerate(results):
            if not result["text"]:
                continue
            truth = _one_substitution(result["text"])
            body = {"request_id": answer.json()["request_id"], "text": truth}
            if len(results) > 1:
                body["image_index"] = index
            response = requests.post(f"{url}/v1/feedback", json=body, timeout=60)
            assert response.status_code == 200, response.text
            assert (response.json()["source"], response.json()["edits"]) == ("stored", 1)
            expected.add_feedback(1, truth)


def _feedback(session: requests.Session, url: str, expected: Expected) -> None:
    """Two feedback calls by recognised text and three malformed ones."""
    for recognized, truth, edits in (("TOTAL 99.00", "TOTAL 99.50", 1), ("CHANGE 7.50", "CHANGE 7.50", 0)):
        response = session.post(f"{url}/v1/feedback", json={"recognized_text": recognized, "model_version": V,
                                                            "text": truth}, timeout=60)
        assert response.status_code == 200 and response.json()["edits"] == edits, response.text
        expected.add_feedback(edits, truth)

    for body, status in (({"request_id": "x", "text": 5}, 400),
                         ({"recognized_text": "A", "model_version": "0.0.1-nope", "text": "A"}, 422)):
        response = session.post(f"{url}/v1/feedback", json=body, timeout=60)
        assert response.status_code == status and "error" in response.json()
    form = session.post(f"{url}/v1/feedback", data={"text": "A"}, timeout=60)
    assert form.status_code == 415 and form.json()["error"] == "unsupported_media_type"


# -- what every scrape must show -------------------------------------------------------------------

def _check_traffic(seen: Scrape, expected: Expected) -> None:
    assert seen.total("ocr_requests_total", status="200", model_version=V) == expected.answered
    for (status, code), count in BAD_EXPECTED.items():
        assert seen.total("ocr_errors_total", code=code) == count, code
    for status in {status for status, _ in BAD_EXPECTED}:
        sent = sum(n for (s, _), n in BAD_EXPECTED.items() if s == status)
        assert seen.total("ocr_requests_total", status=status, model_version="none") == sent, status
    assert seen.total("ocr_requests_total") == expected.answered + sum(BAD_EXPECTED.values())
    assert seen.total("ocr_errors_total") == sum(BAD_EXPECTED.values())
    assert seen.total("ocr_requests_total", status="405") == 0 and seen.total("ocr_errors_total",
                                                                              code="method_not_allowed") == 0

    for stage in STAGES:
        labels = {"stage": stage, "model_version": V}
        assert seen.total("ocr_stage_duration_seconds_count", **labels) == expected.images, stage
        assert seen.total("ocr_stage_duration_seconds_bucket", le="+Inf", **labels) == expected.images
        assert seen.total("ocr_stage_duration_seconds_sum", **labels) == pytest.approx(
            expected.stage_seconds[stage], abs=1e-4), stage
    assert seen.total("ocr_request_duration_seconds_count", model_version=V) == expected.answered
    # a request's wall time covers its images' stages
    assert seen.total("ocr_request_duration_seconds_sum", model_version=V) >= sum(expected.stage_seconds.values())
    assert seen.total("ocr_lines_per_image_count", model_version=V) == expected.images
    assert seen.total("ocr_lines_per_image_sum", model_version=V) == expected.lines
    assert seen.total("ocr_line_confidence_count", model_version=V) == expected.lines
    assert seen.total("ocr_line_confidence_sum", model_version=V) == pytest.approx(expected.score_sum, abs=1e-3)
    assert seen.total("ocr_image_pixels_count") == expected.images
    assert seen.total("ocr_image_pixels_sum") == expected.pixels
    assert seen.total("ocr_inflight_requests") == 0

    assert seen.total("ocr_feedback_cer_count", model_version=V) == len(expected.feedback_cer)
    assert seen.total("ocr_feedback_cer_sum", model_version=V) == pytest.approx(sum(expected.feedback_cer))
    assert seen.total("ocr_feedback_cer_bucket", model_version=V, le="0.0") == expected.feedback_cer.count(0.0)
    assert seen.total("ocr_feedback_reference_chars_total", model_version=V) == expected.feedback_chars
    assert seen.total("ocr_feedback_char_errors_total", model_version=V) == expected.feedback_edits
    assert seen.total("ocr_feedback_total", result="recorded") == len(expected.feedback_cer)
    assert seen.total("ocr_feedback_total", result="invalid") == 3


def _model_info(seen: Scrape) -> dict[int, dict[str, str]]:
    info = {int(labels["pid"]): labels for labels, value in seen.select("ocr_model_info") if value == 1}
    assert len(info) == len(seen.select("ocr_model_info")), "one series per worker, each at 1"
    return info


def _check_model_info(seen: Scrape, server: RunningServer) -> dict[int, dict[str, str]]:
    info = _model_info(seen)
    assert set(info) == set(server.worker_pids())
    assert sorted(labels["worker"] for labels in info.values()) == [str(i) for i in range(server.workers)]
    assert {(labels["version"], labels["backend"], labels["device"]) for labels in info.values()} == {
        (V, "paddle", "cpu")}
    return info


def test_three_workers_one_view_and_a_killed_worker(model_repo: Path, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    _plant_stale_counter(metrics_dir)
    master_port = free_port()
    env = {"OCR_METRICS_DIR": str(metrics_dir), "OCR_METRICS_BIND": f"127.0.0.1:{master_port}"}
    with gunicorn_server(model_repo, tmp_path / "logs", workers=3, threads=2, env=env) as server:
        master = f"http://127.0.0.1:{master_port}/metrics"
        assert not (metrics_dir / "counter_999999.db").exists()

        # good and bad requests at once, each on its own connection so that every worker takes some
        expected = Expected()
        calls = _good_calls(server.url) + _bad_calls(server.url)
        with ThreadPoolExecutor(len(calls)) as pool:
            responses = list(pool.map(lambda call: call(), calls))
        for response in responses[:6]:
            expected.add_answer(response)
        _feedback_by_id(server.url, expected, responses[:6])
        refusals = [status_and_code for status_and_code, n in BAD_EXPECTED.items() for _ in range(n)]
        refusals.append(("405", "method_not_allowed"))
        for response, status_and_code in zip(responses[6:], refusals, strict=True):
            assert (str(response.status_code), response.json()["error"]) == status_and_code
        with requests.Session() as session:
            answer = session.post(f"{server.url}/v1/ocr", data=_png(GOOD_PAGES["receipt"]),
                                  headers={"Content-Type": "image/png"}, timeout=300)
            expected.add_answer(answer)
            _feedback(session, server.url, expected)

        # several scrapes, answered by different workers and by the master: all show the same totals
        for seen in [scrape(f"{server.url}/metrics") for _ in range(6)] + [scrape(master)]:
            _check_traffic(seen, expected)
            _check_model_info(seen, server)
            assert seen.total("ocr_model_loads_total", result="success") == 3
            assert seen.total("ocr_model_load_seconds_count", phase="warmup") == 3
        served = _per_process(metrics_dir, "counter_*.db", "ocr_requests_total")
        assert sum(1 for count in served.values() if count) >= 2, f"requests per worker: {served}"

        # kill the worker that is running a slow request: SIGKILL, so no hook of its own runs
        slow = [("image", (f"{i}.png", _png([f"ITEM {n:02d} WIDGET {n * 7}.{n:02d}" for n in range(12)]),
                           "image/png")) for i in range(3)]
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(requests.post, f"{server.url}/v1/ocr", files=slow, timeout=300)
            victim = _wait_for(lambda: _busy_worker(metrics_dir), timeout=120,
                               what="the slow request to be in flight", interval=0.02)
            assert scrape(master).total("ocr_inflight_requests") == 1
            victim_slot = _model_info(scrape(master))[victim]["worker"]
            os.kill(victim, signal.SIGKILL)
            with pytest.raises(requests.ConnectionError):
                pending.result()

        # its live series go (while its replacement is still loading), its counters stay
        def victim_gone() -> Scrape | None:
            seen = scrape(master)
            return seen if victim not in _model_info(seen) else None

        gone = _wait_for(victim_gone, timeout=60, what="the killed worker's series to go")
        assert set(_model_info(gone)) <= set(server.worker_pids()) - {victim}
        assert gone.total("ocr_inflight_requests") == 0
        assert (metrics_dir / f"counter_{victim}.db").exists()

        def replaced() -> Scrape | None:
            seen = scrape(master)
            info = _model_info(seen)
            return seen if len(info) == server.workers and set(info) == set(server.worker_pids()) else None

        after = _wait_for(replaced, timeout=180, what="the replacement worker to load")
        info = _check_model_info(after, server)
        newcomer = (set(info) - set(_model_info(gone))).pop()
        assert newcomer != victim and info[newcomer]["worker"] == victim_slot
        _check_traffic(after, expected)  # nothing counted was lost; the killed request was never answered
        assert after.total("ocr_model_loads_total", result="success") == 4
        assert scrape(f"{server.url}/metrics").total("ocr_requests_total") == after.total("ocr_requests_total")


def test_master_port_answers_while_the_only_worker_thread_is_busy(model_repo: Path, tmp_path: Path) -> None:
    """With one worker thread, an app scrape must wait for the OCR ahead of it; the master's does not."""
    master_port = free_port()
    env = {"OCR_METRICS_BIND": f"127.0.0.1:{master_port}"}
    with gunicorn_server(model_repo, tmp_path / "logs", workers=1, threads=1, env=env) as server:
        master = f"http://127.0.0.1:{master_port}/metrics"
        page = _png([f"LINE {n:02d} PRICE {n * 3}.99" for n in range(10)])
        files = [("image", (f"{i}.png", page, "image/png")) for i in range(2)]
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(requests.post, f"{server.url}/v1/ocr", files=files, timeout=300)
            during = _wait_for(lambda: _when_in_flight(scrape(master)), timeout=120,
                               what="the master to show the request in flight", interval=0.05)
            assert during.total("ocr_requests_total") == 0
            queued = scrape(f"{server.url}/metrics")  # served by the worker's one thread, after the OCR
            assert pending.result().status_code == 200
        assert queued.total("ocr_inflight_requests") == 0
        assert queued.total("ocr_requests_total", status="200") == 1

