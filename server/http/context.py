"""What a worker's request handlers share: the settings, the model lifecycle, the audit log and the
authorizer.

Built by the app factory inside the worker (never at import time, never in the Gunicorn master), from
`Settings`: this is where the settings become the lifecycle's and the runtime's own configuration.
Handlers reach it through `current_context()`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from flask import current_app

from server.config import Settings
from server.governance.access import Authorizer
from server.governance.audit import AuditLog, audit_log_from_settings
from server.governance.verify import SignatureChecker
from server.lifecycle import Lifecycle, LifecycleConfig
from server.lifecycle.statedir import StatePaths
from server.quality.gate import GatePolicy
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


def lifecycle_config(settings: Settings) -> LifecycleConfig:
    return LifecycleConfig(
        poll_s=settings.poll_interval_s,
        debounce_s=settings.debounce_s,
        settle_s=settings.settle_s,
        gate=GatePolicy(tolerance=settings.gate_tolerance, max_cer=settings.gate_max_cer),
        warmup_shapes=settings.warmup_shape_list,
        drain_timeout_s=float(settings.timeout_s),
        require_signature=settings.require_signature,
        recheck_s=settings.signature_recheck_s,
    )


@dataclass
class ServerContext:
    settings: Settings
    lifecycle: Lifecycle
    audit: AuditLog
    authorizer: Authorizer

    @classmethod
    def build(cls, settings: Settings) -> "ServerContext":
        """Raises PolicyError / TrustConfigError when the access policy or the trust files cannot be used
        (`ocr-server serve` checks them before Gunicorn starts, so this is a file changed since)."""
        slot = worker_slot()
        audit = audit_log_from_settings(settings)
        lifecycle = Lifecycle.build(
            ModelRepository(settings.model_repo, settings.pipeline_name), runtime_options(settings, slot),
            lifecycle_config(settings), StatePaths(settings.effective_state_dir, settings.pipeline_name), audit, slot,
            SignatureChecker.from_settings(settings))
        return cls(settings, lifecycle, audit, Authorizer.from_settings(settings))


def current_context() -> ServerContext:
    return current_app.extensions[EXTENSION_KEY]
