"""Runtime selection (Paddle Inference, ONNX Runtime or OpenVINO, by files or by manifest) and ONNX and
OpenVINO session behaviour, on the real installed weights."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest

from server.repository.manifest import Manifest, ManifestError, read_manifest
from server.runtime import RuntimeOptions, open_session
from server.runtime.base import ModelFilesError, detect_runtime
from server.runtime.onnx import OnnxSession, RuntimeUnavailableError, find_onnx_model, providers_for
from server.runtime.openvino import OpenVinoSession, compile_config
from server.runtime.paddle import PaddleSession
from tests.support.server import PADDLE_VERSION, ONNX_MODELS

V6_TINY = ONNX_MODELS["ppocrv6_tiny"]
CPU = RuntimeOptions(cpu_threads=1, concurrency=4)


@pytest.fixture()
def both_formats(tmp_path: Path, onnx_repo: Path) -> Path:
    """A detection directory holding a Paddle model and an ONNX model side by side, as PaddleX's
    high-performance export leaves it."""
    stage = tmp_path / "det"
    shutil.copytree(onnx_repo / "ppocr" / PADDLE_VERSION / "det", stage)
    shutil.copy(onnx_repo / "ppocr" / V6_TINY / "det" / "inference.onnx", stage / "inference.onnx")
    return stage


def test_files_pick_the_runtime(onnx_repo: Path) -> None:
    paddle_dir = onnx_repo / "ppocr" / PADDLE_VERSION / "det"
    onnx_dir = onnx_repo / "ppocr" / V6_TINY / "det"
    assert detect_runtime(paddle_dir) == "paddle"
    assert detect_runtime(onnx_dir) == "onnxruntime"
    paddle, onnx = open_session(paddle_dir, CPU), open_session(onnx_dir, CPU)
    try:
        assert isinstance(paddle, PaddleSession) and isinstance(onnx, OnnxSession)
        # Both are DB detectors: one probability map per image at the input's resolution.
        page = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 96)).astype(np.float32)
        for session in (paddle, onnx):
            prob = session.run(page)
            assert prob.shape == (1, 1, 64, 96) and 0.0 <= prob.min() and prob.max() <= 1.0
    finally:
        paddle.close()
        onnx.close()


def test_both_formats_default_to_paddle_and_the_manifest_decides(both_formats: Path) -> None:
    assert detect_runtime(both_formats) == "paddle"
    assert detect_runtime(both_formats, "onnxruntime") == "onnxruntime"
    session = open_session(both_formats, CPU, runtime="onnxruntime")
    try:
        assert isinstance(session, OnnxSession)
    finally:
        session.close()


def test_a_runtime_without_its_files_is_refused(tmp_path: Path, onnx_repo: Path) -> None:
    with pytest.raises(ModelFilesError, match="holds no model"):
        detect_runtime(tmp_path)
    with pytest.raises(ModelFilesError, match="no .onnx file"):
        detect_runtime(onnx_repo / "ppocr" / PADDLE_VERSION / "det", "onnxruntime")
    with pytest.raises(ModelFilesError, match="runtime 'paddle'"):
        detect_runtime(onnx_repo / "ppocr" / V6_TINY / "det", "paddle")
    with pytest.raises(ModelFilesError, match="unknown runtime"):
        detect_runtime(onnx_repo / "ppocr" / V6_TINY / "det", "tensorrt")


def test_onnx_file_naming(tmp_path: Path, onnx_repo: Path) -> None:
    model = onnx_repo / "ppocr" / V6_TINY / "det" / "inference.onnx"
    shutil.copy(model, tmp_path / "det.onnx")
    assert find_onnx_model(tmp_path) == tmp_path / "det.onnx"  # the only one: taken whatever its name
    shutil.copy(model, tmp_path / "other.onnx")
    with pytest.raises(ModelFilesError, match="several ONNX files"):
        find_onnx_model(tmp_path)  # which one is the network? never guess
    shutil.copy(model, tmp_path / "inference.onnx")
    assert find_onnx_model(tmp_path) == tmp_path / "inference.onnx"


def test_manifest_stage_runtime_is_validated(onnx_repo: Path) -> None:
    data = read_manifest(onnx_repo / "ppocr" / V6_TINY).to_json()
    for runtime in ("onnxruntime", "openvino", "openvino:bf16"):
        data["stages"]["det"]["runtime"] = runtime
        assert Manifest.from_json(data).stages["det"].runtime == runtime
    for runtime in ("tflite", "openvino:fp8"):
        data["stages"]["det"]["runtime"] = runtime
        with pytest.raises(ManifestError, match="stage runtime"):
            Manifest.from_json(data)


def test_openvino_runs_the_onnx_files_it_is_named_for_and_an_ir_by_its_files(onnx_repo: Path,
                                                                              tmp_path: Path) -> None:
    """The same ONNX detector on ONNX Runtime and on OpenVINO (f32) gives the same map; converted to an
    OpenVINO IR, a directory holding only that runs on OpenVINO by its files."""
    import openvino

    onnx_dir = onnx_repo / "ppocr" / V6_TINY / "det"
    assert detect_runtime(onnx_dir) == "onnxruntime" and detect_runtime(onnx_dir, "openvino") == "openvino"
    ir_dir = tmp_path / "det"
    ir_dir.mkdir()
    openvino.save_model(openvino.convert_model(onnx_dir / "inference.onnx"), ir_dir / "inference.xml",
                        compress_to_fp16=False)
    assert detect_runtime(ir_dir) == "openvino"
    page = np.random.default_rng(0).uniform(-1, 1, (1, 3, 96, 160)).astype(np.float32)
    sessions = [open_session(onnx_dir, CPU), open_session(onnx_dir, CPU, runtime="openvino"), open_session(ir_dir, CPU)]
    try:
        assert [type(s) for s in sessions] == [OnnxSession, OpenVinoSession, OpenVinoSession]
        expected, *others = (s.run(page) for s in sessions)
        for got in others:
            assert got.shape == expected.shape == (1, 1, 96, 160)
            np.testing.assert_allclose(got, expected, atol=1e-4)
    finally:
        for session in sessions:
            session.close()


def test_openvino_precision_is_always_set_and_bf16_is_opt_in(onnx_repo: Path) -> None:
    """The CPU plugin would pick bf16 by itself on a CPU with bf16 units: the hint is always given."""
    import openvino

    assert compile_config(CPU, "f32")["INFERENCE_PRECISION_HINT"] == "f32"
    with pytest.raises(ModelFilesError, match="precision"):
        compile_config(CPU, "int4")
    det = onnx_repo / "ppocr" / V6_TINY / "det"
    f32, f32_named, bf16 = (open_session(det, CPU, runtime=r) for r in ("openvino", "openvino:f32", "openvino:bf16"))
    try:
        assert f32.precision == f32_named.precision == "f32"
        has_bf16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        assert bf16.precision == ("bf16" if has_bf16 else "f32")
    finally:
        for session in (f32, f32_named, bf16):
            session.close()
    with pytest.raises(RuntimeUnavailableError, match="CPU only"):
        open_session(det, RuntimeOptions(device="gpu"), runtime="openvino")


def test_gpu_providers() -> None:
    assert providers_for(RuntimeOptions(device="gpu", gpu_id=3))[0] == (
        "CUDAExecutionProvider", {"device_id": 3, "arena_extend_strategy": "kSameAsRequested"})
    assert providers_for(RuntimeOptions(device="gpu"))[-1] == "CPUExecutionProvider"
    assert providers_for(RuntimeOptions()) == ["CPUExecutionProvider"]


def test_gpu_without_cuda_provider_fails_loudly(onnx_repo: Path) -> None:
    """With the CPU-only package, asking for the GPU is an error, not a silent run on the CPU."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(RuntimeUnavailableError, match="onnxruntime-gpu"):
        open_session(onnx_repo / "ppocr" / V6_TINY / "det", RuntimeOptions(device="gpu"))


