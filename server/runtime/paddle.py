"""Paddle Inference sessions: CPU with oneDNN, or GPU, chosen by `RuntimeOptions`.

A Paddle predictor is not thread-safe (Paddle #8640, PaddleX #2314), so each predictor is owned by one
executor thread and serving threads hand it their batches (see `PaddleSession`). A session never has
more than `options.concurrency` predictors, however many threads Gunicorn runs.

The oneDNN cache is keyed by input shape; left unbounded it grows with every new image size
(PaddleOCR #15631), hence `set_mkldnn_cache_capacity`. That bound puts Paddle in its "cache clearing"
mode, whose cache is one per process and not safe for predictors running at once in several threads:
every predictor shares one list of cached shapes, so a run on a new shape evicts the objects of a shape
another thread's run is using half-way (a NULL read in its convolution or reorder), and after each run a
predictor counts the whole cache without the lock the others write it under
(`OneDNNContext::GetCachedObjectsNumber`; Paddle #34554, PaddleOCR #731). Serving workers died of it
on a loaded machine, during swaps and canaries (more predictors, and warm-ups on new shapes): the
kernel log of three such SIGSEGVs points into `GetCachedObjectsNumber`, a oneDNN reorder and a
convolution; with runs one at a time, a worker still died in a run while another thread built a
predictor (a version loading after a rollback, stacks by faulthandler). So the CPU predictors of one
process are built, run and freed one at a time (`_ONEDNN_LOCK`, handed out in turn); each run still
uses the worker's share of the cores through its math threads, and workers are separate processes with
caches of their own.

Paddle is imported here, lazily, so that the Gunicorn master never initialises it: on GPU, CUDA must
only ever be initialised after fork, in the worker that uses it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from server.runtime.base import RuntimeOptions

log = logging.getLogger(__name__)
# Growth of resident memory over one run that counts as "this predictor took more memory": above the
# noise of Python objects allocated by other threads meanwhile.
_GROWTH_MB = 16.0


class _TurnLock:
    """A lock its waiters get in the order they asked for it. `threading.Lock` is not: the thread that
    releases it and asks again at once (an executor thread with the next batch queued) usually gets it
    back, and a stage or a version being warmed up then waits behind the other for as long as it has
    work."""

    def __init__(self) -> None:
        self._turns = threading.Condition()
        self._next = 0  # the ticket the next caller draws
        self._serving = 0  # the ticket that holds the lock

    def __enter__(self) -> None:
        with self._turns:
            ticket, self._next = self._next, self._next + 1
            self._turns.wait_for(lambda: self._serving == ticket)

    def __exit__(self, *exc: object) -> None:
        with self._turns:
            self._serving += 1
            self._turns.notify_all()


# Held while a oneDNN predictor is built, runs or is freed (see the module docstring).
_ONEDNN_LOCK = _TurnLock()

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


def resident_mb() -> float:
    """This process's resident memory in MB (Linux; 0 where /proc is not there)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def take_back_signals() -> None:
    """Import Paddle now, then hand the process's signals back to the Python handlers already set.

    Importing Paddle installs C-level failure handlers (for SIGTERM, SIGABRT, SIGSEGV, ...) that print
    a stack trace and abort the process: a Gunicorn worker told to stop gracefully (SIGTERM, as on a
    reload) would abort with its requests in flight. `paddle.disable_signal_handler()` removes them,
    resetting those signals to the default action, and the Python-level handlers (Gunicorn's) are then
    registered again. Python only sets handlers from the main thread, so this runs in the worker's
    main thread after Gunicorn set its handlers (the `post_worker_init` hook), before a model loads.
    """
    try:
        _import_inference()
    except ImportError:  # an ONNX-only installation: no Paddle, no handlers to take back
        return
    import paddle

    handlers = {sig: signal.getsignal(sig) for sig in signal.valid_signals()}
    paddle.disable_signal_handler()
    for sig, handler in handlers.items():
        if callable(handler) or handler is signal.SIG_IGN:
            signal.signal(sig, handler)


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
    """A thread-safe Paddle Inference network: each predictor lives on a thread of its own.

    Request threads hand batches to a small executor whose threads each own one predictor (built in
    that thread, from the files: not `clone()`d - with oneDNN, a clone shares weights that the first
    predictor has reordered in place, and a later clone then fails with "The Filter tensor's layout
    should be ONEDNN"; the weights of these mobile models are a few MB, so sharing saves little).
    Binding predictors to threads matters because oneDNN keeps its primitive cache per thread: were
    Gunicorn's request threads to run the predictors, every one of them would build and hold its own
    kernels for every input shape.

    A predictor keeps the activation memory of the largest input it has run, for good: neither
    `try_shrink_memory()`, a smaller oneDNN cache nor `malloc_trim` gives it back, dropping the
    predictor does (2.8 GB -> 0.36 GB measured). So when a run grew the worker's resident memory and
    left it over `options.memory_ceiling_mb`, the predictor that ran is dropped and the next run on its
    thread builds a new one (about 0.5 s, once). Only a run that grew it, on an input larger than its
    predictor had seen (the only kind of run that can make a predictor hold more): memory only passes
    the ceiling by growing, and the other stages' predictors, running beside it on inputs they have
    already sized their memory for, are not the ones holding it (resident memory is per process, so
    without the size test they would be blamed for a growth that happened during their run).
    """

    def __init__(self, program: Path, params: Path, options: RuntimeOptions) -> None:
        self._program, self._params, self._options = program, params, options
        # Each executor thread's predictor (also in _predictors until close or a drop frees it).
        self._local = threading.local()
        self._lock = threading.Lock()
        self._predictors: list[Any] = []  # every live predictor, so that close() frees them under the lock
        self._exclusive: contextlib.AbstractContextManager[Any] = (
            _ONEDNN_LOCK if options.device != "gpu" and options.onednn else contextlib.nullcontext())
        self._executor = ThreadPoolExecutor(
            max_workers=options.concurrency, thread_name_prefix=f"paddle-{program.parent.name}"
        )
        try:
            # Build the first predictor now, so that unreadable files fail the load, not a request.
            first = self._executor.submit(self._build_first).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        self._input_name = first.get_input_names()[0]
        self._output_name = first.get_output_names()[0]
        self.rebuilds = 0  # predictors dropped for the memory ceiling

    def _build_first(self) -> Any:
        with self._exclusive:
            return self._predictor()

    def _predictor(self) -> Any:
        """This executor thread's predictor, built on first use (under the oneDNN lock: a build beside a
        run crashed a worker, see the module docstring)."""
        predictor = getattr(self._local, "predictor", None)
        if predictor is None:
            config = _make_config(self._program, self._params, self._options)
            predictor = _import_inference().create_predictor(config)
            self._local.predictor = predictor
            with self._lock:
                self._predictors.append(predictor)
            self._local.largest = 0  # elements of the largest input this predictor has run
        return predictor

    def _run_here(self, batch: np.ndarray) -> np.ndarray:
        with self._exclusive:  # copying out may run a oneDNN reorder too
            return self._run_exclusive(batch)

    def _run_exclusive(self, batch: np.ndarray) -> np.ndarray:
        predictor = self._predictor()
        handle = predictor.get_input_handle(self._input_name)
        handle.reshape(batch.shape)
        handle.copy_from_cpu(np.ascontiguousarray(batch, dtype=np.float32))
        # Only a run on a larger input than this predictor has seen can grow what it holds.
        grows = self._options.memory_ceiling_mb > 0 and batch.size > self._local.largest
        self._local.largest = max(self._local.largest, batch.size)
        before = resident_mb() if grows else 0.0
        predictor.run()
        output = predictor.get_output_handle(self._output_name).copy_to_cpu()
        if grows:
            after = resident_mb()
            if after > self._options.memory_ceiling_mb and after - before > _GROWTH_MB:
                self._drop_predictor(batch.shape)
        return output

    def _drop_predictor(self, shape: tuple[int, ...]) -> None:
        """Drop this thread's predictor, and with it the memory its largest inputs left behind."""
        from server.observability.metrics import PREDICTOR_REBUILDS

        with self._lock:
            self._predictors.remove(self._local.predictor)
            self.rebuilds += 1
        self._local.predictor = None  # freed once this run returns, still under the oneDNN lock
        network = self._program.parent.name
        PREDICTOR_REBUILDS.labels(network=network).inc()
        log.warning("worker memory over %d MB after a %s batch %s: its predictor will be rebuilt",
                    self._options.memory_ceiling_mb, network, "x".join(map(str, shape)))

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._executor.submit(self._run_here, batch).result()

    def close(self) -> None:
        """Stop the executor threads, then free the predictors (and the memory Paddle holds for them)
        under the oneDNN lock: freeing one clears its part of the process's oneDNN cache."""
        self._executor.shutdown(wait=True)
        with self._exclusive:
            with self._lock:
                self._predictors.clear()
