"""ONNX Runtime sessions: CPU, or CUDA through `onnxruntime-gpu`, chosen by `RuntimeOptions`.

Unlike a Paddle predictor, one `onnxruntime.InferenceSession` may be `run` from many threads at once
(each call gets its own intermediate buffers), so a session here is a single ORT session plus a
semaphore. The semaphore gives ONNX versions the same bound as the Paddle pool: at most
`options.concurrency` requests of a worker execute a network at the same time, so CPU contention and
peak activation memory do not depend on which runtime a version happens to use.

Threads: `intra_op_num_threads` is the worker's share of the cores (`options.cpu_threads`), one
inter-op thread (these networks are a single chain), and pool threads do not spin while idle: several
Gunicorn workers share the cores, and a spinning pool burns the time another worker needs.

Memory: ORT's CPU arena keeps the largest buffer each shape ever needed and never gives it back, the
same trap as an unbounded oneDNN cache (PaddleOCR #15631) since detection sees a new input shape with
almost every image. The arena is off; allocation is a small share of a detection run.

`onnxruntime` is imported here, lazily, so the Gunicorn master never loads it: on GPU, CUDA must only
be initialised after fork, in the worker that uses it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from server.runtime.base import ModelFilesError, RuntimeOptions

PREFERRED_FILE = "inference.onnx"  # what paddle2onnx / PaddleX's high-performance export writes
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


class RuntimeUnavailableError(RuntimeError):
    """The runtime cannot execute on the requested device (e.g. CUDA asked, CPU-only package)."""


def find_onnx_model(stage_dir: Path) -> Path | None:
    """The ONNX file of `stage_dir`: `inference.onnx`, else the only `*.onnx`; None when there is none.

    Several `.onnx` files and no `inference.onnx` is an error rather than a guess: serving the wrong
    network of a directory would read garbage without failing.
    """
    preferred = stage_dir / PREFERRED_FILE
    if preferred.is_file():
        return preferred
    found = sorted(p for p in stage_dir.glob("*.onnx") if p.is_file())
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ModelFilesError(f"{stage_dir} holds several ONNX files ({names}): name one {PREFERRED_FILE}")
    return found[0] if found else None


def providers_for(options: RuntimeOptions) -> list[Any]:
    """Execution providers in priority order: CUDA on the worker's GPU first when asked, CPU always
    last so that operators CUDA lacks still run."""
    if options.device == "gpu":
        cuda = {"device_id": options.gpu_id, "arena_extend_strategy": "kSameAsRequested"}
        return [(CUDA_PROVIDER, cuda), CPU_PROVIDER]
    return [CPU_PROVIDER]


def _session_options(ort: Any, options: RuntimeOptions) -> Any:
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.cpu_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_cpu_mem_arena = False
    so.log_severity_level = 3  # errors only: ORT warns about every unused initializer of exported graphs
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


class OnnxSession:
    """A thread-safe ONNX Runtime network (see the module docstring for threads and memory)."""

    def __init__(self, model: Path, options: RuntimeOptions) -> None:
        import onnxruntime as ort

        if options.device == "gpu" and CUDA_PROVIDER not in ort.get_available_providers():
            raise RuntimeUnavailableError(
                "OCR_DEVICE=gpu but this onnxruntime has no CUDA provider: install onnxruntime-gpu "
                "in place of onnxruntime (README, 'ONNX models')"
            )
        self._session = ort.InferenceSession(
            str(model), sess_options=_session_options(ort, options), providers=providers_for(options)
        )
        if options.device == "gpu" and CUDA_PROVIDER not in self._session.get_providers():
            # ORT falls back to CPU with only a log line when CUDA fails to initialise; a GPU
            # deployment silently running on CPU is worse than a load that fails with a reason.
            raise RuntimeUnavailableError(f"CUDA provider failed to initialise for {model} on GPU {options.gpu_id}")
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelFilesError(f"{model} takes {len(inputs)} inputs; a pipeline stage takes one image batch")
        self._input_name = inputs[0].name
        self._output_name = self._session.get_outputs()[0].name
        self._slots = threading.BoundedSemaphore(max(1, options.concurrency))

    def run(self, batch: np.ndarray) -> np.ndarray:
        feed = {self._input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        with self._slots:
            return self._session.run([self._output_name], feed)[0]

    def close(self) -> None:
        """Drop the session; ORT frees its weights and buffers with the last reference."""
        self._session = None
