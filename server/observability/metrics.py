"""Every Prometheus metric of the server, defined once, imported where it is observed.

Names follow Prometheus conventions (base units, `_seconds`, `_total`, `_bytes`). Under Gunicorn the
client runs in multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set up by the Gunicorn hooks; see
`server.observability.multiprocess`): counters and histograms are summed over workers, dead ones included, so totals
never go backwards when a worker is replaced. Each gauge states how its per-process values combine,
chosen for what the number means:
- in-flight requests: `livesum` - the total now; a worker killed mid-request takes its +1 with it
  (with `sum` a SIGKILLed worker would leave requests "in flight" for ever);
- model info: `liveall` - one series per live worker (client adds a `pid` label), gone when the worker
  dies. A worker that swaps versions sets the old series to 0 (multiprocess files cannot delete a
  series) and the exposition drops 0-valued info series, so only what serves now is shown;
- golden CER: `mostrecent` - every worker computes the same figure for a version, and it outlives the
  worker that measured it;
- last reload time: `max` - the newest reload anywhere, kept after that worker dies;
- unverified serving: `livesum` - each live worker counts 1 while what it serves is not verified.

Label values are bounded on purpose: `model_version` only takes names of versions that served (or
"none" for requests refused before a model was involved), `code` only the server's own error codes,
`stage` and `phase` fixed sets. Client-supplied strings never become label values unchecked.
"""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram

# The model_version label of requests refused before any model was involved (bad input, not ready).
NO_VERSION = "none"
# The pipeline stages timed per image, in order.
STAGES = ("decode", "det", "cls", "rec")

# OCR of a receipt takes from ~5 ms (an empty image) to tens of seconds (a large page on a busy CPU).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0)
LINE_BUCKETS = (0, 1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 250)
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 1.0)
PIXEL_BUCKETS = (1e4, 1e5, 3e5, 1e6, 2e6, 4e6, 8e6, 1.6e7, 4e7)
CER_BUCKETS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)

# -- requests --------------------------------------------------------------------------------------
REQUESTS = Counter(
    "ocr_requests_total", "OCR requests answered, by HTTP status and serving model version.",
    ["status", "model_version"],
)
REQUEST_DURATION = Histogram(
    "ocr_request_duration_seconds",
    "Wall time of an answered (2xx) OCR request: reading, decoding and inference of all its images.",
    ["model_version"], buckets=LATENCY_BUCKETS,
)
STAGE_DURATION = Histogram(
    "ocr_stage_duration_seconds",
    "Time per image spent in one pipeline stage (decode, det, cls, rec); 0 when the stage had nothing to do.",
    ["stage", "model_version"], buckets=LATENCY_BUCKETS,
)
INFLIGHT = Gauge(
    "ocr_inflight_requests", "OCR requests being processed now, all workers together.",
    multiprocess_mode="livesum",
)
LINES_PER_IMAGE = Histogram(
    "ocr_lines_per_image", "Text lines returned per image.", ["model_version"], buckets=LINE_BUCKETS,
)
LINE_CONFIDENCE = Histogram(
    "ocr_line_confidence", "Recognition confidence of each returned line.", ["model_version"],
    buckets=CONFIDENCE_BUCKETS,
)
IMAGE_PIXELS = Histogram("ocr_image_pixels", "Decoded image size in pixels.", buckets=PIXEL_BUCKETS)
ERRORS = Counter("ocr_errors_total", "OCR requests refused or failed, by the error code of the JSON body.", ["code"])

# -- model lifecycle -------------------------------------------------------------------------------
MODEL_INFO = Gauge(
    "ocr_model_info", "The version each live worker serves (value 1); worker is the slot, pid the process.",
    ["version", "worker", "backend", "device"], multiprocess_mode="liveall",
)
MODEL_LOADS = Counter("ocr_model_loads_total", "Model version loads by result (success, failure).", ["result"])
MODEL_LOAD_DURATION = Histogram(
    "ocr_model_load_seconds", "Time to build a version's predictors (phase=load) and warm them up (phase=warmup).",
    ["phase"], buckets=LATENCY_BUCKETS,
)
MODEL_SWAPS = Counter("ocr_model_swaps_total", "Times a worker switched the version it serves.")
PREDICTOR_REBUILDS = Counter(
    "ocr_predictor_rebuilds_total",
    "Paddle predictors dropped and rebuilt because the worker's memory passed OCR_MEMORY_CEILING_MB.",
    ["network"],
)
# Cross-request batching of recognition (OCR_REC_BATCH_WAIT_MS): how full its rounds are.
REC_ROUND_REQUESTS = Histogram(
    "ocr_rec_round_requests", "Requests whose line crops shared one recognition round (batching on).",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
)
REC_ROUND_LINES = Histogram(
    "ocr_rec_round_lines", "Line crops recognised in one round (batching on).",
    buckets=(1, 4, 8, 16, 32, 64, 128, 256, 512),
)
MODEL_GOLDEN_CER = Gauge(
    "ocr_model_golden_cer", "Character error rate of a version on the quality-gate golden set.",
    ["version"], multiprocess_mode="mostrecent",
)
MODEL_LAST_RELOAD = Gauge(
    "ocr_model_last_reload_timestamp_seconds", "Unix time of the last successful version swap.",
    multiprocess_mode="max",
)
MODEL_UNVERIFIED_SERVING = Gauge(
    "ocr_model_unverified_serving",
    "Live workers serving a version without a verified signature (unsigned, signed by a key outside the "
    "trust store, or failed the re-check with nothing else to serve).",
    multiprocess_mode="livesum",
)
MODEL_RECHECK_FAILURES = Counter(
    "ocr_model_recheck_failures_total",
    "Periodic re-checks that found the serving version changed on disk or no longer verifying, by result.",
    ["result"],
)

