"""Gunicorn settings and server hooks, derived from `Settings` (hence from the environment).

`ocr-server serve` runs Gunicorn with `-c python:server.process.gunicorn_config`; the top-level
`gunicorn.conf.py` re-exports this module for those who run `gunicorn -c gunicorn.conf.py`.

Workers are gthread workers: threads keep answering health checks and queue requests while inference
runs, and the app is built after fork (`preload_app = False`) so each worker loads its own predictors
and the master never initialises Paddle or CUDA (PaddleOCR #1505: all workers on GPU 0).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from server.config import Settings
from server.cpu_quota import cpu_budget
from server.observability.multiprocess import MetricsDirectory, mark_worker_dead, prepare_directory, remove_directory
from server.process.sidecar import Sidecar
from server.registry.client import redact

if TYPE_CHECKING:  # imported for real only once the metrics directory is exported (server.observability.multiprocess)
    from server.observability.exposition import MasterExporter

_settings = Settings.from_env()
# Set in the master by the hooks below (metrics: see server.observability.multiprocess and server.observability.exposition).
_metrics_dir: MetricsDirectory | None = None
_exporter: MasterExporter | None = None
# The registry sync (OCR_MODEL_SOURCE=mlflow): one process per server, the master's child.
_registry_sync: Sidecar | None = None
# How long an exiting worker waits for a lifecycle pass in progress (worker_exit).
_EXIT_JOIN_S = 10.0

bind = _settings.bind
workers = _settings.workers
threads = _settings.threads
worker_class = "server.process.worker.HandoverWorker"  # gthread; see its docstring
timeout = _settings.timeout_s
graceful_timeout = _settings.graceful_timeout_s
keepalive = 5
preload_app = False
wsgi_app = "server.http.app:create_app()"
loglevel = _settings.log_level
accesslog = "-"
# Gunicorn 27's control socket lives at one fixed path per user: several servers on one host (tests,
# blue/green) would fight over it, and nothing here uses `gunicornc`.
control_socket_disable = True
errorlog = "-"
# Keep the environment of workers in line with the CLI's flags (they are passed as env vars).
raw_env = [f"{key}={value}" for key, value in _settings.as_env().items()]


def on_starting(server: Any) -> None:
    """Prepare the metrics directory, and install the default model into an empty repository, once, in
    the master, before any worker."""
    global _metrics_dir
    _metrics_dir = prepare_directory(_settings.metrics_dir)
    server.log.info("prometheus multiprocess directory: %s", _metrics_dir.path)
    budget = cpu_budget()
    server.log.info(
        "cpus: %d to size threads by (affinity %d, cgroup quota %s); per worker: %d math threads, %d concurrent inferences",
        budget.cpus, budget.affinity, "none" if budget.quota is None else f"{budget.quota:g}",
        _settings.effective_cpu_threads, _settings.effective_inference_concurrency)

    from server.repository.install import install_default
    from server.repository.layout import ModelRepository

    repo = ModelRepository(_settings.model_repo, _settings.pipeline_name)
    if _settings.model_source == "mlflow":
        server.log.info("models come from the MLflow registry %s (%s); nothing is installed at start",
                        redact(_settings.mlflow_tracking_uri), _settings.mlflow_model)
        repo.pipeline_dir.mkdir(parents=True, exist_ok=True)  # empty until the first sync: not "missing"
    elif _settings.effective_install_default and not repo.version_names():
        server.log.info("model repository %s is empty: installing the default versions", repo.pipeline_dir)
        install_default(repo, _settings.device)


def when_ready(server: Any) -> None:
    """Serve /metrics from the master on its own port, if configured (see server.observability.exposition),
    and start the registry sync (server.registry) when models come from MLflow."""
    global _exporter, _registry_sync
    if _settings.metrics_bind:
        from server.observability.exposition import MasterExporter

        _exporter = MasterExporter(_settings.metrics_bind)
        server.log.info("master serves metrics on %s", _settings.metrics_bind)
    if _settings.model_source == "mlflow":
        metrics_dir = _metrics_dir

        def forget_metrics(pid: int) -> None:  # its live gauges (ocr_registry_up) go with it
            if metrics_dir is not None:
                mark_worker_dead(pid, metrics_dir)

        _registry_sync = Sidecar("registry sync", [sys.executable, "-m", "server.registry"], server.log,
                                 on_exit=forget_metrics)
        _registry_sync.start()


def pre_fork(server: Any, worker: Any) -> None:
    """Give each worker the lowest free slot; the slot picks its GPU and names it in metrics."""
    used = {getattr(w, "ocr_slot", None) for w in server.WORKERS.values()}
    slot = 0
    while slot in used:
        slot += 1
    worker.ocr_slot = slot


def post_fork(server: Any, worker: Any) -> None:
    global _registry_sync
    os.environ["OCR_WORKER_SLOT"] = str(worker.ocr_slot)
    _registry_sync = None  # the master's: a worker neither supervises nor stops it
    if _exporter is not None:
        _exporter.close_in_worker()
    app_log = logging.getLogger("server")
    app_log.handlers = server.log.error_log.handlers
    app_log.propagate = False  # Paddle configures the root logger; do not log every line twice


def post_worker_init(worker: Any) -> None:
    """Take the signals back from Paddle's import, dump Python stacks on a fatal signal, then hold the worker out of its accept loop until its
    first model is loaded and warmed up (or none can be), so that a new worker never answers 503
    `model_not_ready` while the others could serve: on a restart (server.process.worker) and after a
    crashed worker is replaced. The master's heartbeat check is kept satisfied meanwhile."""
    from server.http.context import EXTENSION_KEY
    from server.runtime.paddle import take_back_signals

    take_back_signals()
    # Paddle's handlers are gone (SIGSEGV & co are back to the default action): a crash in native code
    # now first writes every thread's Python stack to the worker's stderr (the server log), then kills
    # the worker by the same signal, which the master logs and replaces as before. Without the stacks a
    # SIGSEGV in a worker only leaves an address inside a shared library in the kernel log.
    faulthandler.enable(all_threads=True)
    lifecycle = worker.wsgi.extensions[EXTENSION_KEY].lifecycle
    started = time.monotonic()
    deadline = started + _settings.boot_wait_s
    while worker.alive and time.monotonic() < deadline and not lifecycle.wait_first_pass(1.0):
        worker.notify()
    if worker.alive:
        active = lifecycle.active
        worker.log.info("accepting connections after %.1f s, serving %s", time.monotonic() - started,
                        active.version if active is not None else "nothing yet (503 until a version loads)")


