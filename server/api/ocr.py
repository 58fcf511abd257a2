"""`POST /v1/ocr`: images in (raw body, multipart or JSON base64), text lines out.

Read top to bottom: take the images and options out of the request, decode and validate every image
before touching a model, hold one model version for the whole request, answer with which version
served it.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from typing import Any, Mapping

from flask import Blueprint, Request, Response, g, jsonify, request

from server import instrumentation
from server.context import current_context
from server.decode import decode_image
from server.errors import ApiError
from server.lifecycle.manager import NotReadyError
from server.pipeline import RequestOptions

bp = Blueprint("ocr", __name__)

_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_IMAGE_KEYS = {"image", "images"}


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ApiError(400, "invalid_option", f"{name} must be a boolean, got {value!r}")


def _number(name: str, value: Any, kind: type, low: float, high: float) -> Any:
    if isinstance(value, bool):
        raise ApiError(400, "invalid_option", f"{name} must be a number, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ApiError(400, "invalid_option", f"{name} must be a number, got {value!r}") from None
    if not low <= number <= high:
        raise ApiError(400, "invalid_option", f"{name} must be within [{low}, {high}], got {number}")
    return number


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ApiError(400, "invalid_option", f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


_OPTION_PARSERS = {
    "use_cls": lambda v: _bool("use_cls", v),
    "det_limit_side_len": lambda v: _number("det_limit_side_len", v, int, 16, 4000),
    "det_limit_type": lambda v: _choice("det_limit_type", v, ("min", "max")),
    "det_thresh": lambda v: _number("det_thresh", v, float, 0.01, 0.99),
    "det_box_thresh": lambda v: _number("det_box_thresh", v, float, 0.0, 1.0),
    "det_unclip_ratio": lambda v: _number("det_unclip_ratio", v, float, 0.5, 5.0),
    "drop_score": lambda v: _number("drop_score", v, float, 0.0, 1.0),
}


def parse_options(raw: Mapping[str, Any]) -> RequestOptions:
    """Validate request options; an unknown name is an error, not silently ignored (typos)."""
    unknown = sorted(set(raw) - set(_OPTION_PARSERS))
    if unknown:
        raise ApiError(
            400, "unknown_option",
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(_OPTION_PARSERS))}",
        )
    return RequestOptions(**{name: _OPTION_PARSERS[name](value) for name, value in raw.items()})


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise ApiError(400, "invalid_base64", f"{where} must be a base64 string")
    try:
        return base64.b64decode(_DATA_URL.sub("", value.strip(), count=1), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_base64", f"{where} is not valid base64") from None


def _from_json(req: Request) -> tuple[list[bytes], dict[str, Any]]:
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
        if not isinstance(body["images"], list) or not body["images"]:
            raise ApiError(400, "invalid_json", "'images' must be a non-empty list of base64 strings")
        images = [_b64(item, f"images[{i}]") for i, item in enumerate(body["images"])]
    else:
        raise ApiError(400, "missing_image", "the JSON body has no 'image' or 'images'")
    return images, {k: v for k, v in body.items() if k not in _IMAGE_KEYS}


def _from_multipart(req: Request) -> tuple[list[bytes], dict[str, Any]]:
    parts = req.files.getlist("image")
    if not parts:
        raise ApiError(400, "missing_image", "the multipart body has no part named 'image'")
    return [part.read() for part in parts], dict(req.form.items())


def read_request(req: Request) -> tuple[list[bytes], dict[str, Any]]:
    """(image bytes, raw options) from any of the accepted body encodings; query options apply to all."""
    mimetype = req.mimetype
    if mimetype == "application/json":
        images, options = _from_json(req)
    elif mimetype == "multipart/form-data":
        images, options = _from_multipart(req)
    elif mimetype.startswith("image/") or mimetype == "application/octet-stream":
        images, options = [req.get_data(cache=False)], {}
    else:
        raise ApiError(
            415, "unsupported_media_type",
            f"Content-Type {mimetype or '(none)'} is not accepted: send image/* or application/octet-stream "
            "with the raw image, multipart/form-data with 'image' parts, or application/json with base64",
        )
    return images, {**req.args.to_dict(), **options}


@bp.post("/v1/ocr")
def ocr() -> Response:
    started = time.perf_counter()
    ctx = current_context()
    blobs, raw_options = read_request(request)
    if len(blobs) > ctx.settings.max_images_per_request:
        raise ApiError(413, "too_many_images",
                       f"{len(blobs)} images in one request; the limit is {ctx.settings.max_images_per_request}")
    options = parse_options(raw_options)

    decoded = []
    for index, blob in enumerate(blobs):
        start = time.perf_counter()
        try:
            decoded.append((decode_image(blob, ctx.settings.max_image_pixels), time.perf_counter() - start))
        except ApiError as exc:
            if len(blobs) > 1:
                exc.details["image_index"] = index
            raise

    try:
        with ctx.manager.acquire() as model:
            instrumentation.model_chosen(model.version)
            results = [(model.pipeline.run(image, options), seconds) for image, seconds in decoded]
    except NotReadyError as exc:
        err = ApiError(503, "model_not_ready", str(exc))
        err.headers["Retry-After"] = "5"
        raise err from None

    body = {
        "request_id": g.request_id,
        "model": {"name": model.name, "version": model.version},
        "results": [
            {
                "width": result.width,
                "height": result.height,
                "lines": [line.to_json() for line in result.lines],
                "text": result.text,
                "timing_ms": {
                    "decode": round(decode_s * 1000, 2),
                    "det": round(result.timings.det * 1000, 2),
                    "cls": round(result.timings.cls * 1000, 2),
                    "rec": round(result.timings.rec * 1000, 2),
                    "total": round((decode_s + result.timings.det + result.timings.cls + result.timings.rec) * 1000, 2),
                },
            }
            for result, decode_s in results
        ],
        "timing_ms": {"total": round((time.perf_counter() - started) * 1000, 2)},
    }
    response = jsonify(body)
    response.headers["X-Model-Version"] = model.version
    instrumentation.record_results(model.version, results)
    return response
