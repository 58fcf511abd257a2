"""`POST /v1/ocr`: images in (raw body, multipart or JSON base64), text lines out.

Read top to bottom: take the images and options out of the request (`server.http.inputs`,
`server.http.options`), check every image's header (format, declared size) before touching a model,
hold one model version for the whole request, decode and recognise the images one at a time (so a
request holds one decoded image, not sixteen), answer with which version served it.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from functools import partial
from typing import Any, Callable, TypeVar

from flask import Blueprint, Response, g, jsonify, request

from server.documents.decode import open_image, to_bgr
from server.documents.errors import DecodeError
from server.governance.roles import Action
from server.http import instrumentation
from server.http.auth import authorize
from server.http.context import current_context
from server.http.errors import ApiError
from server.http.inputs import read_request
from server.http.options import parse_options
from server.lifecycle import Lifecycle, LoadedModel, NotReadyError
from server.pipeline.types import ImageResult

bp = Blueprint("ocr", __name__)
instrumentation.instrument(bp)

T = TypeVar("T")


def _for_image(index: int, count: int, step: Callable[[], T]) -> T:
    """Run `step` on image `index`; in a request of several images an error says which one failed."""
    try:
        return step()
    except DecodeError as exc:
        if count > 1:
            exc.details["image_index"] = index
        raise


def _hold_model(stack: ExitStack, lifecycle: Lifecycle) -> LoadedModel:
    """Hold the serving version until `stack` closes, or answer 503 while none has loaded."""
    try:
        return stack.enter_context(lifecycle.hold())
    except NotReadyError as exc:
        err = ApiError(503, "model_not_ready", f"{exc}; retry shortly")
        err.headers["Retry-After"] = "5"
        raise err from None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _result_json(result: ImageResult, decode_s: float) -> dict[str, Any]:
    timings = result.timings
    return {
        "width": result.width,
        "height": result.height,
        "lines": [line.to_json() for line in result.lines],
        "text": result.text,
        "timing_ms": {
            "decode": _ms(decode_s),
            "det": _ms(timings.det),
            "cls": _ms(timings.cls),
            "rec": _ms(timings.rec),
            "total": _ms(decode_s + timings.det + timings.cls + timings.rec),
        },
    }


@bp.post("/v1/ocr")
def ocr() -> Response:
    started = time.perf_counter()
    authorize(Action.INFER)  # open unless OCR_INFERENCE_AUTH=1
    ctx = current_context()
    limits = ctx.settings
    blobs, raw_options = read_request(request, limits.max_images_per_request)
    options = parse_options(raw_options)

    count = len(blobs)
    opened, open_s = [], []
    for index, blob in enumerate(blobs):
        start = time.perf_counter()
        opened.append(_for_image(index, count, partial(open_image, blob, limits.max_image_pixels)))
        open_s.append(time.perf_counter() - start)

    observed: list[tuple[ImageResult, float]] = []
    with ExitStack() as stack:
        model = _hold_model(stack, ctx.lifecycle)
        instrumentation.model_chosen(model.version)
        for index, header in enumerate(opened):
            start = time.perf_counter()
            image = _for_image(index, count, partial(to_bgr, header))
            decode_s = open_s[index] + time.perf_counter() - start
            observed.append((model.pipeline.run(image, options), decode_s))

    response = jsonify({
        "request_id": g.request_id,
        "model": {"name": model.name, "version": model.version},
        "results": [_result_json(result, decode_s) for result, decode_s in observed],
        "timing_ms": {"total": _ms(time.perf_counter() - started)},
    })
    instrumentation.record_results(model.version, observed)
    return response