def _onnx_rec_batches(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.uniform(-1, 1, (2, 3, 48, int(w))).astype(np.float32) for w in rng.integers(80, 400, 12)]


def _paddle_cls_batches(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.uniform(-1, 1, (int(n), 3, 48, 192)).astype(np.float32) for n in rng.integers(1, 7, 10)]


@pytest.mark.parametrize(("version", "stage", "batches", "runtime"), [
    (V6_TINY, "rec", _onnx_rec_batches, None),
    (V6_TINY, "rec", _onnx_rec_batches, "openvino"),  # one infer request per concurrent run
    (PADDLE_VERSION, "cls", _paddle_cls_batches, None),  # each predictor on its own executor thread
])
def test_sessions_are_safe_from_many_threads(
    onnx_repo: Path, version: str, stage: str, batches: Callable[[np.random.Generator], list[np.ndarray]],
    runtime: str | None,
) -> None:
    """Concurrent runs of one session give exactly what the same inputs give one at a time."""
    session = open_session(onnx_repo / "ppocr" / version / stage, RuntimeOptions(cpu_threads=1, concurrency=3),
                           runtime=runtime)
    inputs = batches(np.random.default_rng(1))
    try:
        serial = [session.run(b) for b in inputs]
        with ThreadPoolExecutor(max_workers=8) as pool:
            parallel = list(pool.map(session.run, inputs * 2))
        for got, expected in zip(parallel, serial * 2):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    finally:
        session.close()


