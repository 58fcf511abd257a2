"""Properties of the request handling, with hypothesis: the option parser accepts exactly what the
OpenAPI document allows (its schemas are the strategies), base64 is read in every form people send it,
multipart bodies give their image parts in order or a clear refusal, and image and PDF headers of any
bytes end in a 4xx `DecodeError` or a readable input - never another exception (which would be a 500).

OCR_PROPERTY_EXAMPLES sets the examples per property (`make fuzz-nightly` raises it).
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
import textwrap
from typing import Any, Iterator

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import HTTPException
from werkzeug.test import EnvironBuilder

from server.config import Settings
from server.documents.decode import decode_image, open_image
from server.documents.errors import DecodeError
from server.documents.pdf import PdfRenderer, check_bytes, looks_like_pdf
from server.documents.sources import open_source
from server.http.api.openapi import document
from server.http.context import document_limits
from server.http.errors import ApiError
from server.http.inputs import _b64, read_request
from server.http.options import parse_options
from server.http.request import BoundedRequest
from tests.support.images import png_declaring

EXAMPLES = int(os.environ.get("OCR_PROPERTY_EXAMPLES", "100"))
SETTINGS = Settings()
common = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _inline(node: Any) -> Any:
    """A schema of the document with its $refs replaced by what they point to."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = document()
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _inline(target)
        return {key: _inline(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item) for item in node]
    return node


