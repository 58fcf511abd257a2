"""The contract between the OCR pipeline and whatever executes a network.

A pipeline stage only needs "tensor in, tensor out", safe to call from several serving threads at
once. Keeping that contract this small is what lets a version's stages run on different runtimes
(Paddle Inference for one, ONNX Runtime or OpenVINO for another), and lets tests and benchmarks count calls
without touching the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

PADDLE = "paddle"
ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
# An OpenVINO stage names its precision with its runtime: "openvino" is f32, "openvino:bf16" opts in
# to bf16 (server.runtime.openvino). The precision rides on the runtime's name so that a manifest's
# stage entry alone says how the stage runs.
OPENVINO_PRECISION = {OPENVINO: "f32", f"{OPENVINO}:f32": "f32", f"{OPENVINO}:bf16": "bf16"}
RUNTIMES = (PADDLE, ONNXRUNTIME, *OPENVINO_PRECISION)


class InferenceSession(Protocol):
    """One loaded network.

    Contract: `run` may be called concurrently from any number of threads; implementations serialise
    or pool internally. `close` is called once, after the last `run` has returned, and releases the
    runtime's memory (the manager guarantees no request still holds the model).
    """

    def run(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RuntimeOptions:
    """How to execute networks in this worker (from `Settings`, resolved per worker)."""

    device: str = "cpu"  # "cpu" or "gpu"
    gpu_id: int = 0
    gpu_memory_mb: int = 500
    cpu_threads: int = 1
    onednn: bool = True
    onednn_cache_capacity: int = 16
    concurrency: int = 1  # predictors per network: requests of one worker that may run it at once
    memory_ceiling_mb: int = 0  # worker RSS past which a Paddle predictor that just ran is rebuilt; 0: never
    # Cross-request batching of recognition (server.pipeline.batching), carried here so that every path
    # that builds a pipeline from these options builds it alike: how long a round waits for more
    # requests (0: off, each request batches its own crops), crops per run (0: the version's), and
    # the request threads of the worker (a round with that many requests cannot grow).
    rec_batch_wait_ms: float = 0.0
    rec_batch_max: int = 0
    request_threads: int = 1


class ModelFilesError(ValueError):
    """A stage directory does not hold a model this server can run."""


def detect_runtime(stage_dir: Path, runtime: str | None = None) -> str:
    """Which runtime runs the network of `stage_dir`.

    `runtime` (a stage's `runtime` in the manifest) decides when given, and must then find its files.
    Otherwise the files decide; a directory holding both formats (what PaddleX's high-performance
    export leaves behind) runs on Paddle, the project's default runtime, unless the manifest says not to.
    OpenVINO runs ONNX files only when the manifest says so; an OpenVINO IR alone (`inference.xml`)
    runs on OpenVINO at f32.
    """
    from server.runtime.onnx import find_onnx_model
    from server.runtime.openvino import find_openvino_model
    from server.runtime.paddle import find_paddle_model

    if runtime is not None and runtime not in RUNTIMES:
        raise ModelFilesError(f"unknown runtime {runtime!r} for {stage_dir}: expected one of {', '.join(RUNTIMES)}")
    if runtime in OPENVINO_PRECISION:
        if find_openvino_model(stage_dir) is None:
            raise ModelFilesError(f"{stage_dir}: runtime {runtime!r} but no inference.xml + .bin or .onnx file")
        return runtime
    has_paddle = find_paddle_model(stage_dir) is not None
    has_onnx = find_onnx_model(stage_dir) is not None
    if runtime == PADDLE and not has_paddle:
        raise ModelFilesError(f"{stage_dir}: runtime 'paddle' but no inference.pdmodel/inference.json + .pdiparams")
    if runtime == ONNXRUNTIME and not has_onnx:
        raise ModelFilesError(f"{stage_dir}: runtime 'onnxruntime' but no .onnx file")
    if runtime is not None:
        return runtime
    if has_paddle:
        return PADDLE
    if has_onnx:
        return ONNXRUNTIME
    if find_openvino_model(stage_dir) is not None:
        return OPENVINO
    raise ModelFilesError(
        f"{stage_dir} holds no model: expected inference.pdmodel/inference.json + inference.pdiparams "
        "(Paddle Inference), a .onnx file (ONNX Runtime) or inference.xml + .bin (OpenVINO)"
    )


def open_session(stage_dir: Path, options: RuntimeOptions, runtime: str | None = None) -> InferenceSession:
    """Open the network stored in `stage_dir` on the runtime `detect_runtime` picks."""
    chosen = detect_runtime(stage_dir, runtime)
    if chosen in OPENVINO_PRECISION:
        from server.runtime.openvino import OpenVinoSession, find_openvino_model

        network = find_openvino_model(stage_dir)
        assert network is not None  # detect_runtime checked
        return OpenVinoSession(network, options, OPENVINO_PRECISION[chosen])
    if chosen == ONNXRUNTIME:
        from server.runtime.onnx import OnnxSession, find_onnx_model

        model = find_onnx_model(stage_dir)
        assert model is not None  # detect_runtime checked
        return OnnxSession(model, options)
    from server.runtime.paddle import PaddleSession, find_paddle_model

    files = find_paddle_model(stage_dir)
    assert files is not None
    return PaddleSession(*files, options=options)
