"""HTTP benchmark: throughput and latency of the real server under load, against in-process throughput.

For each Gunicorn configuration (workers x threads) a real server is started; clients then POST the
receipts (raw JPEG bodies, keep-alive connections) at each concurrency level. The in-process comparator
runs the same work without HTTP on the same cores: as many processes as workers, each with the runtime
options a worker derives and as many threads as the server has, every thread decoding the same bytes with
`server.documents.decode` and running the pipeline. The ratio HTTP / in-process is what the HTTP layer costs.

    .venv/bin/python -m bench.server --data DIR [--configs 1x2,2x1,2x2] [--concurrency 1,2,4,8]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path

from bench.cli import add_common_args, data_dir
from bench.report import machine, print_table, results_path
from bench.scoring import load_dataset
from tests.support.load import LoadGenerator, percentile
from tests.support.server import gunicorn_server


def _inprocess_worker(model_repo: Path, version: str | None, workers: int, threads: int, slot: int,
                      bodies: list[bytes], barrier: mp.Barrier, out: mp.Queue) -> None:
    from bench.concurrent import read_all
    from bench.engines import OurPipeline
    from server.documents.decode import decode_image

    engine = OurPipeline(model_repo, version, workers=workers, threads=threads, slot=slot)
    barrier.wait()
    start = time.perf_counter()
    read_all(len(bodies), threads, lambda i: engine.pipeline.run(decode_image(bodies[i], 10**9)))
    out.put((start, time.perf_counter()))
    engine.close()


def inprocess_throughput(args: argparse.Namespace, workers: int, threads: int, bodies: list[bytes]) -> float:
    """Receipts per second of `workers` processes x `threads` threads reading `bodies`, no HTTP."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=_inprocess_worker, args=(args.model_repo, args.version, workers, threads, slot,
                                                    bodies[slot::workers], barrier, out))
        for slot in range(workers)
    ]
    for proc in procs:
        proc.start()
    spans = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    return len(bodies) / (max(end for _, end in spans) - min(start for start, _ in spans))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--configs", default="1x2,2x1,2x2", help="Gunicorn workers x threads to compare")
    parser.add_argument("--concurrency", default="1,2,4,8", help="client concurrency levels")
    parser.add_argument("--requests", type=int, default=None,
                        help="requests per level (default: one per receipt)")
    parser.add_argument("--warmup", type=int, default=4, help="untimed requests before the first level")
    args = parser.parse_args(argv)

    receipts = load_dataset(data_dir(args), args.limit)
    bodies = [r.image_path.read_bytes() for r in receipts]
    count = args.requests or len(bodies)
    work = [bodies[i % len(bodies)] for i in range(count)]
    levels = [int(c) for c in args.concurrency.split(",")]
    rows, results = [], []
    for config in args.configs.split(","):
        workers, threads = (int(x) for x in config.split("x"))
        inproc = inprocess_throughput(args, workers, threads, work)
        with gunicorn_server(args.model_repo, workers=workers, threads=threads, ready_timeout=600) as server:
            LoadGenerator(server.url, bodies[: args.warmup], clients=max(1, workers * threads),
                          content_type="image/jpeg", once=True).run()
            for concurrency in levels:
                load = LoadGenerator(server.url, work, clients=concurrency, content_type="image/jpeg", once=True)
                wall_s = load.run()
                lat = [o.seconds for o in load.outcomes if not o.problem]
                errors = [o.problem for o in load.outcomes if o.problem]
                throughput = len(lat) / wall_s
                entry = {
                    "config": config, "concurrency": concurrency, "requests": count,
                    "throughput_per_s": throughput, "p50_s": percentile(lat, 0.5),
                    "p90_s": percentile(lat, 0.9), "p99_s": percentile(lat, 0.99),
                    "mean_s": statistics.fmean(lat) if lat else float("nan"), "errors": len(errors),
                    "error_samples": errors[:5], "inprocess_throughput_per_s": inproc,
                    "http_vs_inprocess": throughput / inproc,
                }
                results.append(entry)
                rows.append([config, concurrency, f"{throughput:.3f}", f"{entry['p50_s']:.2f}",
                             f"{entry['p90_s']:.2f}", f"{entry['p99_s']:.2f}", len(errors),
                             f"{inproc:.3f}", f"{entry['http_vs_inprocess']:.2f}"])
                print(f"  {config} c={concurrency}: {throughput:.3f} req/s, p50 {entry['p50_s']:.2f}s, "
                      f"errors {len(errors)}", flush=True)
    print_table(["workers x threads", "clients", "req/s", "p50 s", "p90 s", "p99 s", "errors",
                 "in-process req/s", "HTTP / in-process"], rows)
    path = results_path("server")
    path.write_text(json.dumps({"benchmark": "server", "machine": machine(), "data": str(data_dir(args)),
                                "results": results}, indent=2), encoding="utf-8")
    print(f"wrote {path}")
    return 0 if all(r["errors"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
