"""Prometheus multiprocess mode under Gunicorn: the shared directory's life, and dead workers.

Each worker writes its metric values to memory-mapped files `<kind>_<pid>.db` in one directory, and
any process can merge them into one exposition (`server.observability.exposition`). The Gunicorn hooks call this
module, in the master, in this order:
- `prepare_directory` in `on_starting`, before any worker forks: creates the directory, deletes the
  `.db` files a previous run left (their counters would otherwise be added to this run's), and sets
  PROMETHEUS_MULTIPROC_DIR so the workers inherit it;
- `mark_worker_dead` in `child_exit`, for every worker that exits however it died (SIGKILL included):
  drops the files of its `live*` gauges, so in-flight requests and model info describe live workers
  only, while its counters and histograms stay and keep the totals monotonic;
- `remove_directory` in `on_exit`, for a directory this module created.

This module must not import `prometheus_client` at import time: the client chooses its value class
(in-memory or multiprocess) once, at import, from PROMETHEUS_MULTIPROC_DIR, and the workers inherit
whatever the master chose. Importing it in the master before the variable is set would silently give
every worker private counters (the KServe #2979 bug).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
# Held in the master while a dead worker's live gauges are removed, and by the master's exporter while
# it reads the files: without it a master scrape could read one of the dead worker's gauge files and
# miss the other, e.g. see its model-info series gone but its in-flight request still counted.
# Only the master takes it: a worker forked while the exporter held it would inherit it held.
MASTER_FILES_LOCK = threading.RLock()  # re-entrant: Gunicorn may reap a worker from a signal handler


@dataclass(frozen=True)
class MetricsDirectory:
    path: Path
    owned: bool  # created by us (a temporary directory), so ours to delete at exit


def prepare_directory(configured: str) -> MetricsDirectory:
    """Create (or empty) the directory for this server's metric files and export it to the workers.

    With `configured` empty, a private temporary directory is made, so that several servers on one
    host (tests, blue/green deployments) never share or wipe each other's files. A configured directory
    must be this server's alone; only its `*.db` files are removed, never anything else in it.
    """
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        directory = MetricsDirectory(path, owned=False)
    else:
        directory = MetricsDirectory(Path(tempfile.mkdtemp(prefix="ocr-metrics-")), owned=True)
    os.environ[ENV_VAR] = str(directory.path)
    return directory


def mark_worker_dead(pid: int, directory: MetricsDirectory) -> None:
    """Forget the live gauges of an exited worker (its counters stay)."""
    from prometheus_client.multiprocess import mark_process_dead

    with MASTER_FILES_LOCK:
        mark_process_dead(pid, str(directory.path))


def remove_directory(directory: MetricsDirectory) -> None:
    if directory.owned:
        shutil.rmtree(directory.path, ignore_errors=True)
