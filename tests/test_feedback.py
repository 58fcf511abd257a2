"""POST /v1/feedback on the real app (no model needed: results are put in the store as the OCR handler
would), and the bounded store itself, shared by processes through one SQLite file. The end-to-end path
through real OCR and three Gunicorn workers is in test_metrics_gunicorn.py."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from server.http.app import create_app
from server.config import Settings
from server.http.instrumentation import STORE_KEY
from server.quality.recent_results import (
    AlreadyRecorded,
    ImageIndexError,
    RecentResults,
    StoreUnavailable,
    UnknownRequest,
)
from tests.support.server import PADDLE_VERSION, ROOT


@pytest.fixture()
def app(default_version_dir: Any, tmp_path: Path) -> Flask:
    return create_app(Settings(model_repo=ROOT / "models", state_dir=str(tmp_path / "state")), start=False)


def _store(tmp_path: Path, capacity: int, **kwargs: Any) -> RecentResults:
    return RecentResults(tmp_path / "recent.sqlite", capacity, **kwargs)


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _post(client: FlaskClient, body: Any) -> Any:
    return client.post("/v1/feedback", json=body)


def test_feedback_by_request_id_uses_the_stored_result_once(app: Flask) -> None:
    app.extensions[STORE_KEY].remember("req-1", PADDLE_VERSION, ["TOTAL 12.50"])
    client = app.test_client()
    before = {name: _metric(name, model_version=PADDLE_VERSION) for name in (
        "ocr_feedback_cer_count", "ocr_feedback_cer_sum",
        "ocr_feedback_reference_chars_total", "ocr_feedback_char_errors_total")}
    recorded = _metric("ocr_feedback_total", result="recorded")

    response = _post(client, {"request_id": "req-1", "text": "Total 12.80"})
    assert response.status_code == 200, response.json
    # "total12.80": 10 characters after normalisation, one substitution
    assert response.json == {"request_id": "req-1", "model_version": PADDLE_VERSION, "source": "stored",
                             "cer": 0.1, "edits": 1, "reference_chars": 10}
    delta = {name: _metric(name, model_version=PADDLE_VERSION) - value for name, value in before.items()}
    assert delta == pytest.approx({"ocr_feedback_cer_count": 1, "ocr_feedback_cer_sum": 0.1,
                                   "ocr_feedback_reference_chars_total": 10, "ocr_feedback_char_errors_total": 1})
    assert _metric("ocr_feedback_total", result="recorded") == recorded + 1

    again = _post(client, {"request_id": "req-1", "text": "TOTAL 12.80"})
    assert again.status_code == 409 and again.json["error"] == "feedback_already_recorded"
    assert _metric("ocr_feedback_cer_count", model_version=PADDLE_VERSION) == before["ocr_feedback_cer_count"] + 1


def test_unknown_request_id_asks_for_the_recognized_text(app: Flask) -> None:
    client = app.test_client()
    unknown = _post(client, {"request_id": "served-elsewhere", "text": "TOTAL 12.80"})
    assert unknown.status_code == 404 and unknown.json["error"] == "unknown_request_id"
    assert "recognized_text" in unknown.json["message"] and "model_version" in unknown.json["message"]

    fallback = _post(client, {"request_id": "served-elsewhere", "text": "TOTAL 12.80",
                              "recognized_text": "TOTAL 12.80", "model_version": PADDLE_VERSION})
    assert fallback.status_code == 200
    assert fallback.json["source"] == "client" and fallback.json["cer"] == 0 and fallback.json["edits"] == 0


def test_multi_image_request_needs_its_image_index(app: Flask) -> None:
    app.extensions[STORE_KEY].remember("req-2", PADDLE_VERSION, ["FIRST PAGE", "SECOND PAGE"])
    client = app.test_client()
    ambiguous = _post(client, {"request_id": "req-2", "text": "SECOND PAGE"})
    assert ambiguous.status_code == 400 and ambiguous.json["error"] == "invalid_image_index"
    outside = _post(client, {"request_id": "req-2", "image_index": 2, "text": "SECOND PAGE"})
    assert outside.status_code == 400 and outside.json["error"] == "invalid_image_index"
    second = _post(client, {"request_id": "req-2", "image_index": 1, "text": "SECOND PAGE"})
    assert second.status_code == 200 and second.json["cer"] == 0
    first = _post(client, {"request_id": "req-2", "image_index": 0, "text": "FIRST PAGE!"})
    assert first.status_code == 200 and first.json["edits"] == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"request_id": "x"}, 400, "invalid_feedback"),  # no true text
        ({"request_id": "x", "text": 12}, 400, "invalid_feedback"),
        ({"text": "TOTAL"}, 400, "invalid_feedback"),  # nothing to compare with
        ({"recognized_text": "TOTAL", "text": "TOTAL"}, 400, "invalid_feedback"),  # no version
        ({"model_version": PADDLE_VERSION, "request_id": "x", "text": "T"}, 400, "invalid_feedback"),
        ({"image_index": 0, "recognized_text": "T", "model_version": PADDLE_VERSION, "text": "T"},
         400, "invalid_feedback"),
        ({"request_id": "x", "image_index": -1, "text": "T"}, 400, "invalid_feedback"),
        ({"request_id": "x", "image_index": True, "text": "T"}, 400, "invalid_feedback"),
        ({"request_id": "x", "text": "T", "txet": "typo"}, 400, "invalid_feedback"),
        ({"recognized_text": "T", "model_version": "../../etc", "text": "T"}, 422, "unknown_model_version"),
        ({"recognized_text": "T", "model_version": "9.9.9-never", "text": "T"}, 422, "unknown_model_version"),
        ({"recognized_text": "T" * 50_001, "model_version": PADDLE_VERSION, "text": "T"}, 413, "feedback_too_large"),
        (["not", "an", "object"], 400, "invalid_json"),
    ],
)
def test_malformed_feedback_gets_a_json_4xx_and_is_not_recorded(app: Flask, body: Any, status: int, code: str) -> None:
    recorded = _metric("ocr_feedback_total", result="recorded")
    invalid = _metric("ocr_feedback_total", result="invalid")
    response = _post(app.test_client(), body)
    assert response.status_code == status, response.json
    assert response.json["error"] == code and response.json["message"]
    assert _metric("ocr_feedback_total", result="recorded") == recorded
    assert _metric("ocr_feedback_total", result="invalid") == invalid + 1
    assert _metric("ocr_feedback_cer_count", model_version="9.9.9-never") == 0  # no client-made series


def test_feedback_must_be_json(app: Flask) -> None:
    client = app.test_client()
    wrong_type = client.post("/v1/feedback", data="request_id=x&text=y", content_type="application/x-www-form-urlencoded")
    assert wrong_type.status_code == 415 and wrong_type.json["error"] == "unsupported_media_type"
    broken = client.post("/v1/feedback", data="{not json", content_type="application/json")
    assert broken.status_code == 400 and broken.json["error"] == "invalid_json"


def test_store_evicts_oldest_by_count_and_by_characters(tmp_path: Path) -> None:
    store = _store(tmp_path, 3, chars_per_entry=10)  # at most 3 requests and 30 characters
    for i in range(4):
        store.remember(f"r{i}", "1.0.0", [f"text {i}"])  # 6 characters each
    assert len(store) == 3
    with pytest.raises(UnknownRequest):
        store.claim("r0", None)
    store.remember("big", "1.0.0", ["x" * 20])  # r1 goes (count), then r2 (6 + 6 + 20 > 30 characters)
    assert len(store) == 2
    with pytest.raises(UnknownRequest):
        store.claim("r2", None)
    assert store.claim("r3", None) == ("1.0.0", "text 3")
    with pytest.raises(AlreadyRecorded):
        store.claim("r3", 0)
    with pytest.raises(ImageIndexError):
        store.claim("big", 1)


def test_store_of_size_zero_keeps_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path, 0)
    store.remember("r", "1.0.0", ["text"])
    with pytest.raises(UnknownRequest):
        store.claim("r", None)


def test_repeated_request_id_replaces_the_older_result(tmp_path: Path) -> None:
    store = _store(tmp_path, 4)
    store.remember("same", "1.0.0", ["old"])
    store.remember("same", "2.0.0", ["new"])
    assert len(store) == 1 and store.claim("same", None) == ("2.0.0", "new")


def test_a_page_answered_from_a_pdf_text_layer_takes_no_feedback(tmp_path: Path) -> None:
    """The model did not read it: its "CER" would be the PDF producer's, not the version's."""
    store = _store(tmp_path, 4)
    store.remember("pdf", "1.0.0", ["SCANNED PAGE", None])  # page 2 came from the text layer
    with pytest.raises(ImageIndexError, match="text layer"):
        store.claim("pdf", 1)
    assert store.claim("pdf", 0) == ("1.0.0", "SCANNED PAGE")


def _claim_in_child(path: Path, request_id: str, image_index: int, answers: Any) -> None:
    """What another worker does: its own process and connection on the same file."""
    store = RecentResults(path, 8)
    try:
        answers.put(store.claim(request_id, image_index))
    except AlreadyRecorded:
        answers.put("duplicate")


def test_results_are_shared_by_processes_and_claimed_once(tmp_path: Path) -> None:
    store = _store(tmp_path, 8)
    store.remember("served-here", "1.0.0", ["PAGE ONE", "PAGE TWO"])
    context = multiprocessing.get_context("fork")  # like Gunicorn's workers, forked after the store exists
    answers = context.Queue()
    children = [context.Process(target=_claim_in_child, args=(store.path, "served-here", 1, answers))
                for _ in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    outcomes = sorted(str(answers.get(timeout=5)) for _ in children)
    assert outcomes == ["('1.0.0', 'PAGE TWO')", "duplicate", "duplicate", "duplicate"]
    with pytest.raises(AlreadyRecorded):
        store.claim("served-here", 1)  # the parent sees the children's claim too

    restarted = _store(tmp_path, 8)  # a new process after a restart: the same file, the same results
    assert restarted.claim("served-here", 0) == ("1.0.0", "PAGE ONE")


def test_a_store_that_cannot_be_written_fails_feedback_not_ocr(tmp_path: Path, caplog: Any) -> None:
    """A file where the state directory should be (as good as a read-only or full disk, and it holds for
    root too): `remember` says so once and goes on, `claim` raises for the API to answer 503."""
    (tmp_path / "state").write_text("not a directory")
    store = RecentResults(tmp_path / "state" / "recent.sqlite", 8)
    assert store.remember("r", "1.0.0", ["text"]) is False
    assert store.remember("s", "1.0.0", ["text"]) is False
    assert len([record for record in caplog.records if "unavailable" in record.getMessage()]) == 1
    with pytest.raises(StoreUnavailable):
        store.claim("r", None)


def test_feedback_answers_503_while_the_store_is_unavailable(tmp_path: Path, default_version_dir: Any) -> None:
    (tmp_path / "state").write_text("not a directory")
    app = create_app(Settings(model_repo=ROOT / "models", state_dir=str(tmp_path / "state" / "sub")), start=False)
    client = app.test_client()
    unavailable = _post(client, {"request_id": "r", "text": "TOTAL 1.00"})
    assert unavailable.status_code == 503 and unavailable.json["error"] == "state_unavailable"
    assert "recognized_text" in unavailable.json["message"]
    fallback = _post(client, {"request_id": "r", "text": "TOTAL 1.00", "recognized_text": "TOTAL 1.00",
                              "model_version": PADDLE_VERSION})
    assert fallback.status_code == 200 and fallback.json["source"] == "client"
