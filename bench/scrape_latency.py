"""How long a Prometheus scrape takes while OCR clients saturate the server: API port versus master port.

Start a server with the master exporter on, for instance

    OCR_METRICS_BIND=127.0.0.1:9464 OCR_WORKERS=2 OCR_THREADS=2 .venv/bin/ocr-server serve --bind 127.0.0.1:8000

then run

    .venv/bin/python bench/scrape_latency.py --clients 8 --seconds 60 [--data ../shared/data/sroie-dev]

Clients post receipts back to back; meanwhile the API's /metrics and the master's port are scraped
alternately, once a second each. Both are measured in the same run, under the same load. Prints a table
and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.load import LoadGenerator  # noqa: E402


def _timed_get(url: str, timeout: float) -> float:
    start = time.perf_counter()
    try:
        requests.get(url, timeout=timeout).raise_for_status()
    except requests.RequestException:
        return float("inf")  # timed out or failed: what Prometheus would record as a failed scrape
    return time.perf_counter() - start


def _summary(samples: list[float]) -> dict[str, float]:
    finite = sorted(s for s in samples if s != float("inf"))
    return {
        "scrapes": len(samples),
        "failed": len(samples) - len(finite),
        "p50_s": statistics.median(finite) if finite else float("nan"),
        "max_s": finite[-1] if finite else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--master-metrics", default="http://127.0.0.1:9464/metrics")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/data/sroie-dev")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--scrape-timeout", type=float, default=10, help="Prometheus' default scrape_timeout")
    parser.add_argument("--out", type=Path, default=Path("bench/results/scrape_latency.json"))
    args = parser.parse_args()

    images = [path.read_bytes() for path in sorted((args.data / "img").glob("*.jpg"))[:10]]
    if not images:
        raise SystemExit(f"no receipts in {args.data / 'img'}")
    load = LoadGenerator(args.url, images, clients=args.clients, content_type="image/jpeg", timeout=600).start()
    time.sleep(5)  # let the queues fill
    api, master = [], []
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        api.append(_timed_get(f"{args.url}/metrics", args.scrape_timeout))
        master.append(_timed_get(args.master_metrics, args.scrape_timeout))
        time.sleep(1)
    load.stop()
    counts = dict(Counter(str(o.status) for o in load.outcomes))

    result = {"clients": args.clients, "seconds": args.seconds, "ocr_responses": counts,
              "api_port": _summary(api), "master_port": _summary(master)}
    print(f"{'endpoint':<12} {'scrapes':>8} {'failed':>7} {'p50 s':>8} {'max s':>8}")
    for name in ("api_port", "master_port"):
        row = result[name]
        print(f"{name:<12} {row['scrapes']:>8} {row['failed']:>7} {row['p50_s']:>8.3f} {row['max_s']:>8.3f}")
    print(f"OCR responses during the run: {counts}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