def _strategy(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under `schema`, for the few kinds of schema the options use."""
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            return st.one_of([_strategy(branch) for branch in schema[combinator]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        return st.integers(schema["minimum"], schema["maximum"])
    if kind == "number":
        return st.floats(schema["minimum"], schema["maximum"], allow_nan=False)
    if kind == "string" and "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    raise AssertionError(f"no strategy for {schema}")


OPTIONS = {name: _inline(schema) for name, schema in document()["components"]["schemas"]["Options"]["properties"].items()}
HUGE = st.integers(4, 4000).map(lambda digits: 10 ** digits) | st.integers(-(10 ** 400), 10 ** 400)
ANY_JSON = st.recursive(st.none() | st.booleans() | st.integers() | HUGE | st.floats() | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                        max_leaves=8)


def _runs_forward(value: Any) -> bool:
    """What the pattern of `pages` cannot say: each range runs forwards (2-1 is refused, as documented)."""
    if not isinstance(value, str):
        return True
    for part in value.split(","):
        numbers = re.findall(r"[0-9]+", part)
        if len(numbers) == 2 and int(numbers[0]) > int(numbers[1]):
            return False
    return True


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_every_value_the_document_allows_is_accepted(name: str) -> None:
    @common
    @given(value=_strategy(OPTIONS[name]).filter(_runs_forward))
    def check(value: Any) -> None:
        parse_options({name: value}, SETTINGS)  # raises ApiError if refused

    check()


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_every_json_value_the_document_refuses_is_refused_with_400(name: str) -> None:
    validator = jsonschema.Draft202012Validator(OPTIONS[name])

    @common
    @given(value=ANY_JSON.filter(lambda v: not validator.is_valid(v) and not isinstance(v, str)))
    def check(value: Any) -> None:
        with pytest.raises(ApiError) as refused:
            parse_options({name: value}, SETTINGS)
        assert (refused.value.status, refused.value.code) == (400, "invalid_option")

    check()


NUMERIC = sorted(name for name, schema in OPTIONS.items() if schema["oneOf"][0].get("type") in ("integer", "number"))


@pytest.mark.parametrize("name", NUMERIC)
def test_a_numeric_option_from_any_text_is_within_its_range_or_refused(name: str) -> None:
    """Query strings and form fields are text: whatever it is, the value is in the documented range or 400."""
    schema = OPTIONS[name]["oneOf"][0]

    @common
    @given(text=st.text(max_size=12) | st.from_regex(r"\s*-?[0-9_.eE]{1,8}\s*", fullmatch=True))
    def check(text: str) -> None:
        try:
            options = parse_options({name: text}, SETTINGS)
        except ApiError as exc:
            assert (exc.status, exc.code) == (400, "invalid_option")
            return
        value = getattr(options.ocr, name)
        assert not math.isnan(value) and schema["minimum"] <= value <= schema["maximum"]

    check()


@common
@given(name=st.text(min_size=1, max_size=12).filter(lambda n: n not in OPTIONS), value=ANY_JSON)
def test_an_unknown_option_is_refused_by_name(name: str, value: Any) -> None:
    with pytest.raises(ApiError) as refused:
        parse_options({name: value}, SETTINGS)
    assert (refused.value.status, refused.value.code) == (400, "unknown_option")


# --- base64 ---------------------------------------------------------------------------------------------

def _forms(data: bytes) -> Iterator[str]:
    """Every way the README says base64 may come: standard, URL-safe, unpadded, wrapped, data URL."""
    standard = base64.b64encode(data).decode()
    yield standard
    yield base64.urlsafe_b64encode(data).decode()
    yield standard.rstrip("=")
    yield "\n".join(textwrap.wrap(standard, 76)) + "\n"
    yield f"data:image/png;base64,{standard}"
    yield f"  data:application/pdf;base64,{standard.rstrip('=')}  "


@common
@given(data=st.binary(max_size=300))
def test_base64_in_every_accepted_form_gives_the_bytes_back(data: bytes) -> None:
    for text in _forms(data):
        assert _b64(text, "image") == data


@common
@given(value=st.text(max_size=40) | ANY_JSON)
def test_anything_else_is_bytes_or_invalid_base64(value: Any) -> None:
    try:
        assert isinstance(_b64(value, "image"), bytes)
    except ApiError as exc:
        assert (exc.status, exc.code) == (400, "invalid_base64")


# --- multipart ------------------------------------------------------------------------------------------

def _request(**builder: Any) -> BoundedRequest:
    environ = EnvironBuilder(method="POST", path="/v1/ocr", **builder).get_environ()
    request = BoundedRequest(environ)
    request.max_content_length = SETTINGS.max_body_bytes
    return request


PART_NAMES = st.sampled_from(["image", "image", "image", "file", "images", "Image"])


@common
@given(parts=st.lists(st.tuples(PART_NAMES, st.binary(max_size=40)), max_size=6),
       fields=st.dictionaries(st.sampled_from(["use_cls", "pages", "note", "image"]), st.text(max_size=8), max_size=3),
       limit=st.integers(1, 4))
def test_multipart_gives_its_image_parts_in_order_or_says_what_is_wrong(
        parts: list[tuple[str, bytes]], fields: dict[str, str], limit: int) -> None:
    builder = EnvironBuilder(method="POST", path="/v1/ocr", data=dict(fields), content_type="multipart/form-data")
    for index, (name, data) in enumerate(parts):
        builder.files.add_file(name, io.BytesIO(data), f"{index}.png")
    request = BoundedRequest(builder.get_environ())
    images = [data for name, data in parts if name == "image"]
    try:
        blobs, options = read_request(request, limit)
    except ApiError as exc:
        expected = ("unexpected_part" if any(name != "image" for name, _ in parts)
                    else "missing_image" if not images else "too_many_images")
        assert exc.code == expected
        return
    assert blobs == images and len(images) <= limit
    assert options == fields


@common
@given(body=st.binary(max_size=400), boundary=st.sampled_from(["b", "xyz", "----7d"]))
def test_any_multipart_body_is_read_or_refused_as_a_client_error(body: bytes, boundary: str) -> None:
    wrapped = b"--" + boundary.encode() + b"\r\n" + body + b"\r\n--" + boundary.encode() + b"--\r\n"
    request = _request(data=wrapped, content_type=f"multipart/form-data; boundary={boundary}")
    try:
        read_request(request, 4)
    except ApiError as exc:
        assert exc.status < 500
    except HTTPException as exc:  # Werkzeug's own refusals (a form over its limits): 4xx, made JSON by the app
        assert exc.code is not None and exc.code < 500


# --- image and PDF headers ------------------------------------------------------------------------------

MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1", b"GIF89a", b"GIF87a", b"BM", b"II*\x00",
         b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"P6\n", b"\x00\x00\x01\x00", b"%!PS-Adobe", b""]
LIMITS = document_limits(SETTINGS)


@common
@given(magic=st.sampled_from(MAGIC), tail=st.binary(max_size=200))
def test_any_bytes_behind_an_image_header_decode_or_fail_as_a_client_error(magic: bytes, tail: bytes) -> None:
    try:
        pixels = decode_image(magic + tail, SETTINGS.max_image_pixels)
    except DecodeError as exc:
        assert 400 <= exc.status < 500
        return
    assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.shape[0] * pixels.shape[1] <= SETTINGS.max_image_pixels


@common
@given(width=st.integers(1, 1 << 20), height=st.integers(1, 1 << 20))
def test_an_image_over_the_pixel_limit_is_refused_from_its_header(width: int, height: int) -> None:
    """Decided by the header alone (`open_image` decodes nothing): 413 over the limit, an image under it."""
    limit = SETTINGS.max_image_pixels
    try:
        image = open_image(png_declaring(width, height), limit)
    except DecodeError as exc:
        assert width * height > limit
        assert (exc.status, exc.code, exc.details) == (413, "image_too_large",
                                                        {"width": width, "height": height, "max_pixels": limit})
        return
    assert width * height <= limit and image.size == (width, height)


@common
@given(head=st.binary(max_size=40), body=st.binary(max_size=300), eof=st.booleans())
def test_pdf_header_checks_refuse_with_a_client_error_or_pass(head: bytes, body: bytes, eof: bool) -> None:
    data = head + b"%PDF-1.7\n" + body + (b"\n%%EOF\n" if eof else b"")
    assert looks_like_pdf(data) == (b"%PDF-" in data[:1024])
    try:
        check_bytes(data)
    except DecodeError as exc:
        assert 400 <= exc.status < 500 and (eof or exc.code == "corrupt_pdf")


@pytest.fixture(scope="module")
def renderer() -> Iterator[PdfRenderer]:
    pdfium = PdfRenderer(SETTINGS.pdf_memory_mb)
    yield pdfium
    pdfium.close()


@pytest.mark.parametrize("pdf_text", ["auto", "ocr"])
def test_any_pdf_shaped_bytes_open_and_read_or_fail_as_a_client_error(renderer: PdfRenderer, pdf_text: str) -> None:
    """Through the real pdfium renderer processes: broken documents are 4xx, and the renderer survives."""

    @settings(max_examples=max(10, EXAMPLES // 5), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=st.binary(max_size=300) | st.sampled_from([b"1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
                                                          b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
                                                          b"trailer<</Root 1 0 R>>\n"]))
    def check(body: bytes) -> None:
        data = b"%PDF-1.7\n" + body + b"\n%%EOF\n"
        try:
            source = open_source(data, LIMITS, None, pdf_text, renderer)
            try:
                for _ in source.pages():
                    pass
            finally:
                source.close()
        except DecodeError as exc:
            assert 400 <= exc.status < 500, exc

    check()
