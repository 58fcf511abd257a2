"""Request bodies: a raw image or PDF, multipart `image` parts, or JSON base64 `image` / `images`.

`read_request` returns the inputs' bytes in order and the raw options; every way a body can be wrong
is a 4xx `ApiError` that says how to send it instead. What each input is (an image, a multi-page TIFF,
a PDF) is decided from its bytes later (`server.documents.sources`), not from a declared type: clients
label PDFs `application/octet-stream` as often as `application/pdf`.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from flask import Request

from server.http.errors import ApiError

_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,")
_WHITESPACE = re.compile(r"\s+")
_URL_SAFE = str.maketrans("-_", "+/")
_IMAGE_KEYS = {"image", "images"}
_RAW_TYPES = ("application/octet-stream", "application/pdf", "")  # "": a body sent without a Content-Type


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
            f"Content-Type {mimetype} is not accepted{hint}: send image/*, application/pdf or "
            "application/octet-stream with the raw image or PDF, multipart/form-data with 'image' file parts, "
            "or application/json with base64",
        )
    return images, {**req.args.to_dict(), **options}
