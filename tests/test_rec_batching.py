"""Cross-request batching of recognition (server.pipeline.batching).

Units on a fake recognition network that reads each crop's grey level back as one character, so every
reading says which crop it came from: rounds, ordering, the bounded wait, failures, shutdown. Then one
real server (Gunicorn, the default PP-OCRv4 weights) with batching on, against the shared server with it
off: concurrent requests read the same.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import pytest

from server.pipeline import OcrPipeline, PipelineSettings
from server.pipeline.batching import BatcherClosedError, BatchPolicy, RecognitionBatchError, RecognitionBatcher
from server.pipeline.rec import TextRecognizer
from server.pipeline.types import RecSettings
from tests.support.images import encode, receipt_lines, render_text
from tests.support.metrics import scrape
from tests.support.server import PADDLE_VERSION, RunningServer, copy_version, gunicorn_server

SETTINGS = RecSettings(width_buckets=(96, 320), batch_size=4, max_batch_width=4 * 320)
CHARSET = ["<blank>", *(chr(0x100 + level) for level in range(256))]


class FakeRecNetwork:
    """Reads each batch row's grey level (its first pixel) as one character; counts runs and their shapes,
    fails rows of a chosen level, can hold a run until released, and refuses to run once closed."""

    def __init__(self, fail_level: int | None = None) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.fail_level = fail_level
        self.release = threading.Event()
        self.release.set()
        self.running = threading.Event()
        self.closed = False
        self.ran_after_close = False
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.closed:
            self.ran_after_close = True
            raise RuntimeError("run after close")
        self.running.set()
        self.release.wait()
        levels = np.rint((batch[:, 0, 0, 0] * 0.5 + 0.5) * 255).astype(int)
        with self._lock:
            self.shapes.append(batch.shape)
        if self.fail_level is not None and self.fail_level in levels:
            raise RuntimeError("could not execute a primitive")
        probs = np.zeros((len(batch), 1, len(CHARSET)), dtype=np.float32)
        probs[np.arange(len(batch)), 0, levels + 1] = 0.9
        return probs

    def close(self) -> None:
        self.closed = True


def crop(level: int, width: int) -> np.ndarray:
    return np.full((48, width, 3), level, dtype=np.uint8)


def text(levels: list[int]) -> list[str]:
    return [CHARSET[level + 1] for level in levels]


@pytest.fixture()
def network() -> FakeRecNetwork:
    return FakeRecNetwork()


@pytest.fixture()
def make_batcher(network: FakeRecNetwork) -> Iterator:
    made: list[RecognitionBatcher] = []

    def make(**policy: object) -> RecognitionBatcher:
        batcher = RecognitionBatcher(TextRecognizer(network, CHARSET), BatchPolicy(**policy))  # type: ignore[arg-type]
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.close()


def read_concurrently(batcher: RecognitionBatcher, jobs: list[list[np.ndarray]],
                      settings: RecSettings = SETTINGS) -> list:
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(batcher.recognize, crops, settings) for crops in jobs]
        return [f.exception() or f.result() for f in futures]


def test_concurrent_requests_share_batches_and_each_gets_its_own_readings_in_order(make_batcher, network) -> None:
    # Alone, each request's 3 narrow crops and 1 wide crop would take 4 single-crop runs: 12 runs.
    jobs = [[crop(10 * r + 1, 60), crop(10 * r + 2, 300), crop(10 * r + 3, 50), crop(10 * r + 4, 90)]
            for r in range(3)]
    batcher = make_batcher(wait_s=30.0, max_requests=3)  # starts once all three wait, not after 30 s
    answers = read_concurrently(batcher, jobs)
    for r, answer in enumerate(answers):
        assert [t for t, _ in answer] == text([10 * r + 1, 10 * r + 2, 10 * r + 3, 10 * r + 4])
    # One round: 9 narrow crops -> 2 full batches of 4 + 1 single; 3 wide -> 3 singles.
    assert sorted(network.shapes) == sorted([(4, 3, 48, 96)] * 2 + [(1, 3, 48, 96)] + [(1, 3, 48, 320)] * 3)


def test_max_lines_sets_the_batch_size_of_a_round(make_batcher, network) -> None:
    batcher = make_batcher(wait_s=30.0, max_requests=2, max_lines=8)
    answers = read_concurrently(batcher, [[crop(1 + k, 80) for k in range(4)], [crop(9 + k, 80) for k in range(4)]])
    assert [t for t, _ in answers[1]] == text([9, 10, 11, 12])
    assert network.shapes == [(8, 3, 48, 96)]


def test_a_lone_request_waits_for_company_only_as_long_as_the_bound(make_batcher, network) -> None:
    batcher = make_batcher(wait_s=0.3, max_requests=4)
    start = time.monotonic()
    answer = batcher.recognize([crop(7, 80)], SETTINGS)
    waited = time.monotonic() - start
    assert [t for t, _ in answer] == text([7])
    assert 0.3 <= waited < 30


def test_requests_whose_batches_would_be_planned_differently_do_not_share_a_round(make_batcher, network) -> None:
    batcher = make_batcher(wait_s=0.5, max_requests=2)
    other = replace(SETTINGS, width_buckets=(128, 320))
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(batcher.recognize, [crop(1, 80)], SETTINGS)
        second = pool.submit(batcher.recognize, [crop(2, 80)], other)
        assert [t for t, _ in first.result()] == text([1])
        assert [t for t, _ in second.result()] == text([2])
    assert sorted(network.shapes) == [(1, 3, 48, 96), (1, 3, 48, 128)]


def test_a_failing_batch_fails_only_the_requests_with_crops_in_it(make_batcher, network) -> None:
    network.fail_level = 66
    batcher = make_batcher(wait_s=30.0, max_requests=3)
    jobs = [[crop(1, 60), crop(66, 300)],  # its wide crop fails, alone in its batch
            [crop(2, 60), crop(3, 60)],    # narrow crops only: batched with the first request's narrow one
            [crop(4, 300)]]                # wide, in a batch of its own
    failed, fine, wide = read_concurrently(batcher, jobs)
    assert isinstance(failed, RecognitionBatchError)
    assert "could not execute a primitive" in str(failed) and isinstance(failed.__cause__, RuntimeError)
    assert [t for t, _ in fine] == text([2, 3])
    assert [t for t, _ in wide] == text([4])
    assert [a[0][0] for a in read_concurrently(batcher, [[crop(5, 60)]] * 3)] == text([5] * 3)  # the runner lives on


def test_close_finishes_queued_work_then_refuses_more(make_batcher, network) -> None:
    batcher = make_batcher(wait_s=30.0, max_requests=8)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(batcher.recognize, [crop(3, 80)], SETTINGS)
        while not batcher._pending:  # queued, its round waiting for company
            time.sleep(0.01)
        batcher.close()  # the round starts now rather than after 30 s
        assert [t for t, _ in waiting.result(timeout=30)] == text([3])
    with pytest.raises(BatcherClosedError):
        batcher.recognize([crop(4, 80)], SETTINGS)
    assert len(network.shapes) == 1


def test_a_pipeline_closes_its_sessions_only_after_the_batch_in_flight_has_run(network) -> None:
    recognizer = TextRecognizer(network, CHARSET)
    batcher = RecognitionBatcher(recognizer, BatchPolicy(wait_s=0.01))
    others = SimpleNamespace(session=FakeRecNetwork())
    pipeline = OcrPipeline(others, None, recognizer, PipelineSettings(rec=SETTINGS), batcher)  # type: ignore[arg-type]
    network.release.clear()
    with ThreadPoolExecutor(2) as pool:
        reading = pool.submit(batcher.recognize, [crop(9, 80)], SETTINGS)
        assert network.running.wait(30)
        closing = pool.submit(pipeline.close)
        time.sleep(0.2)
        assert not closing.done() and not network.closed  # close waits for the run in flight
        network.release.set()
        closing.result(timeout=30)
        assert [t for t, _ in reading.result()] == text([9])
    assert network.closed and others.session.closed and not network.ran_after_close


# -- a real server --------------------------------------------------------------------------------------------


def _page(index: int) -> bytes:
    """Six lines of different lengths (several width buckets), different for every index."""
    lines = receipt_lines(index) + receipt_lines(index + 50) + [f"TOTAL {index}", "THANK YOU FOR SHOPPING WITH US"]
    return encode(render_text(lines))


def _lines(server: RunningServer, body: bytes) -> list[dict]:
    response = server.post_image(body)
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["lines"]


def test_concurrent_requests_with_batching_on_read_what_they_read_with_it_off(
        tmp_path_factory: pytest.TempPathFactory, default_version_dir, shared_server: RunningServer) -> None:
    bodies = [_page(i) for i in range(4)]
    off = [_lines(shared_server, body) for body in bodies]
    root = tmp_path_factory.mktemp("batching") / "models"
    copy_version(default_version_dir, root, PADDLE_VERSION)
    env = {"OCR_REC_BATCH_WAIT_MS": "3000"}  # long: the four requests' rounds surely meet on a busy machine
    with gunicorn_server(root, tmp_path_factory.mktemp("batching-logs"), workers=1, threads=4, env=env) as server:
        before = scrape(f"{server.url}/metrics")
        with ThreadPoolExecutor(4) as pool:
            on = list(pool.map(lambda body: _lines(server, body), bodies))
        after = scrape(f"{server.url}/metrics")
    rounds = after.total("ocr_rec_round_requests_count") - before.total("ocr_rec_round_requests_count")
    requests_in_rounds = after.total("ocr_rec_round_requests_sum") - before.total("ocr_rec_round_requests_sum")
    assert requests_in_rounds == 4 and rounds < 4  # some round held crops of two requests or more
    for got, expected in zip(on, off):
        assert [(line["text"], line["box"]) for line in got] == [(line["text"], line["box"]) for line in expected]
        assert [line["score"] for line in got] == pytest.approx([line["score"] for line in expected], abs=1e-3)
