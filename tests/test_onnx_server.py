"""A real Gunicorn server on an ONNX version, beside the Paddle default: same image, same text."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support.images import encode, render_text, squash
from tests.support.server import DEFAULT_VERSION, ONNX_MODELS, RunningServer, copy_version, gunicorn_server

V6_SMALL = ONNX_MODELS["ppocrv6_small"]


def test_paddle_and_onnx_servers_read_the_same_text(
    shared_server: RunningServer, onnx_repo: Path, tmp_path: Path
) -> None:
    """The repository holds the Paddle default and PP-OCRv6 small: the higher, ONNX, version serves."""
    root = tmp_path / "models"
    copy_version(onnx_repo / "ppocr" / DEFAULT_VERSION, root, DEFAULT_VERSION)
    copy_version(onnx_repo / "ppocr" / V6_SMALL, root, V6_SMALL)
    pages = [
        ["INVOICE NO: INV-2026-0417", "AMOUNT DUE 1,318.05"],
        ["RECEIPT NO: OR1809-0117", "CHANGE 7.10"],
        ["TAX INVOICE 2026-0042", "GST @6% 3.42"],
    ]
    images = [encode(render_text(lines)) for lines in pages]
    for lines, image in zip(pages, images):
        response = shared_server.post_image(image)
        assert response.status_code == 200, response.text
        assert response.headers["X-Model-Version"] == DEFAULT_VERSION
        assert [squash(l["text"]) for l in response.json()["results"][0]["lines"]] == [squash(l) for l in lines]

    with gunicorn_server(root, tmp_path / "logs", workers=2, threads=4) as server:
        jobs = list(zip(pages, images)) * 4
        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(lambda job: server.post_image(job[1]), jobs))
        for (lines, _), response in zip(jobs, responses):
            assert response.status_code == 200, response.text
            assert response.headers["X-Model-Version"] == V6_SMALL
            body = response.json()
            assert body["model"] == {"name": "ppocr", "version": V6_SMALL, "canary": False}
            assert [squash(l["text"]) for l in body["results"][0]["lines"]] == [squash(l) for l in lines]
        assert server.process.poll() is None and len(server.worker_pids()) == 2
