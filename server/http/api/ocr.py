"""`POST /v1/ocr`: images and documents in (raw body, multipart or JSON base64), text lines out.

Read top to bottom: take the inputs and options out of the request (`server.http.inputs`,
`server.http.options`), open every input (`server.documents.sources`: its kind from its bytes, its
pages counted, selected and size-checked) before touching a model, check the request's page budget,
hold one model version for the whole request (the stable one, or a canary candidate for the clients in
its share), then read one page at a time - recognised, or answered
from a PDF's own text layer - and answer with one result per page and which version served it.
"""

from __future__ import annotations

import time
from contextlib import ExitStack, closing
from functools import partial
from typing import Any, Callable, Iterator, TypeVar

from flask import Blueprint, Response, g, jsonify, request

from server.documents.errors import DecodeError
from server.documents.sources import Page, Source, open_source
from server.fields import extract_fields
from server.governance.roles import Action
from server.http import instrumentation
from server.http.auth import authorize
from server.http.context import ServerContext, current_context
from server.http.errors import ApiError
from server.http.inputs import read_request
from server.http.options import Options, parse_options
from server.lifecycle import Lifecycle, LoadedModel, NotReadyError
from server.pipeline.types import ImageResult

bp = Blueprint("ocr", __name__)
instrumentation.instrument(bp)

T = TypeVar("T")


def _for_input(index: int, count: int, step: Callable[[], T]) -> T:
    """Run `step` on input `index`; in a request of several inputs an error says which one failed."""
    try:
        return step()
    except DecodeError as exc:
        if count > 1:
            exc.details["image_index"] = index
        raise


def _client_key() -> str:
    """Who the caller is, for canary routing: its X-Client-Id, else its address (one client, one version)."""
    return request.headers.get("X-Client-Id") or request.remote_addr or ""


def _hold_model(stack: ExitStack, lifecycle: Lifecycle) -> tuple[LoadedModel, bool]:
    """Hold the version that serves this client (and whether it is a canary) until `stack` closes, or
    answer 503 while none has loaded."""
    try:
        return stack.enter_context(lifecycle.hold_routed(_client_key()))
    except NotReadyError as exc:
        err = ApiError(503, "model_not_ready", f"{exc}; retry shortly")
        err.headers["Retry-After"] = "5"
        raise err from None


def _open_all(stack: ExitStack, ctx: ServerContext, blobs: list[bytes], options: Options) -> list[Source]:
    """Open every input and check the request's page budget: OCR_MAX_IMAGES is the most results (images
    and document pages together) one request may ask for, as each holds a worker thread for its OCR."""
    sources = []
    for index, blob in enumerate(blobs):
        source = _for_input(index, len(blobs), partial(open_source, blob, ctx.documents, options.pages,
                                                       options.pdf_text, ctx.pdf_renderer))
        stack.callback(source.close)
        sources.append(source)
    total, limit = sum(len(source.numbers) for source in sources), ctx.settings.max_images_per_request
    if total > limit:
        raise ApiError(413, "too_many_images",
                       f"{total} pages to read in one request (images and document pages); the limit is {limit} "
                       "(OCR_MAX_IMAGES): send fewer, or choose pages with the pages option",
                       pages=total, max_images=limit)
    return sources


def _pages(index: int, count: int, source: Source) -> Iterator[Page]:
    """The pages of input `index`, a failure on one of them named by its input and page."""
    with closing(source.pages()) as pages:
        while (page := _for_input(index, count, partial(next, pages, None))) is not None:
            yield page


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _page_json(index: int, page: Page, result: ImageResult | None) -> dict[str, Any]:
    """One result: where it came from, then lines as the pipeline or the PDF's text layer gave them."""
    if result is not None:
        lines, stages = result.lines, (result.timings.det, result.timings.cls, result.timings.rec)
    else:
        lines, stages = page.layer or [], (0.0, 0.0, 0.0)
    return {
        "input": index,
        "page": page.number,
        "source": "ocr" if result is not None else "text_layer",
        "width": page.width,
        "height": page.height,
        "lines": [line.to_json() for line in lines],
        "text": "\n".join(line.text for line in lines),
        "timing_ms": {
            "decode": _ms(page.read_s),
            "det": _ms(stages[0]),
            "cls": _ms(stages[1]),
            "rec": _ms(stages[2]),
            "total": _ms(page.read_s + sum(stages)),
        },
    }


def _add_fields(entry: dict[str, Any], kind: str, lines: list[Any]) -> None:
    start = time.perf_counter()
    entry["fields"] = extract_fields(kind, lines).to_json()
    timing = entry["timing_ms"]
    spent = _ms(time.perf_counter() - start)
    timing["fields"] = spent
    timing["total"] = round(timing.pop("total") + spent, 2)  # and kept last


@bp.post("/v1/ocr")
def ocr() -> Response:
    started = time.perf_counter()
    authorize(Action.INFER)  # open unless OCR_INFERENCE_AUTH=1
    ctx = current_context()
    blobs, raw_options = read_request(request, ctx.settings.max_images_per_request)
    options = parse_options(raw_options, ctx.settings)

    results: list[dict[str, Any]] = []
    observed: list[tuple[ImageResult, float]] = []  # the recognised pages, for the metrics
    texts: list[str | None] = []  # what the model read, per result (None: a text-layer page)
    with ExitStack() as stack:
        sources = _open_all(stack, ctx, blobs, options)
        model, canary = _hold_model(stack, ctx.lifecycle)
        instrumentation.model_chosen(model.version)
        shadow = None if canary else ctx.lifecycle.shadow_ticket()  # the candidate reads it too, later
        for index, source in enumerate(sources):
            for page in _pages(index, len(sources), source):
                result = model.pipeline.run(page.image, options.ocr) if page.image is not None else None
                entry = _page_json(index, page, result)
                if shadow is not None and result is not None and page.image is not None:
                    shadow.add(page.image, entry["text"])
                page.image = None  # one decoded page at a time (a shadowed page is kept by its ticket)
                if options.fields is not None:
                    _add_fields(entry, options.fields, result.lines if result is not None else page.layer or [])
                results.append(entry)
                if result is not None:
                    observed.append((result, page.read_s))
                texts.append(entry["text"] if result is not None else None)

    response = jsonify({
        "request_id": g.request_id,
        "model": {"name": model.name, "version": model.version, "canary": canary},
        "results": results,
        "timing_ms": {"total": _ms(time.perf_counter() - started)},
    })
    instrumentation.record_results(model.version, observed, texts)
    if shadow is not None:
        ctx.lifecycle.read_in_shadow(shadow, options.ocr)
    return response
