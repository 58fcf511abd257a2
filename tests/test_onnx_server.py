"""A real Gunicorn server on the default ONNX version, beside PP-OCRv4 on Paddle: same image, same text;
and PP-OCRv4 one call away."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.support.images import encode, render_text, squash
from tests.support.lifecycle import wait_for
from tests.support.server import PADDLE_VERSION, ONNX_MODELS, ROOT, RunningServer, copy_version, gunicorn_server

V6_SMALL = ONNX_MODELS["ppocrv6_small_cls"]  # what `install-default` serves
TOKEN = "onnx-server-test-token"


def test_paddle_and_onnx_servers_read_the_same_text(
    shared_server: RunningServer, onnx_repo: Path, tmp_path: Path
) -> None:
    """The repository holds what `install-default` installs, and the default golden set: the higher, ONNX,
    version serves; a releaser's activate then serves PP-OCRv4 although it reads the golden set worse
    than the live version by more than the gate's tolerance (server.lifecycle.policy.gated_against_live)."""
    root = tmp_path / "models"
    copy_version(onnx_repo / "ppocr" / PADDLE_VERSION, root, PADDLE_VERSION)
    copy_version(onnx_repo / "ppocr" / V6_SMALL, root, V6_SMALL)
    shutil.copytree(ROOT / "models" / "golden", root / "golden")
    pages = [
        ["INVOICE NO: INV-2026-0417", "AMOUNT DUE 1,318.05"],
        ["RECEIPT NO: OR1809-0117", "CHANGE 7.10"],
        ["TAX INVOICE 2026-0042", "GST @6% 3.42"],
    ]
    images = [encode(render_text(lines)) for lines in pages]
    for lines, image in zip(pages, images):
        response = shared_server.post_image(image)
        assert response.status_code == 200, response.text
        assert response.headers["X-Model-Version"] == PADDLE_VERSION
        assert [squash(l["text"]) for l in response.json()["results"][0]["lines"]] == [squash(l) for l in lines]

    # Gating PP-OCRv6 small on the 12-image golden set is slow on a loaded machine: a generous ready bound.
    with gunicorn_server(root, tmp_path / "logs", workers=2, threads=4, env={"OCR_ADMIN_TOKEN": TOKEN},
                         ready_timeout=600) as server:
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
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.post(f"{server.url}/v1/models/{PADDLE_VERSION}/activate", headers=auth, timeout=30).status_code == 202

        def listing() -> dict:
            return requests.get(f"{server.url}/v1/models", timeout=30).json()

        wait_for(lambda: {w["serving"] for w in listing()["workers"]} == {PADDLE_VERSION}, 300,
                 "both workers to serve the activated PP-OCRv4")
        versions = {v["version"]: v for v in listing()["versions"]}
        live, pinned = versions[V6_SMALL]["gate"], versions[PADDLE_VERSION]["gate"]
        assert pinned["passed"] and pinned["baseline_version"] is None and "ceiling only" in pinned["reason"]
        assert pinned["cer"] > live["cer"] + pinned["tolerance"], (pinned, live)  # an upgrade this worse is refused
        response = server.post_image(images[0])
        assert response.status_code == 200 and response.headers["X-Model-Version"] == PADDLE_VERSION
