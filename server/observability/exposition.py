"""Turning the metrics into Prometheus exposition: the registry to read, and who serves it.

Two places serve the same text:
- `GET /metrics` on the app (`server.http.api.metrics`), which any worker answers;
- optionally the Gunicorn master, on its own port (`OCR_METRICS_BIND`, `MasterExporter`). Gunicorn's
  gthread workers queue every request, a scrape included, behind the OCR requests that hold their
  threads, so under saturation an app scrape waits for a busy worker's queue to drain - Prometheus
  then times out and the graphs go blank exactly when they matter. The master does no OCR, and
  since every worker's values are in the shared directory, it sees exactly what a worker would.

Under Gunicorn the registry merges the multiprocess files of all workers; outside it (a test client,
`flask run`) it is the process's own default registry.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server, values
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from server.observability.multiprocess import ENV_VAR, MASTER_FILES_LOCK

log = logging.getLogger(__name__)

# Info-style gauges whose 0 values mean "no longer true" (see `server.observability.metrics.model_serving`).
_INFO_METRICS = frozenset({"ocr_model_info"})


class _Source(Collector):
    """The metrics to expose: the merged multiprocess files, or this process's registry."""

    def __init__(self, multiprocess_dir: str | None, lock: AbstractContextManager[object] | None = None) -> None:
        self._collector = MultiProcessCollector(None, path=multiprocess_dir) if multiprocess_dir else None
        self._lock = lock or nullcontext()

    def collect(self) -> Iterator[Metric]:
        if self._collector is None:
            families = list(REGISTRY.collect())
        else:
            with self._lock:  # the files are all read here (the collector merges them eagerly)
                families = list(self._collector.collect())
        for family in families:
            if family.name in _INFO_METRICS:
                family.samples = [sample for sample in family.samples if sample.value != 0]
            yield family


def multiprocess_dir() -> str | None:
    return os.environ.get(ENV_VAR) or None


def exposition_registry(lock: AbstractContextManager[object] | None = None) -> CollectorRegistry:
    """A registry holding everything this server exposes, for this process's mode; `lock` is held
    while it reads the multiprocess files."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Source(multiprocess_dir(), lock))
    return registry


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """(body, content type): OpenMetrics when the scraper asks for it, else the classic text format."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def check_worker_mode() -> None:
    """Say loudly when a worker would expose only its own numbers.

    That happens when Gunicorn runs without our config (no multiprocess directory), or when
    `prometheus_client` was imported in the master before the directory was exported.
    """
    in_gunicorn = os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn")
    multiprocess_values = getattr(values.ValueClass, "_multiprocess", False)
    if multiprocess_dir() and not multiprocess_values:
        log.error("%s is set but prometheus_client was imported before it: metrics are per worker", ENV_VAR)
    elif in_gunicorn and not multiprocess_dir():
        log.warning("%s is not set: /metrics shows only the worker that answers the scrape", ENV_VAR)


class MasterExporter:
    """A small HTTP server in the Gunicorn master answering scrapes (any path) from the shared files.

    Started in `when_ready`, before workers fork; each worker closes its inherited copy of the listening
    socket (`close_in_worker`), so only the master ever accepts on it.
    """

    def __init__(self, bind: str) -> None:
        host, _, port = bind.rpartition(":")
        self._server: WSGIServer
        self._thread: threading.Thread
        self._server, self._thread = start_http_server(int(port), addr=host or "0.0.0.0",
                                                       registry=exposition_registry(MASTER_FILES_LOCK))

    @property
    def port(self) -> int:
        return self._server.server_port

    def close_in_worker(self) -> None:
        self._server.socket.close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
