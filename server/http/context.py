"""What a worker's request handlers share: the settings, the model lifecycle, the audit log, the
authorizer and the PDF renderers.

Built by the app factory inside the worker (never at import time, never in the Gunicorn master), from
`Settings`: this is where the settings become the lifecycle's, the runtime's and the documents' own
configuration. Handlers reach it through `current_context()`.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

from flask import current_app

from server.config import Settings
from server.documents.pdf import PdfLimits, PdfRenderer
from server.documents.sources import DocumentLimits
from server.fields.dates import warm_up as warm_up_dates
from server.governance.access import Authorizer
from server.governance.audit import AuditLog, audit_log_from_settings
from server.governance.verify import SignatureChecker
from server.lifecycle import Lifecycle, LifecycleConfig
from server.lifecycle.statedir import StatePaths
from server.quality.gate import GatePolicy
from server.quality.judge import JudgePolicy
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
        rec_batch_wait_ms=settings.rec_batch_wait_ms,
        rec_batch_max=settings.rec_batch_max,
        request_threads=settings.threads,
    )


def lifecycle_config(settings: Settings) -> LifecycleConfig:
    return LifecycleConfig(
        poll_s=settings.poll_interval_s,
        debounce_s=settings.debounce_s,
        settle_s=settings.settle_s,
        gate=GatePolicy(tolerance=settings.gate_tolerance, max_cer=settings.gate_max_cer,
                        min_field_match=settings.gate_min_field_match, field_tolerance=settings.gate_field_tolerance),
        warmup_shapes=settings.warmup_shape_list,
        drain_timeout_s=float(settings.timeout_s),
        require_signature=settings.require_signature,
        recheck_s=settings.signature_recheck_s,
        judge=JudgePolicy(max_regression=settings.rollout_max_regression, alpha=settings.rollout_alpha,
                          window_requests=settings.rollout_window_requests, window_s=settings.rollout_window_s,
                          windows=settings.rollout_windows, max_error_rate=settings.rollout_max_error_rate),
        judge_s=settings.rollout_judge_s,
        auto_promote=settings.rollout_auto_promote,
        rollout_webhook=settings.rollout_webhook,
        promote_requires_report=settings.promote_requires_report,
        rollout_mode=settings.rollout,
        rollout_percent=settings.rollout_percent,
        bake_s=settings.rollout_bake_s,
    )


def document_limits(settings: Settings) -> DocumentLimits:
    return DocumentLimits(max_pixels=settings.max_image_pixels, max_pages=settings.max_pdf_pages,
                          pdf=PdfLimits.from_settings(settings))


@dataclass
class ServerContext:
    settings: Settings
    lifecycle: Lifecycle
    audit: AuditLog
    authorizer: Authorizer
    pdf_renderer: PdfRenderer  # this worker's pdfium processes (one per PDF being read, a few kept idle)
    documents: DocumentLimits

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
        # dateparser loads its language data on first use (a few tenths of a second, bench/RESULTS.md):
        # paid once here, as the worker starts, not by the first request that asks for fields.
        warm_up_dates()
        context = cls(settings, lifecycle, audit, Authorizer.from_settings(settings),
                      PdfRenderer(settings.pdf_memory_mb), document_limits(settings))
        atexit.register(context.close)  # the renderers also die with their worker (PR_SET_PDEATHSIG)
        return context

    def close(self) -> None:
        """Stop what the worker started: the PDF renderer processes."""
        self.pdf_renderer.close()


def current_context() -> ServerContext:
    return current_app.extensions[EXTENSION_KEY]
