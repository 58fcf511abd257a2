"""Controller: decides which version this worker serves and loads it off the request path.

At start it loads the highest version that verifies and warms up, falling back to lower ones, and
remembers why any version was refused so the API can say so. It runs in a background thread so the
worker answers `/healthz` (and a 503 from `/readyz`) while the first model loads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from server.lifecycle.loader import LoadError, load_version
from server.lifecycle.manager import ModelManager
from server.metrics import MODEL_LOAD_DURATION, MODEL_LOADS, model_serving
from server.repository.layout import ModelRepository
from server.runtime import RuntimeOptions

log = logging.getLogger(__name__)


@dataclass
class VersionStatus:
    version: str
    state: str  # "serving", "retired", "rejected"
    reason: str = ""
    since: float = 0.0


class LifecycleController:
    def __init__(self, repo: ModelRepository, manager: ModelManager, options: RuntimeOptions) -> None:
        self.repo = repo
        self.manager = manager
        self.options = options
        self._status: dict[str, VersionStatus] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.load_best, name="model-loader", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the start-up load to finish; True if a model serves."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.manager.ready

    def _set(self, version: str, state: str, reason: str = "") -> None:
        with self._lock:
            self._status[version] = VersionStatus(version, state, reason, time.time())

    def load_best(self) -> None:
        """Serve the highest version that loads; record why the ones above it did not."""
        for version in reversed(self.repo.version_names()):
            try:
                model = load_version(self.repo, version, self.options)
            except LoadError as exc:
                log.warning("version %s rejected: %s", version, exc)
                self._set(version, "rejected", str(exc))
                MODEL_LOADS.labels(result="failure").inc()
                continue
            MODEL_LOADS.labels(result="success").inc()
            MODEL_LOAD_DURATION.labels(phase="load").observe(model.load_seconds)
            MODEL_LOAD_DURATION.labels(phase="warmup").observe(model.warmup_seconds)
            old = self.manager.activate(model)
            device = "cpu" if self.options.device == "cpu" else f"gpu:{self.options.gpu_id}"
            model_serving(version, worker=os.environ.get("OCR_WORKER_SLOT", "0"), backend="paddle", device=device)
            if old is not None:
                self._set(old.version, "retired")
            self._set(version, "serving")
            log.info("serving %s/%s (load %.2fs, warm-up %.2fs)", model.name, version,
                     model.load_seconds, model.warmup_seconds)
            return
        log.error("no loadable model version in %s", self.repo.pipeline_dir)

    def statuses(self) -> list[VersionStatus]:
        with self._lock:
            return list(self._status.values())