class _RunWatch:
    """Counts the Paddle predictor builds and runs under way in this process (the predictors are real)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0

    def during(self, call: Callable[[], Any]) -> Any:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            return call()
        finally:
            with self.lock:
                self.now -= 1

    def build(self, inference: Any, config: Any) -> Any:
        predictor = self.during(lambda: inference.create_predictor(config))
        watch = self

        class Watched:
            def run(self) -> Any:
                return watch.during(predictor.run)

            def __getattr__(self, name: str) -> Any:
                return getattr(predictor, name)

        return Watched()


def test_paddle_cpu_predictors_of_a_process_run_one_at_a_time(
    default_version_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paddle's oneDNN cache (bounded, so in its cache-clearing mode) is one per process and not safe for
    runs at once, nor for a run beside a build: serving workers died of SIGSEGV in it
    (server/runtime/paddle.py). Two networks with two predictors each, driven by eight threads on inputs
    of ever-new shapes (each evicting cached ones) while a third session is built and closed, as a
    worker runs its stages and loads another version: never two builds or runs at once, and every
    output what the same input gives alone."""
    import server.runtime.paddle as paddle_runtime

    watch, inference = _RunWatch(), paddle_runtime._import_inference()
    monkeypatch.setattr(paddle_runtime, "_import_inference", lambda: SimpleNamespace(
        Config=inference.Config, create_predictor=lambda config: watch.build(inference, config)))
    rng = np.random.default_rng(5)
    work = [("det", rng.uniform(-1, 1, (1, 3, 32 * int(h), 32 * int(w))).astype(np.float32))
            for h, w in rng.integers(2, 8, (12, 2))]
    work += [("cls", batch) for batch in _paddle_cls_batches(rng)]
    options = RuntimeOptions(cpu_threads=1, concurrency=2, onednn_cache_capacity=4)
    sessions = {stage: open_session(default_version_dir / stage, options) for stage in ("det", "cls")}
    try:
        alone = [sessions[stage].run(batch) for stage, batch in work]
        with ThreadPoolExecutor(max_workers=8) as pool:
            running = pool.map(lambda item: sessions[item[0]].run(item[1]), work * 2)
            open_session(default_version_dir / "rec", options).close()  # a version loading, one dropped
            together = list(running)
        for got, expected in zip(together, alone * 2):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        assert watch.most == 1, f"{watch.most} predictor builds or runs at once"
    finally:
        for session in sessions.values():
            session.close()


def test_paddle_predictor_is_rebuilt_past_the_memory_ceiling(
    default_version_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ceiling's rule, on real predictors, with the process's resident memory scripted (what the
    allocator returns to the system varies from run to run, so real readings would make this flaky):
    a run on a new largest input that grows memory past the ceiling drops its predictor, and the next
    run builds a new one that reads the same; a run that stays under it, or on an input no larger than
    its predictor has seen, keeps it. Without a ceiling, memory is never read."""
    import server.runtime.paddle as paddle_runtime

    readings: list[float] = []
    monkeypatch.setattr(paddle_runtime, "resident_mb", lambda: readings.pop(0))
    small, large = (np.random.default_rng(3).uniform(-1, 1, (1, 3, side, side)).astype(np.float32)
                    for side in (320, 480))
    options = RuntimeOptions(cpu_threads=1, concurrency=1)
    kept, tight = (open_session(default_version_dir / "det", o) for o in (options, replace(options, memory_ceiling_mb=150)))
    try:
        expected = {side: kept.run(batch) for side, batch in ((320, small), (480, large))}
        assert kept.rebuilds == 0
        steps = [  # (input, resident memory before and after the run or None when not read, rebuilds after)
            (small, [100.0, 200.0], 1),  # new largest, grew past the ceiling: dropped
            (small, [100.0, 120.0], 1),  # the rebuilt predictor's first run: under the ceiling, kept
            (small, None, 1),            # no larger than before: memory not even read
            (large, [140.0, 190.0], 2),  # a larger input grew it past the ceiling: dropped
            (large, [160.0, 170.0], 2),  # over the ceiling but grew by less than the noise: kept
        ]
        for batch, memory, rebuilds in steps:
            readings[:] = list(memory or [])
            np.testing.assert_allclose(tight.run(batch), expected[batch.shape[-1]], rtol=1e-4, atol=1e-5)
            assert readings == [] and tight.rebuilds == rebuilds
    finally:
        kept.close()
        tight.close()
