"""Memory benchmark: worker RSS over many requests of varied image sizes (does it flatten?).

Every request is a different image size: the top part of a receipt (20-60% of its height) scaled by
0.3-1.0, JPEG-encoded, seeded so runs are comparable. Each new size is a new detection input shape, the
case that makes an unbounded oneDNN cache grow without end (PaddleOCR #15631). RSS of all Gunicorn
workers together is read from /proc after every response; the goal is growth under 5% from request 200
(after warm-up) to request 1000.

    .venv/bin/python -m bench.memory --data DIR [--requests 1000] [--config 1x2]
"""

from __future__ import annotations

import argparse
import json
import random
import threading

import cv2

from bench.cli import add_common_args, data_dir
from bench.report import machine, print_table, results_path
from bench.scoring import load_dataset
from tests.support.load import LoadGenerator, Outcome
from tests.support.server import RunningServer, gunicorn_server, rss_bytes


def varied_bodies(images: list, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    bodies = []
    for k in range(count):
        image = images[k % len(images)]
        top = image[: max(32, int(image.shape[0] * rng.uniform(0.2, 0.6)))]
        scale = rng.uniform(0.3, 1.0)
        size = (max(16, int(top.shape[1] * scale)), max(16, int(top.shape[0] * scale)))
        ok, encoded = cv2.imencode(".jpg", cv2.resize(top, size, interpolation=cv2.INTER_AREA),
                                   [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        bodies.append(encoded.tobytes())
    return bodies


def drive(server: RunningServer, bodies: list[bytes], concurrency: int) -> tuple[list[tuple[int, int]], int]:
    """Send every body once; return (completed count, RSS of all workers) after each response, and the
    error count."""
    samples: list[tuple[int, int]] = []
    lock = threading.Lock()

    def sample(outcome: Outcome) -> None:
        rss = sum(rss_bytes(pid) for pid in server.worker_pids())  # re-read: a dead worker is replaced
        with lock:
            samples.append((len(samples) + 1, rss))
            if len(samples) % 100 == 0:
                print(f"  {len(samples)} requests: RSS {rss / 2**20:.0f} MiB", flush=True)

    load = LoadGenerator(server.url, bodies, clients=concurrency, content_type="image/jpeg", once=True,
                         on_outcome=sample)
    load.run()
    return samples, sum(1 for o in load.outcomes if o.problem)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--baseline", type=int, default=200, help="request whose RSS growth is measured from")
    parser.add_argument("--config", default="1x2", help="Gunicorn workers x threads")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)

    workers, threads = (int(x) for x in args.config.split("x"))
    images = [r.load_image() for r in load_dataset(data_dir(args), args.limit)]
    bodies = varied_bodies(images, args.requests, args.seed)
    with gunicorn_server(args.model_repo, workers=workers, threads=threads, ready_timeout=600) as server:
        start_rss = sum(rss_bytes(pid) for pid in server.worker_pids())
        samples, errors = drive(server, bodies, workers * threads)
    by_count = dict(samples)
    marks = sorted({m for m in (1, 50, 100, args.baseline, 400, 600, 800, args.requests) if m in by_count})
    base = by_count.get(args.baseline) or samples[0][1]
    rows = [[m, f"{by_count[m] / 2**20:.0f}", f"{100 * (by_count[m] - base) / base:+.2f}%"] for m in marks]
    print_table(["request", "RSS MiB (all workers)", f"vs request {args.baseline}"], rows)
    growth = (samples[-1][1] - base) / base
    print(f"RSS after start {start_rss / 2**20:.0f} MiB; growth {args.baseline}->{len(samples)}: "
          f"{100 * growth:+.2f}% (goal < 5%); errors {errors}")
    path = results_path("memory")
    path.write_text(json.dumps({
        "benchmark": "memory", "machine": machine(), "config": args.config, "requests": len(samples),
        "errors": errors, "start_rss": start_rss, "baseline_request": args.baseline, "growth": growth,
        "samples": samples,
    }, indent=2), encoding="utf-8")
    print(f"wrote {path}")
    return 0 if growth < 0.05 and errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
