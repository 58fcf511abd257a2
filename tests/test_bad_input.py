"""Bad and awkward input against a real Gunicorn server: each case gets the right JSON answer, odd but
valid images are read correctly, and no worker dies or restarts along the way."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from PIL import Image

from tests.support.images import (
    encode,
    exif_rotated_jpeg,
    expected_text,
    jpeg_with_broken_huffman_table,
    png_declaring,
    png_with_broken_data,
    read_text,
    real_png_bomb,
    render_text,
    sixteen_bit_png,
    transparent_text_png,
    truncated,
)
from tests.support.server import PADDLE_VERSION, RunningServer, gunicorn_server

LINES = ["TAX INVOICE 5512", "GST 6.15"]
PAGE = render_text(LINES)
PNG = encode(PAGE)
JPEG = encode(PAGE, "JPEG")
TINY = encode(Image.new("RGB", (1, 1), "white"))
OVER_BODY_LIMIT = 20 * 1024 * 1024 + 1  # the server's default OCR_MAX_BODY_BYTES, plus one


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class Case:
    """One bad request and the answer it must get."""

    status: int
    code: str
    method: str = "POST"
    path: str = "/v1/ocr"
    query: str = ""
    data: bytes | None = None
    content_type: str | None = None
    json: Any = None
    files: list[tuple[str, Any]] | None = None
    form: dict[str, str] = field(default_factory=dict)

    def send(self, server: RunningServer) -> requests.Response:
        headers = {"Content-Type": self.content_type} if self.content_type is not None else {}
        return requests.request(
            self.method, f"{server.url}{self.path}{self.query}", data=self.data if self.files is None else self.form,
            json=self.json, files=self.files, headers=headers, timeout=120,
        )


def _image_parts(count: int) -> list[tuple[str, Any]]:
    return [("image", (f"{i}.png", TINY, "image/png")) for i in range(count)]


CASES: dict[str, Case] = {
    # Not an image, or a broken one.
    "not_an_image": Case(422, "invalid_image", data=b"<html>hello</html>", content_type="image/png"),
    # A PDF is read as a document (tests/test_documents_api.py has the bad PDFs): a bare header is a truncated one.
    "pdf_header_only": Case(422, "corrupt_pdf", data=b"%PDF-1.7\n%\xe2\xe3\n", content_type="application/octet-stream"),
    "truncated_jpeg": Case(422, "corrupt_image", data=truncated(JPEG), content_type="image/jpeg"),
    "truncated_png": Case(422, "corrupt_image", data=truncated(PNG), content_type="image/png"),
    "corrupt_jpeg": Case(422, "corrupt_image", data=jpeg_with_broken_huffman_table(JPEG), content_type="image/jpeg"),
    "corrupt_png": Case(422, "corrupt_image", data=png_with_broken_data(PNG), content_type="image/png"),
    "empty_body": Case(400, "empty_image", data=b"", content_type="image/png"),
    "empty_body_no_type": Case(400, "empty_image"),
    # Limits.
    "body_over_limit": Case(413, "payload_too_large", data=b"\xff" * OVER_BODY_LIMIT, content_type="image/jpeg"),
    "bomb_header": Case(413, "image_too_large", data=png_declaring(100_000, 100_000), content_type="image/png"),
    "bomb_real": Case(413, "image_too_large", data=real_png_bomb(), content_type="image/png"),
    "too_many_parts": Case(413, "too_many_images", files=_image_parts(17)),
    "too_many_json": Case(413, "too_many_images", json={"images": [_b64(TINY)] * 17}),
    # Encodings.
    "wrong_content_type": Case(415, "unsupported_media_type", data=PNG, content_type="text/plain"),
    "form_urlencoded": Case(415, "unsupported_media_type", data=PNG, content_type="application/x-www-form-urlencoded"),
    "bad_json": Case(400, "invalid_json", data=b'{"image": "abc', content_type="application/json"),
    "json_not_object": Case(400, "invalid_json", json=[_b64(PNG)]),
    "json_without_image": Case(400, "missing_image", json={"use_cls": True}),
    "json_both_keys": Case(400, "invalid_json", json={"image": _b64(PNG), "images": [_b64(PNG)]}),
    "json_empty_images": Case(400, "invalid_json", json={"images": []}),
    "json_image_not_string": Case(400, "invalid_base64", json={"image": 12345}),
    "bad_base64": Case(400, "invalid_base64", json={"image": "iVBORw0KGgo*not*base64!"}),
    "base64_of_text": Case(422, "invalid_image", json={"image": _b64(b"just some text")}),
    "multipart_other_part": Case(400, "unexpected_part", files=[("photo", ("a.png", PNG, "image/png"))]),
    "multipart_without_image": Case(400, "missing_image", files=[("use_cls", (None, b"true"))]),
    "multipart_text_field": Case(400, "missing_image", files=[("image", (None, b"receipt.jpg"))]),
    # Options.
    "unknown_option": Case(400, "unknown_option", query="?colour=red", data=PNG, content_type="image/png"),
    "invalid_bool": Case(400, "invalid_option", query="?use_cls=maybe", data=PNG, content_type="image/png"),
    "out_of_range": Case(400, "invalid_option", query="?det_thresh=2", data=PNG, content_type="image/png"),
    "not_a_number": Case(400, "invalid_option", json={"image": _b64(PNG), "det_box_thresh": "high"}),
    "nan": Case(400, "invalid_option", json={"image": _b64(PNG), "drop_score": "nan"}),
    "fractional_int": Case(400, "invalid_option", json={"image": _b64(PNG), "det_limit_side_len": 960.5}),
    "bad_choice": Case(400, "invalid_option", files=_image_parts(1), form={"det_limit_type": "middle"}),
    # Routing.
    "get_ocr": Case(405, "method_not_allowed", method="GET"),
    "put_ocr": Case(405, "method_not_allowed", method="PUT", data=PNG, content_type="image/png"),
    "unknown_path": Case(404, "not_found", path="/v1/ocrr"),
}


@pytest.fixture(scope="module")
def workers_before(shared_server: RunningServer) -> list[int]:
    return sorted(shared_server.worker_pids())


@pytest.mark.parametrize("name", list(CASES))
def test_bad_request_gets_a_json_error(shared_server: RunningServer, workers_before: list[int], name: str) -> None:
    case = CASES[name]
    response = case.send(shared_server)
    assert response.status_code == case.status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == case.code and body["message"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert response.headers["X-Model-Version"] == PADDLE_VERSION
    if case.status == 405:
        assert "POST" in response.headers["Allow"]


def test_body_over_limit_sent_chunked(shared_server: RunningServer) -> None:
    """Without Content-Length the limit is found while reading; the image is not passed on truncated."""
    def chunks() -> Iterator[bytes]:
        for _ in range(OVER_BODY_LIMIT // (1 << 20) + 1):
            yield b"\xff" * (1 << 20)

    response = requests.post(f"{shared_server.url}/v1/ocr", data=chunks(), headers={"Content-Type": "image/jpeg"},
                             timeout=120)
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


def test_one_bad_image_among_several_is_named(shared_server: RunningServer) -> None:
    files = [("image", ("good.png", PNG, "image/png")), ("image", ("bad.jpg", truncated(JPEG), "image/jpeg"))]
    response = requests.post(f"{shared_server.url}/v1/ocr", files=files, timeout=120)
    assert response.status_code == 422
    assert response.json()["details"] == {"image_index": 1}


ODD_BUT_VALID = {
    "grayscale": lambda: encode(PAGE.convert("L")),
    "bilevel": lambda: encode(PAGE.convert("L").point(lambda v: 255 if v > 128 else 0).convert("1")),
    "palette": lambda: encode(PAGE.convert("P")),
    "rgba_transparent": lambda: transparent_text_png(PAGE),
    "sixteen_bit": lambda: sixteen_bit_png(PAGE),
    "cmyk_jpeg": lambda: encode(PAGE.convert("CMYK"), "JPEG", quality=95),
    "webp": lambda: encode(PAGE, "WEBP", lossless=True),
    "exif_6": lambda: exif_rotated_jpeg(PAGE, 6),
    "exif_8": lambda: exif_rotated_jpeg(PAGE, 8),
    # Stored upside down and read without the angle classifier: only the EXIF turn can make it right.
    "exif_3_without_classifier": lambda: exif_rotated_jpeg(PAGE, 3),
}


@pytest.mark.parametrize("name", list(ODD_BUT_VALID))
def test_odd_but_valid_images_are_read(shared_server: RunningServer, name: str) -> None:
    query = "?use_cls=false" if name.endswith("without_classifier") else ""
    response = requests.post(f"{shared_server.url}/v1/ocr{query}", data=ODD_BUT_VALID[name](),
                             headers={"Content-Type": "application/octet-stream"}, timeout=120)
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert (result["width"], result["height"]) == PAGE.size  # upright, whatever way it was stored
    assert read_text(result) == expected_text(LINES)


def test_workers_survived_the_barrage(shared_server: RunningServer, workers_before: list[int]) -> None:
    """Runs after the cases above (pytest keeps file order): same worker processes, none restarted."""
    assert sorted(shared_server.worker_pids()) == workers_before
    log = shared_server.log()
    assert "Traceback" not in log and "unhandled error" not in log and "WORKER TIMEOUT" not in log
    assert log.count("Booting worker with pid") == shared_server.workers, "a worker was restarted"
    response = shared_server.post_image(PNG)
    assert response.status_code == 200
    assert read_text(response.json()["results"][0]) == expected_text(LINES)


def test_not_ready_answers_503_and_stays_alive(tmp_path: Path) -> None:
    """A worker with no loadable model is alive (/healthz) but not ready: /readyz and /v1/ocr answer 503."""
    with gunicorn_server(tmp_path / "empty-repo", tmp_path / "logs", workers=1, threads=2,
                         wait_ready=False) as server:
        server.wait_alive(timeout=120)
        assert requests.get(f"{server.url}/healthz", timeout=10).json() == {"status": "ok"}
        for response in (requests.get(f"{server.url}/readyz", timeout=10), server.post_image(PNG)):
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "model_not_ready"
            assert response.headers["Retry-After"] == "5"
            assert response.headers["X-Request-Id"] and "X-Model-Version" not in response.headers
        # Bad input is still judged as bad input, not hidden behind the 503.
        assert server.post_image(b"", "image/png").status_code == 400
