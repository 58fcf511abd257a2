"""Hot swap across runtimes under load: Paddle PP-OCRv4 -> ONNX PP-OCRv6 small -> back to Paddle, on one
real Gunicorn server (2 workers x 4 threads) with 6 clients posting without pause.

The PP-OCRv6 version is published with its dictionary's digits permuted (variant 3, see
tests/support/lifecycle.py), so each response's text proves which network read it: a response whose
X-Model-Version header says one version while the other version's runtime answered fails the check.
The metrics scraped at the end must account for every answer under the version that gave it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from server.repository.layout import ModelRepository
from server.repository.publish import publish
from tests.support.lifecycle import (
    ADMIN_TOKEN,
    Admin,
    expect_versions,
    expected_text,
    load_image,
    make_source,
    wait_converged,
    wait_for,
    write_golden_set,
)
from tests.support.load import LoadGenerator
from tests.support.metrics import scrape
from tests.support.server import PADDLE_VERSION, ONNX_MODELS, gunicorn_server

CONVERGE_BOUND_S = 300.0  # two workers load one after the other while the clients keep both cores busy
V6_SMALL = ONNX_MODELS["ppocrv6_small"]


def test_swap_paddle_to_onnx_and_back_under_load(onnx_repo: Path, tmp_path: Path) -> None:
    repo_root, work = tmp_path / "models", tmp_path / "work"
    publish(onnx_repo / "ppocr" / PADDLE_VERSION, ModelRepository(repo_root), PADDLE_VERSION, created_by="tests")
    write_golden_set(repo_root / "golden")
    expected = {PADDLE_VERSION: expected_text(0), V6_SMALL: expected_text(3)}
    env = {"OCR_ADMIN_TOKEN": ADMIN_TOKEN, "OCR_STATE_DIR": str(tmp_path / "state"), "OCR_MODEL_POLL_S": "1",
           "OCR_MODEL_DEBOUNCE_S": "0.3", "OCR_MODEL_SETTLE_S": "2", "OCR_WARMUP_SHAPES": "320x320",
           "OCR_TIMEOUT": "600"}
    with gunicorn_server(repo_root, tmp_path / "logs", workers=2, threads=4, env=env) as server:
        admin = Admin(server.url)
        load = LoadGenerator(server.url, [load_image()], expect_versions(expected), clients=6)
        load.start()
        try:
            with load.window() as window:
                wait_for(lambda: len(load.outcomes) >= 6, 180, "answers from the Paddle version")
                before = scrape(f"{server.url}/metrics")
                source = make_source(onnx_repo / "ppocr" / V6_SMALL, work / "src-v6", k=3)
                staged = publish(source, ModelRepository(work / "staged"), V6_SMALL, created_by="tests")
                os.rename(staged, repo_root / "ppocr" / V6_SMALL)  # appears whole, as ops publish
                wait_converged(admin, server.worker_pids(), V6_SMALL, CONVERGE_BOUND_S)
                listing = {v["version"]: v for v in admin.models()["versions"]}
                assert listing[V6_SMALL]["gate"]["passed"], listing[V6_SMALL]

                response = admin.rollback()  # back to the Paddle version, pinned
                assert response.status_code == 202, response.text
                assert response.json()["pin"]["version"] == PADDLE_VERSION
                wait_converged(admin, server.worker_pids(), PADDLE_VERSION, CONVERGE_BOUND_S)
                back = time.monotonic()
                wait_for(lambda: len(load.between(back, time.monotonic())) >= 12, 180, "12 answers after the way back")
                assert {o.version for o in load.between(back, time.monotonic())} == {PADDLE_VERSION}
        finally:
            load.stop()
        after = scrape(f"{server.url}/metrics")

    window.assert_clean(minimum=30)
    served = [o.version for o in sorted(window.outcomes, key=lambda o: o.started)]
    assert served[0] == PADDLE_VERSION and V6_SMALL in served  # Paddle, then ONNX, then Paddle again

    # The metrics of both workers together account for every answer, under the version that gave it;
    # the Paddle version's counters survived the two swaps (they only grew).
    for version in (PADDLE_VERSION, V6_SMALL):
        answered = sum(o.version == version and o.status == 200 for o in load.outcomes)
        assert after.total("ocr_requests_total", status="200", model_version=version) == answered, version
        assert after.total("ocr_request_duration_seconds_count", model_version=version) == answered, version
    assert before.total("ocr_requests_total", model_version=V6_SMALL) == 0
    assert 0 < before.total("ocr_requests_total", model_version=PADDLE_VERSION) <= after.total(
        "ocr_requests_total", model_version=PADDLE_VERSION)
    assert after.total("ocr_model_swaps_total") >= 4  # each of 2 workers: to PP-OCRv6 and back
    serving = {(labels["version"], labels["backend"]) for labels, value in after.select("ocr_model_info") if value}
    assert serving == {(PADDLE_VERSION, "paddle")}
