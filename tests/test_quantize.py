"""`ocr-server models quantize`: a real ONNX version (PP-OCRv6 tiny, installed from its wheel) made int8
on rendered receipts, published into the repository of a running server, judged by its quality gate
and served; the manifest says what the version is; bad arguments get a clear error."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import requests

from server.cli import main
from server.quality.receipts import write_golden_set
from server.repository.install import RECIPES, install_version
from server.repository.layout import ModelRepository
from server.repository.manifest import read_manifest, verify_files
from tests.support.images import encode, render_text, squash
from tests.support.lifecycle import wait_for
from tests.support.server import PADDLE_VERSION, ROOT, copy_version, gunicorn_server

TINY = "3.0.0-ppocrv6_tiny"
INT8 = "3.0.0-ppocrv6_tiny_int8"
LINES = ["INVOICE NO: INV-2026-0417", "AMOUNT DUE 1,318.05"]


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three rendered receipts, another seed than the gate's golden set (never calibrate on it)."""
    return write_golden_set(tmp_path_factory.mktemp("calibration") / "pages", seed=7, count=3)


def _quantize(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", "models", "quantize", *args,
                           "--model-repo", str(repo_root)], cwd=ROOT, capture_output=True, text=True, timeout=600)


def _op_types(model: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(model)).graph.node}


def test_quantized_version_is_gated_and_served(tmp_path: Path, calibration: Path) -> None:
    root = tmp_path / "models"
    repo = ModelRepository(root)
    install_version(repo, RECIPES["ppocrv6_tiny"])
    env = {"OCR_MODEL_POLL_S": "1", "OCR_MODEL_DEBOUNCE_S": "0.3", "OCR_ROLLOUT_BAKE_S": "0",
           "OCR_WARMUP_SHAPES": "320x320"}
    with gunicorn_server(root, tmp_path / "logs", workers=1, threads=2, env=env) as server:
        assert server.post_image(encode(render_text(LINES))).headers["X-Model-Version"] == TINY
        done = _quantize(root, TINY, "--calibration", str(calibration))
        assert done.returncode == 0, done.stderr
        reply = json.loads(done.stdout)
        assert reply["version"] == INT8 and reply["source_version"] == TINY

        def served() -> requests.Response | None:
            response = server.post_image(encode(render_text(LINES)))
            return response if response.headers.get("X-Model-Version") == INT8 else None

        response = wait_for(served, 180, f"{INT8} to pass the gate and serve")
        assert response.status_code == 200, response.text
        assert [squash(line["text"]) for line in response.json()["results"][0]["lines"]] == [squash(l) for l in LINES]

    version_dir = repo.version_dir(INT8)
    manifest = read_manifest(version_dir)
    assert verify_files(version_dir, manifest) == []
    source = read_manifest(repo.version_dir(TINY))
    assert manifest.stages == source.stages and manifest.settings == source.settings
    record = manifest.source["quantized"]
    digest = hashlib.sha256((repo.version_dir(TINY) / "manifest.json").read_bytes()).hexdigest()
    assert record["from"] == {"version": TINY, "version_digest": digest}
    assert record["calibration"]["images"] == 3 and len(record["calibration"]["digest"]) == 64
    assert record["calibration"]["batches"]["det"] == 3
    assert record["precision"] == {"det": "int8", "rec": "f32"}
    assert record["method"]["format"] == "QDQ"
    # Detection is int8 (quantize/dequantize pairs around its convolutions); recognition is the source's file.
    assert {"QuantizeLinear", "DequantizeLinear"} <= _op_types(version_dir / "det" / "inference.onnx")
    assert "QuantizeLinear" not in _op_types(version_dir / "rec" / "inference.onnx")
    assert manifest.files["rec/inference.onnx"] == source.files["rec/inference.onnx"]
    assert manifest.files["det/inference.onnx"] != source.files["det/inference.onnx"]


@pytest.fixture(scope="module")
def paddle_repo(tmp_path_factory: pytest.TempPathFactory, default_version_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("paddle") / "models"
    copy_version(default_version_dir, root, PADDLE_VERSION)
    return root


@pytest.mark.parametrize(("args", "message"), [
    ([PADDLE_VERSION, "--calibration", "{calibration}"],
     "stage det runs paddle files, and int8 quantization rewrites ONNX graphs only: install the same networks "
     "in ONNX with `ocr-server models install ppocrv4_onnx` (1.1.0-ppocrv4_onnx) and quantize that"),
    ([PADDLE_VERSION, "--calibration", "{calibration}", "--stages", "det,box"],
     "--stages det,box: name each of 1.0.0-ppocrv4's stages at most once (det, cls, rec)"),
    (["9.9.9", "--calibration", "{calibration}"], "version 9.9.9 is not in"),
    ([PADDLE_VERSION, "--calibration", "{calibration}", "--version", PADDLE_VERSION],
     f"version {PADDLE_VERSION} already exists; name another with --version"),
    ([PADDLE_VERSION, "--calibration", "{calibration}", "--version", "../x"], "invalid version name '../x'"),
    ([PADDLE_VERSION, "--calibration", "{empty}"], "holds no .png/.jpg/.jpeg images"),
])
def test_bad_arguments_get_a_clear_error(paddle_repo: Path, calibration: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    argv = [a.format(calibration=calibration, empty=tmp_path / "empty") for a in args]
    assert main(["models", "quantize", *argv, "--model-repo", str(paddle_repo)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ocr-server: cannot quantize {argv[0]}: ") and message in err, err
    assert ModelRepository(paddle_repo).version_names() == [PADDLE_VERSION]
