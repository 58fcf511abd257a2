"""Paddle Inference sessions: CPU with oneDNN, or GPU, chosen by `RuntimeOptions`.

A Paddle predictor is not thread-safe (Paddle #8640, PaddleX #2314), so a session keeps a small pool:
the first predictor is built from the files, the others are `clone()`s of it, which share its weights.
A serving thread checks one out for the length of one `run`. The pool never grows past
`options.concurrency`, so the number of predictors is bounded however many threads Gunicorn runs.

The oneDNN cache is keyed by input shape; left unbounded it grows with every new image size
(PaddleOCR #15631), hence `set_mkldnn_cache_capacity`.

Paddle is imported here, lazily, so that the Gunicorn master never initialises it: on GPU, CUDA must
only ever be initialised after fork, in the worker that uses it.
"""

from __future__ import annotations

import queue
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from server.runtime.base import RuntimeOptions

PARAMS_FILE = "inference.pdiparams"
PROGRAM_FILES = ("inference.pdmodel", "inference.json")


def find_paddle_model(stage_dir: Path) -> tuple[Path, Path] | None:
    """The (program, params) pair in `stage_dir`, or None when it holds no Paddle model."""
    params = stage_dir / PARAMS_FILE
    if not params.is_file():
        return None
    for name in PROGRAM_FILES:
        program = stage_dir / name
        if program.is_file():
            return program, params
    return None


def _import_inference() -> Any:
    """`paddle.inference`, imported without Paddle's start-up warning about a missing ccache
    (it only matters when compiling custom operators, which a server never does)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No ccache found")
        from paddle import inference
    return inference


def _make_config(program: Path, params: Path, options: RuntimeOptions) -> Any:
    inference = _import_inference()

    config = inference.Config(str(program), str(params))
    if options.device == "gpu":
        config.enable_use_gpu(options.gpu_memory_mb, options.gpu_id)
    else:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(options.cpu_threads)
        if options.onednn:
            config.enable_mkldnn()
            config.set_mkldnn_cache_capacity(options.onednn_cache_capacity)
    config.switch_ir_optim(True)
    config.enable_memory_optim()
    config.disable_glog_info()
    return config


class PaddleSession:
    """A thread-safe Paddle Inference network (see module docstring for the pooling)."""

    def __init__(self, program: Path, params: Path, options: RuntimeOptions) -> None:
        self._options = options
        first = _import_inference().create_predictor(_make_config(program, params, options))
        self._input_name = first.get_input_names()[0]
        self._output_name = first.get_output_names()[0]
        self._prototype = first
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._idle.put(first)
        self._created = 1
        self._grow_lock = threading.Lock()
        self.description = f"paddle:{program.name}:{options.device}"

    def _checkout(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._grow_lock:
            if self._created < self._options.concurrency:
                self._created += 1
                return self._prototype.clone()
        return self._idle.get()

    def run(self, batch: np.ndarray) -> np.ndarray:
        predictor = self._checkout()
        try:
            handle = predictor.get_input_handle(self._input_name)
            handle.reshape(batch.shape)
            handle.copy_from_cpu(np.ascontiguousarray(batch, dtype=np.float32))
            predictor.run()
            return predictor.get_output_handle(self._output_name).copy_to_cpu()
        finally:
            self._idle.put(predictor)

    def close(self) -> None:
        """Drop every predictor; Paddle frees their memory when the last reference goes."""
        while True:
            try:
                self._idle.get_nowait()
            except queue.Empty:
                break
        self._prototype = None
