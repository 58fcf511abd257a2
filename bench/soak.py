"""Soak: the real server at moderate load for a long time, with a new version published every few minutes.

Starts `ocr-server serve` (Gunicorn) on a temporary repository holding the default version, keeps
`--clients` threads posting a rendered page (its text checked on every answer), publishes the same
weights under the next version number every `--swap-every-s` (so every worker swaps, and answers stay
comparable), and every `--interval-s` records the requests answered and failed in that interval,
their p99 latency, the versions that answered, and the resident memory of the whole server (master,
workers, probes). A leak shows as RSS that climbs from swap to swap; a swap that costs requests shows
as failures at the swap lines. Not a test: `make soak` runs an hour.

    .venv/bin/python -m bench.soak --minutes 60
    .venv/bin/python -m bench.soak --minutes 10 --swap-every-s 120     # a short run

Writes bench/results/soak.json and bench/results/soak.png (matplotlib, from bench/requirements.txt).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.repository.layout import ModelRepository  # noqa: E402
from server.repository.publish import publish  # noqa: E402
from tests.support.lifecycle import expect_versions, expected_text, load_image  # noqa: E402
from tests.support.load import LoadGenerator, percentile  # noqa: E402
from tests.support.server import PADDLE_VERSION, RunningServer, gunicorn_server, rss_bytes  # noqa: E402

PADDLE_VERSION_DIR = ROOT / "models" / "ppocr" / PADDLE_VERSION


def server_rss_mb(server: RunningServer) -> float:
    return sum(rss_bytes(pid) for pid in server.process_tree()) / 2**20


def plot(series: list[dict], swaps: list[float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [row["t_s"] / 60 for row in series]
    figure, (answered, p99, rss) = plt.subplots(3, 1, sharex=True, figsize=(9, 8))
    answered.plot(minutes, [row["answered"] for row in series], label="answered")
    answered.plot(minutes, [row["failed"] for row in series], label="failed", color="red")
    answered.set_ylabel("requests / interval")
    answered.legend(loc="lower left")
    p99.plot(minutes, [row["p99_s"] for row in series], color="purple")
    p99.set_ylabel("p99 latency (s)")
    rss.plot(minutes, [row["rss_mb"] for row in series], color="green")
    rss.set_ylabel("server RSS (MB)")
    rss.set_xlabel("minutes")
    for axis in (answered, p99, rss):
        for swap in swaps:
            axis.axvline(swap / 60, color="grey", linestyle=":", linewidth=1)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--swap-every-s", type=float, default=180.0)
    parser.add_argument("--interval-s", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args()
    if not (PADDLE_VERSION_DIR / "manifest.json").exists():
        parser.error(f"{PADDLE_VERSION_DIR} is missing: run `make models` first")

    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    repo = ModelRepository(work / "models")
    publish(PADDLE_VERSION_DIR, repo, "1.0.0", created_by="bench/soak.py")
    expected = {"1.0.0": expected_text(0)}
    env = {"OCR_STATE_DIR": str(work / "state"), "OCR_MODEL_POLL_S": "2", "OCR_MODEL_DEBOUNCE_S": "0.5"}
    series: list[dict] = []
    swaps: list[float] = []
    with gunicorn_server(repo.root, work, workers=args.workers, threads=args.threads, env=env,
                         ready_timeout=600) as server:
        load = LoadGenerator(server.url, [load_image()], check=expect_versions(expected), clients=args.clients)
        began = time.monotonic()
        load.start()
        next_swap = began + args.swap_every_s
        end = began + args.minutes * 60
        mark = began
        while mark < end:
            time.sleep(max(0.0, min(mark + args.interval_s, end) - time.monotonic()))
            now = time.monotonic()
            if now >= next_swap and now < end:
                version = f"1.0.{len(swaps) + 1}"
                expected[version] = expected_text(0)
                publish(PADDLE_VERSION_DIR, repo, version, created_by="bench/soak.py")
                swaps.append(now - began)
                next_swap += args.swap_every_s
            done = [o for o in load.outcomes if mark <= o.ended < now]
            latencies = [o.seconds for o in done if not o.problem]
            series.append({"t_s": round(now - began, 1), "answered": len(latencies),
                           "failed": len(done) - len(latencies),
                           "p99_s": round(percentile(latencies, 0.99), 2) if latencies else None,
                           "versions": dict(Counter(o.version for o in done)), "rss_mb": round(server_rss_mb(server))})
            print(json.dumps(series[-1]), flush=True)
            mark = now
        load.stop()
        log = server.log()

    outcomes = load.outcomes
    latencies = [o.seconds for o in outcomes if not o.problem]
    failures = [o.problem for o in outcomes if o.problem]
    rss = [row["rss_mb"] for row in series]
    report = {
        "command": " ".join(sys.argv), "minutes": args.minutes, "clients": args.clients, "workers": args.workers,
        "threads": args.threads, "swaps": len(swaps), "swap_every_s": args.swap_every_s,
        "requests": len(outcomes), "failed": len(failures), "failure_examples": failures[:5],
        "p50_s": round(percentile(latencies, 0.5), 2), "p99_s": round(percentile(latencies, 0.99), 2),
        "rss_mb": {"first": rss[0], "last": rss[-1], "max": max(rss), "min": min(rss)},
        "versions_served": dict(Counter(o.version for o in outcomes)),
        "server_errors_logged": log.count("[ERROR]"), "series": series, "swap_times_s": [round(s) for s in swaps],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(series, swaps, args.out.with_suffix(".png"),
         f"{args.minutes:g} min, {args.clients} clients, {args.workers}x{args.threads} workers, "
         f"{len(swaps)} swaps: {len(failures)} of {len(outcomes)} failed")
    print(json.dumps({k: v for k, v in report.items() if k != "series"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
