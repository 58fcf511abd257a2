"""OpenVINO sessions (CPU): the same ONNX files ONNX Runtime runs, or OpenVINO IR, at an explicit precision.

OpenVINO's CPU plugin picks bf16 by itself on a CPU with AVX-512 BF16 or AMX, and bf16 changes what a
network reads. So the precision is never left to the plugin: `INFERENCE_PRECISION_HINT` is always set,
f32 unless the stage's runtime asks for bf16 (`"runtime": "openvino:bf16"` in the manifest, an opt-in
whose accuracy cost is measured in bench/RESULTS.md, "OpenVINO").

Threads as for ONNX Runtime: `INFERENCE_NUM_THREADS` is the worker's share of the cores, one stream
(requests of a worker are already concurrent), no pinning of threads to cores (several workers and
other processes share them). A compiled model may be run from many threads if each uses its own infer
request: a pool of `options.concurrency` requests bounds concurrent runs per network, as the Paddle
pool and the ONNX semaphore do. Memory: the CPU plugin keeps compiled kernels per input shape in a
cache bounded by `CPU_RUNTIME_CACHE_CAPACITY`, set to the worker's oneDNN cache capacity.

`openvino` is imported lazily, so that a server without OpenVINO versions never loads it.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import numpy as np

from server.runtime.base import ModelFilesError, RuntimeOptions
from server.runtime.onnx import RuntimeUnavailableError, find_onnx_model

IR_FILE = "inference.xml"  # with inference.bin beside it, what `ovc` / `openvino.save_model` write
PRECISIONS = ("f32", "bf16")


def find_openvino_model(stage_dir: Path) -> Path | None:
    """The network OpenVINO reads from `stage_dir`: its IR (`inference.xml` + `.bin`) first, else its
    ONNX file (`find_onnx_model`); None when there is neither."""
    ir = stage_dir / IR_FILE
    if ir.is_file():
        if not ir.with_suffix(".bin").is_file():
            raise ModelFilesError(f"{stage_dir} holds {IR_FILE} without inference.bin")
        return ir
    return find_onnx_model(stage_dir)


def compile_config(options: RuntimeOptions, precision: str) -> dict[str, Any]:
    """The CPU plugin's properties for one network (see the module docstring)."""
    if precision not in PRECISIONS:
        raise ModelFilesError(f"unknown OpenVINO precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": max(1, options.cpu_threads),
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,
        "CPU_RUNTIME_CACHE_CAPACITY": max(1, options.onednn_cache_capacity),
    }


class OpenVinoSession:
    """A thread-safe OpenVINO network on CPU at a set precision (see the module docstring)."""

    def __init__(self, model: Path, options: RuntimeOptions, precision: str = "f32") -> None:
        if options.device != "cpu":
            raise RuntimeUnavailableError(
                f"OpenVINO stages run on CPU only here; OCR_DEVICE={options.device} needs a Paddle or ONNX version")
        import openvino as ov

        core = ov.Core()
        network = core.read_model(str(model))
        if len(network.inputs) != 1:
            raise ModelFilesError(f"{model} takes {len(network.inputs)} inputs; a pipeline stage takes one image batch")
        self._compiled = core.compile_model(network, "CPU", compile_config(options, precision))
        # What the plugin compiled to: a CPU without bf16 units runs a bf16 request in f32.
        self.precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        self._requests: queue.Queue[Any] = queue.Queue()
        for _ in range(max(1, options.concurrency)):
            self._requests.put(self._compiled.create_infer_request())

    def run(self, batch: np.ndarray) -> np.ndarray:
        request = self._requests.get()
        try:
            request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
            # The output tensor is the request's own buffer, reused by its next run: copy it out.
            return np.array(request.get_output_tensor(0).data, copy=True)
        finally:
            self._requests.put(request)

    def close(self) -> None:
        """Drop the requests and the compiled model; OpenVINO frees them with the last reference."""
        while not self._requests.empty():
            self._requests.get_nowait()
        self._compiled = None
