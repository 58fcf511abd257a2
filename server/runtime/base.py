"""The contract between the OCR pipeline and whatever executes a network.

A pipeline stage only needs "tensor in, tensor out", safe to call from several serving threads at
once. Keeping that contract this small is what lets a version's stages run on different runtimes,
and lets tests and benchmarks count calls without touching the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


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


class ModelFilesError(ValueError):
    """A stage directory does not hold a model this server can run."""


def open_session(stage_dir: Path, options: RuntimeOptions) -> InferenceSession:
    """Open the network stored in `stage_dir`, picking the runtime from the files present."""
    from server.runtime.paddle import PaddleSession, find_paddle_model

    files = find_paddle_model(stage_dir)
    if files is None:
        raise ModelFilesError(f"{stage_dir} holds no inference.pdmodel/inference.json + inference.pdiparams")
    return PaddleSession(*files, options=options)
