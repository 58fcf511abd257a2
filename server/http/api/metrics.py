"""`GET /metrics`: Prometheus exposition of every worker's metrics, answered by whichever worker.

All workers read the same multiprocess files, so any one of them gives the whole server's view. This
route shares the workers' threads with OCR requests; where scrapes must not queue behind them, serve
metrics from the Gunicorn master instead (`OCR_METRICS_BIND`, see `server.observability.exposition`).
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from server.observability.exposition import exposition_registry, render

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    body, content_type = render(exposition_registry(), request.headers.get("Accept"))
    return Response(body, content_type=content_type)
