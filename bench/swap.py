"""Swap under load: what a hot swap costs the clients, and how much memory it takes.

Starts the real server (`ocr-server serve`, Gunicorn) on a temporary copy of the default version,
keeps `--clients` threads posting real receipts from a SROIE-layout dataset (or, with `--synthetic`,
rendered pages of one size), and after a warm-up and a steady phase publishes `--swaps` new versions
one after the other (identical weights under new version numbers, so every response stays
comparable), waiting each time until every worker serves the new one. It reports:

- requests served and failed (any non-200, or a connection error);
- p50/p99 latency of requests that ran entirely in steady state, against those that overlapped a swap;
- peak RSS of the whole server (master, workers and any probe process) in steady state and during
  swaps, sampled from /proc every 0.2 s, and each worker's own peak.

Receipts of different sizes make a worker's working memory swing by more than a model's size, which
hides what a swap costs; `--synthetic` keeps every request the same so that the RSS columns show the
swap itself. Run from the repository root after `make models`:

    .venv/bin/python bench/swap.py --dataset ../shared/data/sroie-dev
    .venv/bin/python bench/swap.py --synthetic

Writes the figures to bench/results/swap.json (and prints them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.repository.layout import ModelRepository  # noqa: E402
from server.repository.publish import publish  # noqa: E402
from tests.support.lifecycle import Admin, wait_converged  # noqa: E402
from tests.support.load import LoadGenerator, Outcome, percentile  # noqa: E402
from tests.support.server import RunningServer, gunicorn_server, rss_bytes  # noqa: E402

DEFAULT_VERSION_DIR = ROOT / "models" / "ppocr" / "1.0.0-ppocrv4"
TOKEN = "bench-swap"


class RssSampler(threading.Thread):
    """Total RSS of the server's process tree, and each worker's, every `interval` seconds."""

    def __init__(self, server: RunningServer, workers: list[int], interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.server, self.workers, self.interval = server, workers, interval
        self.samples: list[tuple[float, int, dict[int, int]]] = []  # (time, total KB, per worker KB)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            per = {pid: rss_bytes(pid) // 1024 for pid in self.server.process_tree()}
            self.samples.append((time.monotonic(), sum(per.values()), {w: per.get(w, 0) for w in self.workers}))
            self.stop.wait(self.interval)


def synthetic_page() -> bytes:
    """A receipt-like page of printed lines (Pillow's built-in font), the same for every request."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    lines = ["GROCERY MART #0415", "2026-11-26 17:45", "MILK 2L            3.49", "BREAD WHOLEMEAL    2.95",
             "APPLES 1KG         4.20", "SUBTOTAL          10.64", "TAX                0.85", "TOTAL             11.49"]
    font = ImageFont.load_default(size=28)
    page = Image.new("RGB", (640, 60 + 44 * len(lines)), "white")
    draw = ImageDraw.Draw(page)
    for row, line in enumerate(lines):
        draw.text((30, 30 + row * 44), line, fill="black", font=font)
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "data" / "sroie-dev",
                        help="SROIE-layout dataset (img/*.jpg); default ../shared/data/sroie-dev")
    parser.add_argument("--images", type=int, default=10, help="receipts to cycle through")
    parser.add_argument("--synthetic", action="store_true", help="post one rendered page instead of receipts")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--warmup-s", type=float, default=30.0, help="load before measuring (caches fill)")
    parser.add_argument("--steady-s", type=float, default=60.0, help="steady phase before the first swap")
    parser.add_argument("--swaps", type=int, default=3)
    parser.add_argument("--gap-s", type=float, default=30.0, help="steady time after each swap")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "swap.json")
    args = parser.parse_args()

    if not (DEFAULT_VERSION_DIR / "manifest.json").exists():
        parser.error(f"{DEFAULT_VERSION_DIR} is missing: run `make models` first")
    if args.synthetic:
        blobs, content_type = [synthetic_page()], "image/png"
    else:
        images = sorted((args.dataset / "img").glob("*.jpg"))[: args.images]
        if not images:
            parser.error(f"no images in {args.dataset / 'img'} (give --dataset, or use --synthetic)")
        blobs, content_type = [path.read_bytes() for path in images], "image/jpeg"

    work = Path(tempfile.mkdtemp(prefix="bench-swap-"))
    repo = ModelRepository(work / "models")
    publish(DEFAULT_VERSION_DIR, repo, "1.0.0", created_by="bench/swap.py")
    env = {"OCR_ADMIN_TOKEN": TOKEN, "OCR_STATE_DIR": str(work / "state"), "OCR_MODEL_POLL_S": "2",
           "OCR_MODEL_DEBOUNCE_S": "0.5", "OCR_MODEL_SETTLE_S": "5"}
    swaps: list[tuple[float, float]] = []
    with gunicorn_server(repo.root, work, workers=args.workers, threads=args.threads, env=env,
                         ready_timeout=600) as server:
        admin = Admin(server.url, TOKEN)
        workers = server.worker_pids()
        sampler = RssSampler(server, workers)
        sampler.start()
        load = LoadGenerator(server.url, blobs, clients=args.clients, content_type=content_type).start()
        time.sleep(args.warmup_s)
        began = time.monotonic()
        time.sleep(args.steady_s)
        for i in range(args.swaps):
            version = f"1.{i + 1}.0"
            swap_start = time.monotonic()
            publish(DEFAULT_VERSION_DIR, repo, version, created_by="bench/swap.py")
            seconds = wait_converged(admin, workers, version, bound_s=900, drained=True)
            swaps.append((swap_start, time.monotonic()))
            print(f"swap to {version}: every worker serving it, old version freed, after {seconds:.1f}s", flush=True)
            time.sleep(args.gap_s)
        load.stop()
        sampler.stop.set()
        sampler.join()
        ended = time.monotonic()
    samples = load.outcomes

    def during_swap(start: float, end: float) -> bool:
        return any(start <= s_end and end >= s_start for s_start, s_end in swaps)

    measured = [s for s in samples if s.started >= began]
    steady = [s for s in measured if not during_swap(s.started, s.ended)]
    swapping = [s for s in measured if during_swap(s.started, s.ended)]
    rss_measured = [(t, total, per) for t, total, per in sampler.samples if t >= began]
    rss_steady = [total for t, total, _ in rss_measured if not during_swap(t, t)]
    rss_swap = [total for t, total, _ in rss_measured if during_swap(t, t)]

    def latency(group: list[Outcome]) -> dict:
        values = [s.seconds for s in group if not s.problem]
        return {"requests": len(group), "failures": sum(1 for s in group if s.problem),
                "p50_s": round(percentile(values, 0.5), 3), "p99_s": round(percentile(values, 0.99), 3),
                "mean_s": round(statistics.fmean(values), 3) if values else None}

    worker_peaks = {str(pid): {"steady_mb": round(max((p[pid] for t, _, p in rss_measured
                                                       if not during_swap(t, t)), default=0) / 1024),
                               "swap_mb": round(max((p[pid] for t, _, p in rss_measured
                                                     if during_swap(t, t)), default=0) / 1024)}
                    for pid in workers}
    report = {
        "command": " ".join(["bench/swap.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "config": {"workers": args.workers, "threads": args.threads, "clients": args.clients,
                   "load": "synthetic page" if args.synthetic else f"{len(blobs)} receipts", "swaps": args.swaps},
        "duration_s": round(ended - began, 1),
        "requests": len(samples),  # warm-up included: every request counts for failures
        "failures": sum(1 for s in samples if s.problem),
        "versions_served": sorted({s.version for s in samples if s.version}),
        "swap_seconds": [round(end - start, 1) for start, end in swaps],
        "latency_steady": latency(steady),
        "latency_during_swaps": latency(swapping),
        "rss_total_mb": {"steady_peak": round(max(rss_steady, default=0) / 1024),
                         "swap_peak": round(max(rss_swap, default=0) / 1024),
                         "steady_median": round(statistics.median(rss_steady) / 1024) if rss_steady else None},
        "rss_worker_peak_mb": worker_peaks,
        # one point a second: seconds since measuring began, total MB, each worker's MB, whether swapping
        "rss_timeline": [[round(t - began, 1), round(total / 1024), [round(per[w] / 1024) for w in workers],
                          during_swap(t, t)] for t, total, per in rss_measured[::5]],
        "swap_windows_s": [[round(start - began, 1), round(end - began, 1)] for start, end in swaps],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rss_timeline"}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if report["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
