"""Observing `POST /v1/ocr`: what ops count and time, and what feedback may later refer to.

Two halves, so that the OCR handler stays readable:
- `instrument` hooks the OCR blueprint (where it is defined) so that every response of its endpoint - 2xx, 4xx or 5xx,
  whichever handler built it - is counted by status and serving version, timed when answered, and
  counted by error code when not; in-flight requests are tracked from the first hook to teardown,
  which Flask runs whatever happens;
- the handler calls `model_chosen` once it holds a model (so a failure past that point is charged to
  that version, and the response names it) and `record_results` once the response is built
  (per recognised page: stages, lines, confidences, pixels; and the texts kept for feedback);
- during a canary, every answered request also becomes a sample of its arm for the judge
  (`Lifecycle.observe`): latency, server error or not, lines and mean confidence.
"""

from __future__ import annotations

import time
from typing import Sequence

from flask import Blueprint, Flask, Response, current_app, g

from server.config import Settings
from server.http.context import current_context
from server.lifecycle.statedir import StatePaths
from server.observability.exposition import check_worker_mode
from server.observability.metrics import (
    ERRORS,
    IMAGE_PIXELS,
    INFLIGHT,
    LINE_CONFIDENCE,
    LINES_PER_IMAGE,
    NO_VERSION,
    REQUEST_DURATION,
    REQUESTS,
    STAGE_DURATION,
    STAGES,
)
from server.pipeline.types import ImageResult
from server.quality.judge import Sample
from server.quality.recent_results import RecentResults

STORE_KEY = "ocr_recent_results"


def recent_results() -> RecentResults:
    """The machine's store of recent results (for `POST /v1/feedback`), shared by every worker."""
    return current_app.extensions[STORE_KEY]


def model_chosen(version: str) -> None:
    """The request now runs on `version`: label its outcome with it, success or failure."""
    g.model_version = version


def record_results(version: str, results: Sequence[tuple[ImageResult, float]], texts: list[str | None]) -> None:
    """Observe every recognised page of an answered request: (result, decode seconds) in request order;
    `texts` is what each entry of the response's `results` holds for feedback (None: the page was
    answered from a PDF's text layer, so not read by the model). Text-layer pages are not observed:
    they say nothing of the model, and would fill its histograms with zeros."""
    g.read_lines = [float(line.score) for result, _ in results for line in result.lines]
    for result, decode_s in results:
        timings = result.timings
        for stage, seconds in zip(STAGES, (decode_s, timings.det, timings.cls, timings.rec)):
            STAGE_DURATION.labels(stage=stage, model_version=version).observe(seconds)
        LINES_PER_IMAGE.labels(model_version=version).observe(len(result.lines))
        confidence = LINE_CONFIDENCE.labels(model_version=version)
        for line in result.lines:
            confidence.observe(float(line.score))
        IMAGE_PIXELS.observe(result.width * result.height)
    recent_results().remember(g.request_id, version, texts)


def _error_code(response: Response) -> str:
    body = response.get_json(silent=True)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return f"http_{response.status_code}"


def _begin() -> None:
    g.ocr_started = time.perf_counter()
    INFLIGHT.inc()


def _count(response: Response) -> Response:
    started = g.get("ocr_started")
    if started is None:
        return response
    status = response.status_code
    version = g.get("model_version", NO_VERSION)
    REQUESTS.labels(status=str(status), model_version=version).inc()
    seconds = time.perf_counter() - started
    if status < 400:
        REQUEST_DURATION.labels(model_version=version).observe(seconds)
    else:
        ERRORS.labels(code=_error_code(response)).inc()
    if version != NO_VERSION and (status < 400 or status >= 500):  # a refused input says nothing of the model
        _observe(version, seconds, status >= 500)
    return response


def _observe(version: str, seconds: float, failed: bool) -> None:
    scores: list[float] = g.get("read_lines", [])
    sample = Sample(time.time(), seconds, failed, not failed and not scores,
                    sum(scores) / len(scores) if scores else None, len(scores))
    current_context().lifecycle.observe(version, sample)


def _end(_exc: BaseException | None) -> None:
    if g.pop("ocr_started", None) is not None:
        INFLIGHT.dec()


def instrument(ocr: Blueprint) -> None:
    """Hook request metrics into the OCR blueprint (once, where it is defined)."""
    ocr.before_request(_begin)
    ocr.after_request(_count)
    ocr.teardown_request(_end)


def install(app: Flask, settings: Settings) -> None:
    """Give `app` the store of recent results, and say if metrics would be per worker."""
    check_worker_mode()
    state = StatePaths(settings.effective_state_dir, settings.pipeline_name)
    app.extensions[STORE_KEY] = RecentResults(state.recent_results, settings.feedback_store_size)
