"""What a worker's request handlers share: settings, the model manager and the lifecycle controller.

Built by the app factory inside the worker (never at import time, never in the Gunicorn master), and
reached from handlers through `current_context()`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from flask import current_app

from server.config import Settings
from server.governance.audit import AuditLog
from server.lifecycle.controller import LifecycleConfig, LifecycleController
from server.lifecycle.manager import ModelManager
from server.storage.statefiles import StatePaths
from server.repository.layout import ModelRepository
from server.runtime import RuntimeOptions

EXTENSION_KEY = "ocr"


def worker_slot() -> int:
    """This worker's slot (0..workers-1), assigned by the Gunicorn hooks; 0 outside Gunicorn."""
    return int(os.environ.get("OCR_WORKER_SLOT", "0"))


def runtime_options(settings: Settings, slot: int) -> RuntimeOptions:
    return RuntimeOptions(
        device=settings.device,
        gpu_id=settings.gpu_id_for(slot),
        gpu_memory_mb=settings.gpu_memory_mb,
        cpu_threads=settings.effective_cpu_threads,
        onednn=settings.onednn,
        onednn_cache_capacity=settings.onednn_cache_capacity,
        concurrency=settings.effective_inference_concurrency,
        # RSS says nothing of GPU memory, and a CUDA process starts with gigabytes of it mapped.
        memory_ceiling_mb=settings.memory_ceiling_mb if settings.device == "cpu" else 0,
    )


@dataclass
class ServerContext:
    settings: Settings
    repo: ModelRepository
    manager: ModelManager
    controller: LifecycleController
    slot: int

    @classmethod
    def build(cls, settings: Settings) -> "ServerContext":
        slot = worker_slot()
        repo = ModelRepository(settings.model_repo, settings.pipeline_name)
        manager = ModelManager()
        controller = LifecycleController(
            repo, manager, runtime_options(settings, slot), LifecycleConfig.from_settings(settings),
            StatePaths(settings.effective_state_dir, settings.pipeline_name), AuditLog(settings.effective_audit_log),
            slot,
        )
        return cls(settings, repo, manager, controller, slot)


def current_context() -> ServerContext:
    return current_app.extensions[EXTENSION_KEY]
