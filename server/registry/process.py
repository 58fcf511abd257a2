"""The registry sync as a process of its own: settings, the one-per-machine lock, signals, the loop.

The Gunicorn master starts it with `python -m server.registry` (a fresh interpreter, not a fork: the
MLflow client's threads and connections never exist in the master, so no worker inherits them) and
restarts it if it dies. It stops on SIGTERM or SIGINT, and on its own when its parent is gone (a
master killed with SIGKILL cannot stop it). `ocr-server models sync --once` runs one pass in the
foreground (e.g. to check a registry before pointing a fleet at it).

Only one sync may write a machine's repository and pin: it holds `<state_dir>/<pipeline>/registry.lock`
for its whole life; a second one exits at once with status 3. Holding that lock also makes the
staging directories it finds from an earlier run its own crash leftovers, removed at start.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
from types import FrameType

from server.config import ConfigError, Settings
from server.governance.audit import audit_log_from_settings
from server.lifecycle.statedir import StatePaths
from server.registry.candidates import NoDelivery
from server.registry.client import MlflowRegistry, RegistryError, limit_http_retries
from server.registry.sync import STAGING_LABEL, Syncer
from server.repository.layout import ModelRepository
from server.storage.locks import FileLock

log = logging.getLogger("server.registry")

LOCK_HELD = 3


def build_syncer(settings: Settings) -> Syncer:
    """The sync for these settings (raises RegistryError when the MLflow client is missing)."""
    limit_http_retries(settings.mlflow_timeout_s)
    registry = MlflowRegistry(settings.mlflow_tracking_uri, settings.mlflow_model)
    return Syncer(registry, ModelRepository(settings.model_repo, settings.pipeline_name),
                  StatePaths(settings.effective_state_dir, settings.pipeline_name), audit_log_from_settings(settings),
                  NoDelivery(), settings.mlflow_poll_s)


def _remove_leftovers(repo: ModelRepository) -> None:
    for leftover in repo.pipeline_dir.glob(f".staging-*-{STAGING_LABEL}-*"):
        log.info("removing %s, left by an interrupted sync", leftover)
        shutil.rmtree(leftover, ignore_errors=True)


def main(once: bool = False) -> int:
    """Run the sync (one pass with `once`); the exit status: 0, 1 (a pass failed, with `once`), 2
    (configuration), 3 (another sync holds this machine's lock)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                            format="[%(asctime)s] [%(process)d] [%(levelname)s] registry sync: %(message)s")
    try:
        settings = Settings.from_env()
        if settings.model_source != "mlflow" and not once:
            raise ConfigError("the registry sync runs only with OCR_MODEL_SOURCE=mlflow")
        if not (settings.mlflow_tracking_uri and settings.mlflow_model):
            raise ConfigError("the registry sync needs OCR_MLFLOW_TRACKING_URI and OCR_MLFLOW_MODEL")
        logging.getLogger().setLevel(settings.log_level.upper())
        syncer = build_syncer(settings)
    except (ConfigError, RegistryError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    lock = FileLock(syncer.state.registry_lock)
    if not lock.try_acquire():
        log.error("another registry sync holds %s: one per machine", lock.path)
        return LOCK_HELD
    try:
        syncer.repo.pipeline_dir.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(syncer.repo)
        log.info("following %s in %s every %gs", syncer.status.model, syncer.status.tracking_uri, syncer.poll_s)
        if once:
            ok = syncer.sync_once()
            syncer.write_status()
            return 0 if ok else 1
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        parent = os.getppid()
        syncer.run(stop, keep_going=lambda: os.getppid() == parent)
        log.info("stopped" if stop.is_set() else "parent %d is gone: stopping", parent)
        return 0
    finally:
        lock.release()
