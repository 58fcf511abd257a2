"""`POST /v1/ocr`: images in (raw body, multipart or JSON base64), text lines out.

Read top to bottom: take the images and options out of the request, check every image's header
(format, declared size) before touching a model, hold one model version for the whole request, decode
and recognise the images one at a time (so a request holds one decoded image, not sixteen), answer
with which version served it.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from contextlib import ExitStack
from functools import partial
from typing import Any, Callable, Mapping, TypeVar

from flask import Blueprint, Request, Response, g, jsonify, request

from server.http import instrumentation
from server.http.context import ServerContext, current_context
from server.documents.decode import open_image, to_bgr
from server.http.errors import ApiError
from server.lifecycle.loader import LoadedModel
from server.lifecycle.manager import NotReadyError
from server.pipeline import RequestOptions
from server.pipeline.types import ImageResult

bp = Blueprint("ocr", __name__)

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------------
# Options: the same names in the query string, multipart form fields or JSON keys.
# ---------------------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ApiError(400, "invalid_option", f"{name} must be a boolean (true/false, 1/0), got {value!r}")


def _integer(name: str, value: Any, low: int, high: int) -> int:
    """An integer, given as a JSON number or a string; 960.0 is accepted, 960.5 is not."""
    if isinstance(value, bool):
        raise ApiError(400, "invalid_option", f"{name} must be an integer, got {value!r}")
    try:
        number = float(value) if isinstance(value, float) else int(str(value).strip())
    except ValueError:
        raise ApiError(400, "invalid_option", f"{name} must be an integer, got {value!r}") from None
    if number != int(number):
        raise ApiError(400, "invalid_option", f"{name} must be an integer, got {value!r}")
    return _within(name, int(number), low, high)


def _real(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool):
        raise ApiError(400, "invalid_option", f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ApiError(400, "invalid_option", f"{name} must be a number, got {value!r}") from None
    return _within(name, number, low, high)


def _within(name: str, number: T, low: float, high: float) -> T:
    if not low <= number <= high:  # also refuses NaN
        raise ApiError(400, "invalid_option", f"{name} must be within [{low}, {high}], got {number}")
    return number


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ApiError(400, "invalid_option", f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


_OPTION_PARSERS: dict[str, Callable[[Any], Any]] = {
    "use_cls": lambda v: _bool("use_cls", v),
    "det_limit_side_len": lambda v: _integer("det_limit_side_len", v, 16, 4000),
    "det_limit_type": lambda v: _choice("det_limit_type", v, ("min", "max")),
    "det_thresh": lambda v: _real("det_thresh", v, 0.01, 0.99),
    "det_box_thresh": lambda v: _real("det_box_thresh", v, 0.0, 1.0),
    "det_unclip_ratio": lambda v: _real("det_unclip_ratio", v, 0.5, 5.0),
    "drop_score": lambda v: _real("drop_score", v, 0.0, 1.0),
}
OPTION_NAMES = tuple(_OPTION_PARSERS)


def parse_options(raw: Mapping[str, Any]) -> RequestOptions:
    """Validate request options. An unknown name is an error, not silently ignored (typos); a JSON
    `null` means "the model's setting", like leaving the option out."""
    unknown = sorted(set(raw) - set(_OPTION_PARSERS))
    if unknown:
        raise ApiError(
            400, "unknown_option",
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(_OPTION_PARSERS))}",
        )
    return RequestOptions(**{
        name: _OPTION_PARSERS[name](value) for name, value in raw.items() if value is not None
    })


# ---------------------------------------------------------------------------------------------------
# Request bodies: raw image, multipart `image` parts, or JSON base64 `image` / `images`.
# ---------------------------------------------------------------------------------------------------

_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,")
_WHITESPACE = re.compile(r"\s+")
_URL_SAFE = str.maketrans("-_", "+/")
_IMAGE_KEYS = {"image", "images"}
_RAW_TYPES = ("application/octet-stream", "")  # "" is a body sent without a Content-Type


def _b64(value: Any, where: str) -> bytes:
    """Decode base64 as people send it: wrapped at 76 columns (`base64 file`), URL-safe, unpadded,
    or as a data URL. Anything outside the alphabet is refused rather than skipped."""
    if not isinstance(value, str):
        raise ApiError(400, "invalid_base64", f"{where} must be a base64 string, got {type(value).__name__}")
    text = _WHITESPACE.sub("", _DATA_URL.sub("", value.strip(), count=1)).translate(_URL_SAFE)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_base64", f"{where} is not valid base64") from None


def _check_count(count: int, limit: int) -> None:
    if count > limit:
        raise ApiError(413, "too_many_images", f"{count} images in one request; the limit is {limit} (OCR_MAX_IMAGES)",
                       count=count, max_images=limit)


def _from_json(req: Request, max_images: int) -> tuple[list[bytes], dict[str, Any]]:
    body = req.get_json(silent=True)
    if body is None:
        raise ApiError(400, "invalid_json", "the request body is not valid JSON")
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the JSON body must be an object with 'image' or 'images'")
    if "image" in body and "images" in body:
        raise ApiError(400, "invalid_json", "give either 'image' or 'images', not both")
    if "image" in body:
        images = [_b64(body["image"], "image")]
    elif "images" in body:
        items = body["images"]
        if not isinstance(items, list) or not items:
            raise ApiError(400, "invalid_json", "'images' must be a non-empty list of base64 strings")
        _check_count(len(items), max_images)
        images = [_b64(item, f"images[{i}]") for i, item in enumerate(items)]
    else:
        raise ApiError(400, "missing_image", "the JSON body has no 'image' or 'images'")
    return images, {k: v for k, v in body.items() if k not in _IMAGE_KEYS}


def _from_multipart(req: Request, max_images: int) -> tuple[list[bytes], dict[str, Any]]:
    unexpected = sorted(set(req.files) - {"image"})
    if unexpected:
        raise ApiError(400, "unexpected_part",
                       f"unexpected file part(s) {', '.join(unexpected)}; send each image as a part named 'image'")
    parts = req.files.getlist("image")
    if not parts:
        if "image" in req.form:
            raise ApiError(400, "missing_image",
                           "'image' was sent as a text field, not a file; with curl use -F image=@receipt.jpg")
        raise ApiError(400, "missing_image", "the multipart body has no file part named 'image'")
    _check_count(len(parts), max_images)
    return [part.read() for part in parts], dict(req.form.items())


def read_request(req: Request, max_images: int) -> tuple[list[bytes], dict[str, Any]]:
    """(image bytes, raw options) from any accepted body encoding; query options apply to all of them,
    and an option given in the body wins over the same option in the query string."""
    mimetype = req.mimetype
    if mimetype == "application/json":
        images, options = _from_json(req, max_images)
    elif mimetype == "multipart/form-data":
        images, options = _from_multipart(req, max_images)
    elif mimetype.startswith("image/") or mimetype in _RAW_TYPES:
        images, options = [req.get_data(cache=False)], {}
    else:
        hint = (" (curl --data-binary sends this by default: add -H 'Content-Type: image/jpeg')"
                if mimetype == "application/x-www-form-urlencoded" else "")
        raise ApiError(
            415, "unsupported_media_type",
            f"Content-Type {mimetype} is not accepted{hint}: send image/* or application/octet-stream with the "
            "raw image, multipart/form-data with 'image' file parts, or application/json with base64",
        )
    return images, {**req.args.to_dict(), **options}


# ---------------------------------------------------------------------------------------------------
# The endpoint.
# ---------------------------------------------------------------------------------------------------


def _for_image(index: int, count: int, step: Callable[[], T]) -> T:
    """Run `step` on image `index`; in a request of several images an error says which one failed."""
    try:
        return step()
    except ApiError as exc:
        if count > 1:
            exc.details["image_index"] = index
        raise


def _hold_model(stack: ExitStack, ctx: ServerContext) -> LoadedModel:
    """Hold the active version until `stack` closes, or answer 503 while none has loaded."""
    try:
        return stack.enter_context(ctx.manager.acquire())
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
        model = _hold_model(stack, ctx)
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
    response.headers["X-Model-Version"] = model.version
    instrumentation.record_results(model.version, observed)
    return response
