"""What serialising a worker's oneDNN runs costs: one process, its request threads reading receipts,
with the predictors one at a time (`server.runtime.paddle._ONEDNN_LOCK`, as served) and running at once
(as before the lock, which crashed workers: see that module). Rounds alternate between the two
pipelines, loaded side by side, so that a busy machine affects both alike.

    PYTHONPATH=. .venv/bin/python -m bench.onednn_lock --limit 16 --workers 2 --threads 2 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

from bench.cli import add_common_args, data_dir
from bench.engines import OurPipeline
from bench.report import print_table
from bench.concurrent import read_all
from bench.scoring import load_dataset
from server.documents.decode import decode_image
from tests.support.load import percentile


def _round(engine: OurPipeline, images: list, threads: int) -> tuple[float, list[float]]:
    """Wall time and per-receipt latencies of `threads` threads reading every image once."""
    began = time.perf_counter()
    latencies = read_all(len(images), threads, lambda i: engine(images[i]))
    return time.perf_counter() - began, latencies


def main(argv: list[str] | None = None) -> int:
    from server.runtime import paddle

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, default_limit=16)
    parser.add_argument("--workers", type=int, default=2, help="workers the runtime options are derived for")
    parser.add_argument("--threads", type=int, default=2, help="request threads (a worker's OCR_THREADS)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    images = [decode_image(r.image_path.read_bytes(), 10**9) for r in load_dataset(data_dir(args), args.limit)]
    engines = {}
    served_lock = paddle._ONEDNN_LOCK
    for name, exclusive in (("one at a time", served_lock), ("at once", contextlib.nullcontext())):
        paddle._ONEDNN_LOCK = exclusive  # the sessions take it when they are built
        engines[name] = OurPipeline(args.model_repo, args.version, workers=args.workers, threads=args.threads)
        _round(engines[name], images[:2], args.threads)  # untimed
    paddle._ONEDNN_LOCK = served_lock
    walls: dict[str, list[float]] = {name: [] for name in engines}
    latencies: dict[str, list[float]] = {name: [] for name in engines}
    for index in range(args.rounds):
        for name, engine in engines.items():
            wall, lat = _round(engine, images, args.threads)
            walls[name].append(wall)
            latencies[name] += lat
            print(f"  round {index + 1} {name}: {len(images) / wall:.3f} receipts/s", flush=True)
    rows = [[name, f"{len(images) * args.rounds / sum(walls[name]):.3f}", f"{percentile(latencies[name], 0.5):.2f}",
             f"{percentile(latencies[name], 0.99):.2f}", f"{statistics.pstdev(walls[name]):.1f}"] for name in engines]
    print_table(["oneDNN runs", "receipts/s", "p50 s", "p99 s", "round wall sd s"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