# -- canary releases (server.lifecycle.canary, server.lifecycle.judging) ------------------------------
ROLLOUT_SHARE = Gauge(
    "ocr_rollout_share_percent", "Share of clients (percent) a live worker sends to the canary candidate; 0 once "
    "the canary ends.", ["version"], multiprocess_mode="livemax",
)
ROLLOUT_VERDICT = Gauge(
    "ocr_rollout_judge_verdict", "The judge's latest reading of a canary: 1 passed, 0 pending, -1 regressed.",
    ["version"], multiprocess_mode="mostrecent",
)
ROLLOUT_DECISIONS = Counter(
    "ocr_rollout_decisions_total", "Canaries ended, by decision (promoted, rolled_back) and by whom (judge, releaser).",
    ["decision", "by"],
)
ROLLOUT_SHADOW_DROPPED = Counter(
    "ocr_rollout_shadow_dropped_total", "Requests chosen for shadow traffic but not shadowed: the worker's "
    "shadow queue was full (shadow traffic sheds work rather than add latency).",
)
ROLLOUT_ROLLBACKS = Counter(
    "ocr_rollout_rollbacks_total", "Canaries rolled back, by the metric that regressed (manual: a releaser's abort).",
    ["metric"],
)

# -- registry sync (OCR_MODEL_SOURCE=mlflow; one process per server, see server.registry) ------------
REGISTRY_UP = Gauge(
    "ocr_registry_up", "1 when the registry sync's last pass reached the registry, 0 while it cannot; "
    "absent when no sync process runs.", multiprocess_mode="livemax",
)
REGISTRY_PASSES = Counter(
    "ocr_registry_sync_passes_total", "Registry sync passes by result (ok, failed).", ["result"],
)
REGISTRY_DOWNLOADS = Counter(
    "ocr_registry_downloads_total", "Versions copied from the registry into the repository, by result "
    "(published, failed).", ["result"],
)
REGISTRY_LAST_SUCCESS = Gauge(
    "ocr_registry_last_success_timestamp_seconds", "Unix time of the registry sync's last successful pass.",
    multiprocess_mode="max",
)

# -- online accuracy -------------------------------------------------------------------------------
FEEDBACK_CER = Histogram(
    "ocr_feedback_cer", "Character error rate of a served result against the true text given as feedback.",
    ["model_version"], buckets=CER_BUCKETS,
)
FEEDBACK_CHARS = Counter(
    "ocr_feedback_reference_chars_total", "Characters of true text received as feedback.", ["model_version"],
)
FEEDBACK_ERRORS = Counter(
    "ocr_feedback_char_errors_total", "Character edits (Levenshtein) between served and true text.",
    ["model_version"],
)
FEEDBACK_REQUESTS = Counter(
    "ocr_feedback_total",
    "Feedback submissions by outcome (recorded, unknown_request, duplicate, unavailable, invalid).",
    ["result"],
)


_serving_lock = threading.Lock()
_serving: dict[str, str] | None = None  # the MODEL_INFO labels this process has at 1


def model_serving(version: str, *, worker: str, backend: str, device: str) -> None:
    """Record that this worker now serves `version` (the lifecycle calls it on every activation).

    The series of what it served before is set to 0 rather than removed, because multiprocess files
    cannot delete a series; `server.observability.exposition` leaves 0-valued info series out of the exposition.
    """
    global _serving
    labels = {"version": version, "worker": worker, "backend": backend, "device": device}
    with _serving_lock:
        if _serving is not None and _serving != labels:
            MODEL_INFO.labels(**_serving).set(0)
        MODEL_INFO.labels(**labels).set(1)
        _serving = labels
