"""POST /v1/ocr against a real Gunicorn server on the real PP-OCRv4 weights: every request form,
options, the response shape and headers."""

from __future__ import annotations

import base64

import pytest
import requests
from PIL import Image, ImageFilter

from tests.support.images import encode, expected_text, read_text, render_text, squash
from tests.support.server import PADDLE_VERSION, RunningServer

INVOICE = ["INVOICE NO: 2026-1187", "TOTAL DUE 1,234.56"]


def test_raw_png_is_read(shared_server: RunningServer) -> None:
    response = shared_server.post_image(encode(render_text(INVOICE)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["X-Model-Version"] == PADDLE_VERSION
    assert body["model"] == {"name": "ppocr", "version": PADDLE_VERSION, "canary": False}
    assert response.headers["X-Request-Id"] == body["request_id"]
    result = body["results"][0]
    assert read_text(result) == expected_text(INVOICE)
    assert squash(result["text"]) == squash("".join(INVOICE))
    for line in result["lines"]:
        assert len(line["box"]) == 4 and 0.5 < line["score"] <= 1.0 and line["angle"] == 0
    assert set(result["timing_ms"]) == {"decode", "det", "cls", "rec", "total"}


def test_raw_jpeg_as_octet_stream_with_boxes_in_image_coordinates(shared_server: RunningServer) -> None:
    page = render_text(["REMIT TO ACME BANK"], padding=120)
    response = shared_server.post_image(encode(page, "JPEG", quality=90), "application/octet-stream")
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert (result["width"], result["height"]) == page.size
    assert read_text(result) == expected_text(["REMIT TO ACME BANK"])
    xs = [x for x, _ in result["lines"][0]["box"]]
    ys = [y for _, y in result["lines"][0]["box"]]
    # The text starts 120 px in: the box is where the text is, not at the origin of a resized copy.
    assert 100 <= min(xs) <= 130 and 100 <= min(ys) <= 140 and max(xs) < page.width


def test_client_request_id_is_echoed_and_a_bad_one_replaced(shared_server: RunningServer) -> None:
    def post(request_id: str) -> requests.Response:
        return requests.post(f"{shared_server.url}/v1/ocr", data=encode(render_text(["PAID"])), timeout=120,
                             headers={"Content-Type": "image/png", "X-Request-Id": request_id})

    good = post("trace-42:a.b")
    assert good.headers["X-Request-Id"] == "trace-42:a.b" == good.json()["request_id"]
    bad = post("x" * 500)
    assert bad.headers["X-Request-Id"] != "x" * 500 and len(bad.headers["X-Request-Id"]) == 32


def test_multipart_with_several_images_and_form_options(shared_server: RunningServer) -> None:
    pages = [["CHEQUE 000123"], ["AMOUNT 75.00", "MEMO RENT"], ["SIGNED J SMITH"]]
    files = [("image", (f"p{i}.png", encode(render_text(lines)), "image/png")) for i, lines in enumerate(pages)]
    response = requests.post(f"{shared_server.url}/v1/ocr", files=files, data={"use_cls": "false"}, timeout=120)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [read_text(r) for r in results] == [expected_text(lines) for lines in pages]  # in the order sent
    assert all(r["timing_ms"]["cls"] == 0 for r in results)  # use_cls=false skipped the classifier


def test_json_single_image_with_options(shared_server: RunningServer) -> None:
    # Wrapped at 76 columns, as the `base64` tool writes it, and as a data URL.
    raw = base64.encodebytes(encode(render_text(INVOICE))).decode()
    body = {"image": "data:image/png;base64," + raw, "use_cls": False, "drop_score": 0.3, "det_thresh": None}
    response = requests.post(f"{shared_server.url}/v1/ocr", json=body, timeout=120)
    assert response.status_code == 200, response.text
    assert read_text(response.json()["results"][0]) == expected_text(INVOICE)


def test_json_several_images(shared_server: RunningServer) -> None:
    pages = [["BALANCE 310.08"], ["ACCOUNT CLOSED"]]
    images = [base64.b64encode(encode(render_text(lines), "JPEG")).decode() for lines in pages]
    images[1] = images[1].rstrip("=").replace("+", "-").replace("/", "_")  # URL-safe, unpadded
    response = requests.post(f"{shared_server.url}/v1/ocr", json={"images": images}, timeout=120)
    assert response.status_code == 200, response.text
    assert [read_text(r) for r in response.json()["results"]] == [expected_text(lines) for lines in pages]


def test_drop_score_from_query_string_filters_lines(shared_server: RunningServer) -> None:
    data = encode(render_text(INVOICE + ["ref: qx7-bv2 lj"], size=20))
    baseline = shared_server.post_image(data).json()["results"][0]["lines"]
    scores = sorted(line["score"] for line in baseline)
    assert len(scores) >= 2 and scores[0] < scores[-1], "need lines of different confidence"
    cut = (scores[0] + scores[-1]) / 2
    response = requests.post(f"{shared_server.url}/v1/ocr?drop_score={cut}", data=data,
                             headers={"Content-Type": "image/png"}, timeout=120)
    kept = response.json()["results"][0]["lines"]
    assert kept and all(line["score"] >= cut for line in kept)
    assert len(kept) == sum(score >= cut for score in scores)


def _read(server: RunningServer, image: bytes, query: str = "") -> dict:
    response = requests.post(f"{server.url}/v1/ocr?{query}", data=image, headers={"Content-Type": "image/png"},
                             timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["results"][0]


def _box_area(line: dict) -> float:
    (x0, y0), _, (x2, y2), _ = line["box"]
    return (x2 - x0) * (y2 - y0)


def test_each_detection_option_changes_what_is_detected(shared_server: RunningServer) -> None:
    """Each det_* option, set to a value that must make a difference, does: an option the server
    dropped or ignored would leave the reading of this page as it is with the version's settings."""
    image = encode(render_text(INVOICE))
    default = _read(shared_server, image)
    assert read_text(default) == expected_text(INVOICE)
    # Detection on a page shrunk to 32 px on its long side finds no readable line.
    assert read_text(_read(shared_server, image, "det_limit_side_len=32&det_limit_type=max")) != expected_text(INVOICE)
    # With "min" the same limit only ever scales up: the page is left as it is and reads as by default.
    assert read_text(_read(shared_server, image, "det_limit_side_len=32&det_limit_type=min")) == expected_text(INVOICE)
    # A stricter pixel threshold keeps a subset of each line's pixels, so the boxes shrink (on a blurred
    # page, where the text's edges are uncertain); no box of this page averages 99%.
    blurred = encode(render_text(INVOICE).filter(ImageFilter.GaussianBlur(2.5)))
    strict = _read(shared_server, blurred, "det_thresh=0.9")["lines"]
    usual = _read(shared_server, blurred)["lines"]
    assert strict and sum(map(_box_area, strict)) < sum(map(_box_area, usual))
    assert _read(shared_server, image, "det_box_thresh=0.99")["lines"] == []
    # Boxes are grown back around the text by the unclip ratio.
    tight = _read(shared_server, image, "det_unclip_ratio=1.0")["lines"]
    loose = _read(shared_server, image, "det_unclip_ratio=3.0")["lines"]
    assert tight and loose and sum(map(_box_area, loose)) > 1.5 * sum(map(_box_area, tight))


@pytest.mark.parametrize("use_cls", [True, False])
def test_upside_down_text_needs_the_classifier(shared_server: RunningServer, use_cls: bool) -> None:
    lines = ["RECEIPT 88213", "CASH PAID 42.50"]
    upside_down = render_text(lines).transpose(Image.Transpose.ROTATE_180)
    response = requests.post(f"{shared_server.url}/v1/ocr?use_cls={str(use_cls).lower()}",
                             data=encode(upside_down), headers={"Content-Type": "image/png"}, timeout=120)
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    if use_cls:
        # Lines come in page order (the page is upside down, so the last line first), each turned back.
        assert sorted(read_text(result)) == sorted(expected_text(lines))
        assert all(line["angle"] == 180 for line in result["lines"])
        assert result["timing_ms"]["cls"] > 0
    else:
        assert not set(read_text(result)) & set(expected_text(lines))
        assert result["timing_ms"]["cls"] == 0


def test_one_pixel_image_is_a_valid_empty_result(shared_server: RunningServer) -> None:
    response = shared_server.post_image(encode(Image.new("RGB", (1, 1), "white")))
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert result["lines"] == [] and result["text"] == "" and (result["width"], result["height"]) == (1, 1)


def test_health_and_readiness(shared_server: RunningServer) -> None:
    health = requests.get(f"{shared_server.url}/healthz", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = requests.get(f"{shared_server.url}/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model": {"name": "ppocr", "version": PADDLE_VERSION}}
    assert ready.headers["X-Model-Version"] == PADDLE_VERSION and ready.headers["X-Request-Id"]
