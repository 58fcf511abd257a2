"""Every setting of the server, in one typed place, read from environment variables.

Gunicorn forks workers after reading its config, and the CLI passes its flags down as environment
variables, so the environment is the one source every process agrees on. `Settings.from_env()` validates
everything at start, so a typo in a deployment fails loudly before a worker forks rather than at the first
request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from server.cpu_quota import cpu_budget


class ConfigError(ValueError):
    """A setting is missing its expected shape; the message names the variable."""


def _cpu_count() -> int:
    """CPUs to size threads by: the affinity capped by a container's CPU limit (server.cpu_quota)."""
    return cpu_budget().cpus


def _as_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def _as_float(name: str, raw: str, minimum: float) -> float:
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if not value >= minimum:  # also refuses NaN
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _as_int(name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def parse_syslog_target(value: str) -> tuple[str, str, int]:
    """`udp://HOST:PORT`, `tcp://HOST:PORT` or `HOST:PORT` (UDP) -> (protocol, host, port); IPv6 in brackets."""
    text = value.strip()
    parts = urlsplit(text if "://" in text else f"udp://{text}")
    if parts.scheme not in {"udp", "tcp"}:
        raise ValueError(f"the protocol must be udp:// or tcp://, got {parts.scheme}://")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid port in {value!r}") from exc
    if not parts.hostname or not port or parts.path not in {"", "/"}:
        raise ValueError(f"expected [udp://|tcp://]HOST:PORT, got {value!r}")
    return parts.scheme, parts.hostname, port


@dataclass(frozen=True)
class Settings:
    """Server settings. Each field maps to the environment variable named in its metadata."""

    bind: str = field(default="0.0.0.0:8000", metadata={"env": "OCR_BIND"})
    workers: int = field(default=2, metadata={"env": "OCR_WORKERS", "min": 1})
    threads: int = field(default=4, metadata={"env": "OCR_THREADS", "min": 1})
    model_repo: Path = field(default=Path("models"), metadata={"env": "OCR_MODEL_REPO"})
    pipeline_name: str = field(default="ppocr", metadata={"env": "OCR_PIPELINE"})
    install_default: bool = field(default=True, metadata={"env": "OCR_INSTALL_DEFAULT"})

    device: str = field(default="cpu", metadata={"env": "OCR_DEVICE"})
    gpu_ids: tuple[int, ...] = field(default=(0,), metadata={"env": "OCR_GPU_IDS"})
    gpu_memory_mb: int = field(default=500, metadata={"env": "OCR_GPU_MEMORY_MB", "min": 1})
    # 0 means "derive": the CPUs this process may use (affinity capped by a cgroup CPU limit, see
    # server.cpu_quota) shared evenly between workers.
    cpu_threads: int = field(default=0, metadata={"env": "OCR_CPU_THREADS", "min": 0})
    onednn: bool = field(default=True, metadata={"env": "OCR_ONEDNN"})
    # Input shapes whose oneDNN kernels stay cached, per process, shared by all stages. Recognition
    # batches come in at most 2 shapes per width bucket; detection adds one per image size. A miss costs
    # about one extra inference of that batch (bench/RESULTS.md, "oneDNN cache and memory").
    onednn_cache_capacity: int = field(default=16, metadata={"env": "OCR_ONEDNN_CACHE", "min": 1})
    # How many requests of one worker may run a model stage at the same time (one predictor each).
    # 0 means "derive": enough to keep this worker's share of the cores busy.
    inference_concurrency: int = field(default=0, metadata={"env": "OCR_INFERENCE_CONCURRENCY", "min": 0})
    # A worker's resident memory (MB) past which a Paddle predictor that has just run is dropped and
    # rebuilt (~0.5 s): predictors keep the memory of the largest input they ran. 0 never rebuilds.
    memory_ceiling_mb: int = field(default=4096, metadata={"env": "OCR_MEMORY_CEILING_MB", "min": 0})
    # Cross-request batching of recognition (server.pipeline.batching): how long (ms) the first request
    # of a round waits for others' line crops when recognition is idle; 0 is off (each request batches
    # its own crops). Off by default: measured in bench/RESULTS.md, "Cross-request recognition batching".
    rec_batch_wait_ms: float = field(default=0.0, metadata={"env": "OCR_REC_BATCH_WAIT_MS", "min": 0.0})
    # Line crops in one recognition run when batching is on (the width budget grows alike); 0: the
    # version's own batch size. A GPU wants more than a CPU.
    rec_batch_max: int = field(default=0, metadata={"env": "OCR_REC_BATCH_MAX", "min": 0})

    max_body_bytes: int = field(default=20 * 1024 * 1024, metadata={"env": "OCR_MAX_BODY_BYTES", "min": 1})
    # Seconds a request body may take to arrive, once the headers are in, before it is answered 408
    # `body_timeout`: a client trickling its upload would hold one of the worker's few threads for as
    # long as it likes (server/process/gunicorn_config.py, server/http/request.py). 0: no limit.
    body_timeout_s: float = field(default=60.0, metadata={"env": "OCR_BODY_TIMEOUT_S", "min": 0})
    max_image_pixels: int = field(default=40_000_000, metadata={"env": "OCR_MAX_IMAGE_PIXELS", "min": 1})
    max_images_per_request: int = field(default=16, metadata={"env": "OCR_MAX_IMAGES", "min": 1})

    # -- documents (see README, "PDF and multi-page TIFF input") --
    # Rendering resolution of PDF pages (bench/RESULTS.md, "PDF rendering resolution").
    pdf_dpi: int = field(default=200, metadata={"env": "OCR_PDF_DPI", "min": 36})
    # Pages one document (PDF or multi-page TIFF) may have read; more is refused unless `pages` picks some.
    max_pdf_pages: int = field(default=16, metadata={"env": "OCR_MAX_PDF_PAGES", "min": 1})
    # Wall-clock time pdfium may spend on one PDF (open, parse, render, text, all pages); past it the
    # renderer process is killed and the request answered 422 pdf_too_complex.
    pdf_timeout_s: float = field(default=20.0, metadata={"env": "OCR_PDF_TIMEOUT_S", "min": 0.1})
    # Address-space limit of a PDF renderer process, MB; 0: none.
    pdf_memory_mb: int = field(default=1536, metadata={"env": "OCR_PDF_MEMORY_MB", "min": 0})
    # Default of the `pdf_text` option: auto (the text layer where the page is born digital), ocr, layer.
    pdf_text: str = field(default="auto", metadata={"env": "OCR_PDF_TEXT"})
    # Default of the `fields` option: empty (no fields), receipt, invoice or cheque.
    default_fields: str = field(default="", metadata={"env": "OCR_FIELDS"})

    # Prometheus multiprocess files; empty means a private temporary directory per server, removed at exit.
    metrics_dir: str = field(default="", metadata={"env": "OCR_METRICS_DIR"})
    # HOST:PORT where the Gunicorn master serves /metrics itself, away from the workers' busy threads;
    # empty means only the app's own GET /metrics.
    metrics_bind: str = field(default="", metadata={"env": "OCR_METRICS_BIND"})
    # Recent results kept for POST /v1/feedback by request id, in the state directory, shared by the
    # workers (0 keeps none).
    feedback_store_size: int = field(default=2048, metadata={"env": "OCR_FEEDBACK_STORE_SIZE", "min": 0})
    # The web console at /ui/ (server/http/console): pages over the same API, with the caller's own
    # credential; off, /ui/ is not served at all (404).
    console: bool = field(default=True, metadata={"env": "OCR_CONSOLE"})

    timeout_s: int = field(default=120, metadata={"env": "OCR_TIMEOUT", "min": 1})
    # After SIGTERM, how long workers may finish the requests they hold before they are killed. A
    # Kubernetes pod's terminationGracePeriodSeconds must cover it (the Helm chart derives one from the
    # other), or the kubelet's SIGKILL cuts those requests first.
    graceful_timeout_s: int = field(default=30, metadata={"env": "OCR_GRACEFUL_TIMEOUT", "min": 1})
    # How long a new worker waits for its first model before it accepts connections anyway (it would
    # answer 503 until loaded), and how long a worker told to stop on a restart keeps serving while a
    # new one still loads (server/process/worker.py).
    boot_wait_s: int = field(default=300, metadata={"env": "OCR_BOOT_WAIT_S", "min": 0})
    log_level: str = field(default="info", metadata={"env": "OCR_LOG_LEVEL"})

    # -- model lifecycle (see README, "Model lifecycle and hot reload") --
    # Bearer token of the admin API's mutating calls; empty means those calls are refused.
    admin_token: str = field(default="", repr=False, metadata={"env": "OCR_ADMIN_TOKEN"})
    # Shared state of the workers (pin, verdicts, who serves what, load lock); default <model_repo>/.state.
    state_dir: str = field(default="", metadata={"env": "OCR_STATE_DIR"})
    # JSON-lines audit log of every lifecycle event; default <state_dir>/audit.log.
    audit_log: str = field(default="", metadata={"env": "OCR_AUDIT_LOG"})
    # Full rescan period (the fallback for filesystems where inotify misses events: NFS, volume swaps).
    poll_interval_s: float = field(default=10.0, metadata={"env": "OCR_MODEL_POLL_S", "min": 0.1})
    # Quiet time after a filesystem event before rescanning, so that a copy is seen once, not per file.
    debounce_s: float = field(default=1.0, metadata={"env": "OCR_MODEL_DEBOUNCE_S", "min": 0.0})
    # A version whose files changed less than this long ago is "pending" (still being copied), not bad.
    settle_s: float = field(default=10.0, metadata={"env": "OCR_MODEL_SETTLE_S", "min": 0.0})
    # Quality gate defaults (a manifest's quality_gate may set its own): how much worse than the live
    # version a candidate's golden-set CER may be, and the CER above which no version ever serves.
    gate_tolerance: float = field(default=0.01, metadata={"env": "OCR_GATE_TOLERANCE", "min": 0.0})
    gate_max_cer: float = field(default=0.3, metadata={"env": "OCR_GATE_MAX_CER", "min": 0.0})
    # Only for golden sets with expected fields (NAME.fields.json): the share of them a candidate must
    # match exactly, and how far below the live version's share it may fall.
    gate_min_field_match: float = field(default=0.8, metadata={"env": "OCR_GATE_MIN_FIELD_MATCH", "min": 0.0})
    gate_field_tolerance: float = field(default=0.05, metadata={"env": "OCR_GATE_FIELD_TOLERANCE", "min": 0.0})
    # Page shapes (HEIGHTxWIDTH, comma-separated) run through a new version before it serves.
    warmup_shapes: str = field(default="960x480,480x800,320x320", metadata={"env": "OCR_WARMUP_SHAPES"})

    # -- canary releases and their judge (see README, "Canary releases") --
    # `canary`: every new version enters as a canary of OCR_ROLLOUT_PERCENT beside the one serving (a
    # manifest's own `rollout` asks for one either way); empty: a new version takes all traffic at once.
    rollout: str = field(default="", metadata={"env": "OCR_ROLLOUT"})
    rollout_percent: float = field(default=10.0, metadata={"env": "OCR_ROLLOUT_PERCENT", "min": 0.0})
    # The relative change of a metric (latency, error and empty rates, confidence, lines, feedback
    # accuracy) that counts as a regression when it is also statistically significant at OCR_ROLLOUT_ALPHA.
    rollout_max_regression: float = field(default=0.05, metadata={"env": "OCR_ROLLOUT_MAX_REGRESSION", "min": 0.0})
    rollout_alpha: float = field(default=0.05, metadata={"env": "OCR_ROLLOUT_ALPHA", "min": 0.0})
    # A judging window closes after this many canary requests or this many seconds, whichever is first;
    # a regression must hold in OCR_ROLLOUT_WINDOWS consecutive windows, and as many passing windows pass it.
    rollout_window_requests: int = field(default=100, metadata={"env": "OCR_ROLLOUT_WINDOW_REQUESTS", "min": 10})
    rollout_window_s: float = field(default=300.0, metadata={"env": "OCR_ROLLOUT_WINDOW_S", "min": 1.0})
    rollout_windows: int = field(default=2, metadata={"env": "OCR_ROLLOUT_WINDOWS", "min": 1})
    # The hard guardrail: a canary whose server-error rate reaches this is rolled back at once.
    rollout_max_error_rate: float = field(default=0.05, metadata={"env": "OCR_ROLLOUT_MAX_ERROR_RATE", "min": 0.0})
    # Promote a canary that passed by itself (off: it waits for a releaser's promote).
    rollout_auto_promote: bool = field(default=False, metadata={"env": "OCR_ROLLOUT_AUTO_PROMOTE"})
    # Where the judge POSTs its decisions (JSON); empty: nowhere.
    rollout_webhook: str = field(default="", metadata={"env": "OCR_ROLLOUT_WEBHOOK"})
    # After a promotion, how long every client reads with the new version while the previous one stays
    # loaded: the judge keeps comparing against its recorded baseline, and a rollback needs no load;
    # 0: a promotion pins the new version at once.
    rollout_bake_s: float = field(default=600.0, metadata={"env": "OCR_ROLLOUT_BAKE_S", "min": 0.0})
    # Refuse a promotion without a passing A/B report for that exact pair of versions' digests.
    promote_requires_report: bool = field(default=False, metadata={"env": "OCR_PROMOTE_REQUIRES_REPORT"})
    # How often each worker's judge looks at the samples; 0: no judge (canaries end by hand only).
    rollout_judge_s: float = field(default=5.0, metadata={"env": "OCR_ROLLOUT_JUDGE_S", "min": 0.0})

    # -- governance (see README, "Governance") --
    # PEM public keys allowed to sign versions (a file, or a directory of *.pem / *.pub), each naming the
    # pipelines it may sign for; empty: no key is trusted.
    trusted_keys: str = field(default="", metadata={"env": "OCR_TRUSTED_KEYS"})
    # YAML list of revoked signing key ids and version digests; empty: nothing is revoked.
    revocation_list: str = field(default="", metadata={"env": "OCR_REVOCATION_LIST"})
    # Refuse every version whose signature does not verify, unsigned ones included (fail closed). Off by
    # default: the default model is installed unsigned. Tampered or revoked signatures are refused either way.
    require_signature: bool = field(default=False, metadata={"env": "OCR_REQUIRE_SIGNATURE"})
    # How often each worker hashes the version it serves again and re-checks its signature against the
    # current trust store and revocation list, catching files changed on disk after approval; 0: never.
    signature_recheck_s: float = field(default=300.0, metadata={"env": "OCR_SIGNATURE_RECHECK_S", "min": 0.0})
    # YAML access policy: API keys (sha256), JWT/OIDC settings, anonymous roles, four-eyes; empty: only
    # OCR_ADMIN_TOKEN (one admin identity) and an open listing, as before roles existed.
    auth_config: str = field(default="", metadata={"env": "OCR_AUTH_CONFIG"})
    # Require the `client` role for the OCR API too (by default it is open to everyone).
    inference_auth: bool = field(default=False, metadata={"env": "OCR_INFERENCE_AUTH"})
    # Forward every audit record to a SIEM: udp://HOST:PORT, tcp://HOST:PORT or HOST:PORT (UDP); empty: off.
    audit_syslog: str = field(default="", metadata={"env": "OCR_AUDIT_SYSLOG"})

    # -- where versions come from (see README, "Models from an MLflow registry") --
    # `directory`: versions are published into the repository by hand, CI or a shared volume;
    # `mlflow`: one process per server, started by the Gunicorn master, syncs them from a registry.
    model_source: str = field(default="directory", metadata={"env": "OCR_MODEL_SOURCE"})
    # The MLflow tracking server (its registry) and the registered model whose versions are served.
    # Credentials come from MLflow's own variables (MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME, ...).
    mlflow_tracking_uri: str = field(default="", metadata={"env": "OCR_MLFLOW_TRACKING_URI"})
    mlflow_model: str = field(default="", metadata={"env": "OCR_MLFLOW_MODEL"})
    # How often the sync asks the registry for versions and aliases (failures back off from here).
    mlflow_poll_s: float = field(default=15.0, metadata={"env": "OCR_MLFLOW_POLL_S", "min": 0.1})
    # Per HTTP request to the registry; the sync does its own retries, so a dead registry costs this, once.
    mlflow_timeout_s: int = field(default=30, metadata={"env": "OCR_MLFLOW_TIMEOUT_S", "min": 1})
    # The MLflow experiment that holds the runs `ocr-server models push` logs versions' files in.
    mlflow_experiment: str = field(default="ocr-server", metadata={"env": "OCR_MLFLOW_EXPERIMENT"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from `environ` (default `os.environ`), validating every value."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            if f.type == "int":
                values[f.name] = _as_int(name, raw, f.metadata.get("min", 0))
            elif f.type == "float":
                values[f.name] = _as_float(name, raw, f.metadata.get("min", 0.0))
            elif f.type == "bool":
                values[f.name] = _as_bool(name, raw)
            elif f.type == "Path":
                values[f.name] = Path(raw)
            elif f.name == "gpu_ids":
                try:
                    values[f.name] = tuple(int(part) for part in raw.split(",") if part.strip())
                except ValueError as exc:
                    raise ConfigError(f"{name} must be comma-separated integers, got {raw!r}") from exc
            else:
                values[f.name] = raw.strip()
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.device not in {"cpu", "gpu"}:
            raise ConfigError(f"OCR_DEVICE must be 'cpu' or 'gpu', got {self.device!r}")
        if self.device == "gpu" and not self.gpu_ids:
            raise ConfigError("OCR_GPU_IDS must name at least one GPU when OCR_DEVICE=gpu")
        host, sep, port = self.bind.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"OCR_BIND must be HOST:PORT, got {self.bind!r}")
        if self.metrics_bind:
            _, sep, port = self.metrics_bind.rpartition(":")
            if not sep or not port.isdigit():
                raise ConfigError(f"OCR_METRICS_BIND must be HOST:PORT or empty, got {self.metrics_bind!r}")
        for name, value in (("OCR_GATE_MIN_FIELD_MATCH", self.gate_min_field_match),
                            ("OCR_GATE_FIELD_TOLERANCE", self.gate_field_tolerance)):
            if value > 1.0:
                raise ConfigError(f"{name} is a share of the expected fields, within 0..1; got {value}")
        if not 36 <= self.pdf_dpi <= 600:
            raise ConfigError(f"OCR_PDF_DPI must be within 36..600, got {self.pdf_dpi}")
        if self.pdf_text not in {"auto", "ocr", "layer"}:
            raise ConfigError(f"OCR_PDF_TEXT must be 'auto', 'ocr' or 'layer', got {self.pdf_text!r}")
        if self.default_fields not in {"", "receipt", "invoice", "cheque"}:
            raise ConfigError(f"OCR_FIELDS must be empty, 'receipt', 'invoice' or 'cheque', got {self.default_fields!r}")
        if not self.pipeline_name.isidentifier():
            raise ConfigError(f"OCR_PIPELINE must be a plain name, got {self.pipeline_name!r}")
        if self.model_source not in {"directory", "mlflow"}:
            raise ConfigError(f"OCR_MODEL_SOURCE must be 'directory' or 'mlflow', got {self.model_source!r}")
        if self.model_source == "mlflow":
            missing = [name for name, value in (("OCR_MLFLOW_TRACKING_URI", self.mlflow_tracking_uri),
                                                ("OCR_MLFLOW_MODEL", self.mlflow_model)) if not value]
            if missing:
                raise ConfigError(f"OCR_MODEL_SOURCE=mlflow needs {' and '.join(missing)}")
        if any(c in self.mlflow_model for c in "'\"\\"):
            raise ConfigError(f"OCR_MLFLOW_MODEL must not contain quotes or backslashes, got {self.mlflow_model!r}")
        if self.rollout not in {"", "canary"}:
            raise ConfigError(f"OCR_ROLLOUT must be empty or 'canary', got {self.rollout!r}")
        if not 0 < self.rollout_percent <= 100:
            raise ConfigError(f"OCR_ROLLOUT_PERCENT must be within 0..100 (above 0), got {self.rollout_percent}")
        if not 0 < self.rollout_alpha < 1:
            raise ConfigError(f"OCR_ROLLOUT_ALPHA is a significance level, within 0..1; got {self.rollout_alpha}")
        if self.rollout_webhook and urlsplit(self.rollout_webhook).scheme not in {"http", "https"}:
            raise ConfigError(f"OCR_ROLLOUT_WEBHOOK must be an http(s) URL, got {self.rollout_webhook!r}")
        self.warmup_shape_list  # raises ConfigError when malformed
        self.audit_syslog_target  # likewise

    @property
    def audit_syslog_target(self) -> tuple[str, str, int] | None:
        """`audit_syslog` parsed into (protocol, host, port); None when forwarding is off."""
        if not self.audit_syslog:
            return None
        try:
            return parse_syslog_target(self.audit_syslog)
        except ValueError as exc:
            raise ConfigError(f"OCR_AUDIT_SYSLOG: {exc}") from exc

    @property
    def warmup_shape_list(self) -> tuple[tuple[int, int], ...]:
        """`warmup_shapes` parsed into (height, width) pairs."""
        shapes = []
        for part in self.warmup_shapes.split(","):
            height, sep, width = part.strip().lower().partition("x")
            if not sep or not height.isdigit() or not width.isdigit() or not (16 <= int(height) <= 4000
                                                                          and 16 <= int(width) <= 4000):
                raise ConfigError(
                    f"OCR_WARMUP_SHAPES must be HEIGHTxWIDTH pairs (16..4000), comma-separated, got {self.warmup_shapes!r}"
                )
            shapes.append((int(height), int(width)))
        return tuple(shapes)

    @property
    def effective_install_default(self) -> bool:
        """Install the default version into an empty repository? Never with a registry as the source:
        a pod must serve only versions the registry holds."""
        return self.install_default and self.model_source != "mlflow"

    @property
    def effective_state_dir(self) -> Path:
        return Path(self.state_dir) if self.state_dir else self.model_repo / ".state"

    @property
    def effective_audit_log(self) -> Path:
        return Path(self.audit_log) if self.audit_log else self.effective_state_dir / "audit.log"

    @property
    def effective_cpu_threads(self) -> int:
        """Math-library threads per predictor: the cores split between workers, at least one."""
        if self.cpu_threads:
            return self.cpu_threads
        return max(1, _cpu_count() // self.workers)

    @property
    def effective_inference_concurrency(self) -> int:
        """Predictors per stage per worker. On CPU, more than cores/threads only adds contention."""
        if self.inference_concurrency:
            return self.inference_concurrency
        if self.device == "gpu":
            return min(self.threads, 2)
        share = max(1, _cpu_count() // self.workers)
        return max(1, min(self.threads, share // self.effective_cpu_threads))

    def gpu_id_for(self, worker_slot: int) -> int:
        """The GPU a worker uses: workers are spread round-robin over `gpu_ids` by their slot."""
        return self.gpu_ids[worker_slot % len(self.gpu_ids)]

    def as_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings (the CLI hands them to Gunicorn)."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                out[f.metadata["env"]] = "1" if value else "0"
            elif isinstance(value, tuple):
                out[f.metadata["env"]] = ",".join(str(v) for v in value)
            else:
                out[f.metadata["env"]] = str(value)
        return out
