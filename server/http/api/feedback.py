"""`POST /v1/feedback`: the true text of an image we read, turned into online accuracy per model version.

A client (a clerk correcting a field, a reconciliation job) sends what the image really said:

    {"request_id": "<X-Request-Id of the OCR call>", "text": "<true text>"}           # + "image_index"
    {"recognized_text": "<text we returned>", "model_version": "1.0.0-ppocrv4", "text": "<true text>"}

The first form looks the result up in the machine's store of recent results, which every worker
writes and reads (`server.quality.recent_results`), so it is found whichever worker answers, and
after a restart, as long as it is among the most recent; past that it is 404 `unknown_request_id`,
asking for the second form. Sending both forms at once always works: the stored result is used when
the store still has it, the client's copy otherwise. The character error rate (`server.quality.textmetrics`) feeds
`ocr_feedback_cer` and the edit/character counters, labelled with the version that read the image.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from server.governance.roles import Action
from server.http.auth import authorize
from server.http.context import current_context
from server.http.errors import ApiError
from server.http.instrumentation import recent_results
from server.observability.metrics import FEEDBACK_CER, FEEDBACK_CHARS, FEEDBACK_ERRORS, FEEDBACK_REQUESTS
from server.quality.recent_results import AlreadyRecorded, ImageIndexError, StoreUnavailable, UnknownRequest
from server.quality.textmetrics import cer, edit_distance, normalize_text

bp = Blueprint("feedback", __name__)

# A receipt is ~2 thousand characters; the bound keeps one edit distance to milliseconds.
MAX_TEXT_CHARS = 50_000
_FIELDS = ("request_id", "image_index", "text", "recognized_text", "model_version")
# How refusals are counted in ocr_feedback_total{result} (everything else is "invalid").
_OUTCOMES = {"unknown_request_id": "unknown_request", "feedback_already_recorded": "duplicate",
             "state_unavailable": "unavailable"}


def _string(body: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, "invalid_feedback", f"'{name}' is required")
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid_feedback", f"'{name}' must be a string")
    if len(value) > MAX_TEXT_CHARS:
        raise ApiError(413, "feedback_too_large", f"'{name}' is longer than {MAX_TEXT_CHARS} characters")
    return value


def _read_body() -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the feedback as application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise ApiError(400, "invalid_feedback", f"unknown field(s) {', '.join(unknown)}; known: {', '.join(_FIELDS)}")
    return body


def _image_index(body: dict[str, Any]) -> int | None:
    value = body.get("image_index")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ApiError(400, "invalid_feedback", "'image_index' must be a non-negative integer")
    return value


def _known_version(version: str) -> str:
    """Only versions this server has can become label values (clients must not mint new series)."""
    if current_context().lifecycle.knows(version):
        return version
    raise ApiError(422, "unknown_model_version", f"model_version {version!r} is not a version of this server")


def _resolve(body: dict[str, Any]) -> tuple[str, str, str]:
    """(model version, recognised text, source) for the feedback in `body`."""
    request_id = _string(body, "request_id")
    recognized = _string(body, "recognized_text")
    version = _string(body, "model_version")
    index = _image_index(body)
    if request_id is None and recognized is None:
        raise ApiError(400, "invalid_feedback", "give 'request_id', or 'recognized_text' with 'model_version'")
    if (recognized is None) != (version is None):
        raise ApiError(400, "invalid_feedback", "'recognized_text' and 'model_version' go together")
    if index is not None and request_id is None:
        raise ApiError(400, "invalid_feedback", "'image_index' refers to a 'request_id'")
    if request_id is not None:
        try:
            stored_version, stored_text = recent_results().claim(request_id, index)
            return stored_version, stored_text, "stored"
        except UnknownRequest:
            if recognized is None:
                raise ApiError(
                    404, "unknown_request_id",
                    f"request {request_id} is not among the recent results (only the most recent are "
                    "kept): send 'recognized_text' and 'model_version' from the OCR response with the feedback",
                ) from None
        except AlreadyRecorded as exc:
            raise ApiError(409, "feedback_already_recorded", str(exc)) from None
        except ImageIndexError as exc:
            raise ApiError(400, "invalid_image_index", str(exc)) from None
        except StoreUnavailable as exc:
            if recognized is None:
                raise ApiError(503, "state_unavailable", f"{exc}: send 'recognized_text' and 'model_version' "
                               "from the OCR response with the feedback") from None
    assert recognized is not None and version is not None
    return _known_version(version), recognized, "client"


@bp.post("/v1/feedback")
def feedback() -> Response:
    authorize(Action.FEEDBACK)  # open unless OCR_INFERENCE_AUTH=1
    try:
        body = _read_body()
        truth = _string(body, "text", required=True)
        assert truth is not None
        version, recognized, source = _resolve(body)
    except ApiError as exc:
        FEEDBACK_REQUESTS.labels(result=_OUTCOMES.get(exc.code, "invalid")).inc()
        raise
    edits = edit_distance(recognized, truth)
    reference_chars = len(normalize_text(truth))
    rate = cer(recognized, truth)
    FEEDBACK_CER.labels(model_version=version).observe(rate)
    FEEDBACK_CHARS.labels(model_version=version).inc(reference_chars)
    FEEDBACK_ERRORS.labels(model_version=version).inc(edits)
    FEEDBACK_REQUESTS.labels(result="recorded").inc()
    current_context().lifecycle.observe_feedback(version, max(0.0, 1.0 - rate))  # for a canary's judge
    return jsonify({
        "request_id": body.get("request_id"),
        "model_version": version,
        "source": source,
        "cer": round(rate, 6),
        "edits": edits,
        "reference_chars": reference_chars,
    })
