"""POST /v1/ocr against a real Gunicorn server on the real PP-OCRv4 weights."""

from __future__ import annotations

from tests.helpers import DEFAULT_VERSION, RunningServer, encode, render_text, squash


def test_raw_png_is_read(shared_server: RunningServer) -> None:
    lines = ["INVOICE NO: 2026-1187", "TOTAL DUE 1,234.56"]
    response = shared_server.post_image(encode(render_text(lines)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["X-Model-Version"] == DEFAULT_VERSION
    assert body["model"] == {"name": "ppocr", "version": DEFAULT_VERSION}
    assert response.headers["X-Request-Id"] == body["request_id"]
    result = body["results"][0]
    assert [squash(line["text"]) for line in result["lines"]] == [squash(line) for line in lines]
    for line in result["lines"]:
        assert len(line["box"]) == 4 and 0.5 < line["score"] <= 1.0 and line["angle"] == 0
    assert set(result["timing_ms"]) == {"decode", "det", "cls", "rec", "total"}