def worker_exit(server: Any, worker: Any) -> None:
    """Stop the model lifecycle and free the models before the interpreter shuts down. A lifecycle thread
    still inside native code (a load, a warm-up) when Python finalises would be ended by
    `pthread_exit` there, which C++ turns into `terminate called without an active exception` and
    SIGABRT; if a load does not end within the bound, leave without finalising instead."""
    from server.http.context import EXTENSION_KEY

    app = getattr(worker, "wsgi", None)
    if app is None:  # the app never built: nothing was started
        return
    if not app.extensions[EXTENSION_KEY].lifecycle.stop(timeout=_EXIT_JOIN_S):
        server.log.info("worker %s exits with a model load still running (no interpreter shutdown)", worker.pid)
        logging.shutdown()
        os._exit(0)


class _BodyDeadline:
    """The connection's socket as the request parser reads it, with one deadline for the whole body:
    a client trickling a byte at a time would never trip a per-read timeout. Past the deadline a read
    raises TimeoutError, which the app answers 408 `body_timeout` (server/http/request.py)."""

    def __init__(self, sock: Any, seconds: float) -> None:
        self.sock = sock
        self.deadline = time.monotonic() + seconds

    def recv(self, size: int) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request body deadline passed")
        self.sock.settimeout(remaining)
        try:
            return self.sock.recv(size)
        finally:
            self.sock.settimeout(None)  # the response is written without it


def pre_request(worker: Any, req: Any) -> None:
    """The headers are in; from here the request's thread reads the body: give it OCR_BODY_TIMEOUT_S."""
    unreader = getattr(req, "unreader", None)
    if _settings.body_timeout_s and hasattr(unreader, "sock"):
        unreader.sock = _BodyDeadline(unreader.sock, _settings.body_timeout_s)


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """Gunicorn drains an unread body with its own bound after the response: give it the bare socket."""
    unreader = getattr(req, "unreader", None)
    if isinstance(getattr(unreader, "sock", None), _BodyDeadline):
        unreader.sock = unreader.sock.sock


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited (any cause, SIGKILL included): its live gauges go, its counters stay."""
    if _metrics_dir is not None:
        mark_worker_dead(worker.pid, _metrics_dir)


def on_exit(server: Any) -> None:
    if _registry_sync is not None:
        _registry_sync.stop()
    if _exporter is not None:
        _exporter.stop()
    if _metrics_dir is not None:
        remove_directory(_metrics_dir)
