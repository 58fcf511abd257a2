"""Cross-request recognition batching (OCR_REC_BATCH_WAIT_MS) on a real server: off against on, side by side.

One server per setting, all started before the first trial and each holding a copy of the same
version (one worker, `--threads` threads); the trials then interleave the settings at each client count,
in alternating order round after round, so a neighbour's load falls on every setting alike. Each trial
posts `--requests` receipts (raw JPEG, keep-alive clients) and records throughput, p50 and p99 latency,
and how many requests a recognition round held on average (`ocr_rec_round_requests`).

    PYTHONPATH=. .venv/bin/python -m bench.rec_batching --model-repo /tmp/speed-models \
        --version 3.1.0-ppocrv6_small --waits 0,2,50 --clients 1,4,8 --requests 16 --rounds 2

`--in-process K,...` measures instead what a round can save at best, without HTTP or queueing: the line
crops of the receipts (detected, turned as the classifier says) recognised receipt by receipt against in
rounds of K receipts (what a full round of K requests runs), alternating which goes first, in process CPU
seconds with one math thread; and whether every line reads the same both ways.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from bench.cli import ROOT, add_common_args, data_dir
from bench.report import machine, print_table, results_path
from bench.scoring import load_dataset
from tests.support.load import LoadGenerator, percentile
from tests.support.metrics import scrape
from tests.support.server import RunningServer, copy_version, gunicorn_server


def _rounds(server: RunningServer) -> tuple[float, float]:
    """(rounds, requests in them) so far, from the server's own metrics."""
    metrics = scrape(f"{server.url}/metrics")
    return metrics.total("ocr_rec_round_requests_count"), metrics.total("ocr_rec_round_requests_sum")


def trial(server: RunningServer, bodies: list[bytes], clients: int) -> dict[str, float]:
    rounds_before, held_before = _rounds(server)
    load = LoadGenerator(server.url, bodies, clients=clients, content_type="image/jpeg", once=True)
    wall_s = load.run()
    rounds_after, held_after = _rounds(server)
    latencies = [o.seconds for o in load.outcomes if not o.problem]
    rounds = rounds_after - rounds_before
    return {"throughput_per_s": len(latencies) / wall_s, "p50_s": percentile(latencies, 0.5),
            "p99_s": percentile(latencies, 0.99), "errors": len(load.outcomes) - len(latencies),
            "requests_per_round": (held_after - held_before) / rounds if rounds else 0.0}


def in_process(args: argparse.Namespace, bodies: list[bytes], sizes: list[int]) -> int:
    import cv2

    from server.documents.decode import decode_image
    from server.lifecycle.pipeline_loader import load_version
    from server.pipeline.imageops import crop_line
    from server.repository.layout import ModelRepository
    from server.runtime import RuntimeOptions

    model = load_version(ModelRepository(args.model_repo), args.version, RuntimeOptions(cpu_threads=1, concurrency=1))
    pipeline, settings = model.pipeline, model.pipeline.settings
    receipts = []
    for body in bodies:
        image = decode_image(body, 10**9)
        crops = [crop_line(image, box) for box in pipeline.detector.detect(image, settings.det)]
        if crops and pipeline.classifier is not None:
            angles = pipeline.classifier.orient(crops, settings.cls).angles
            crops = [cv2.rotate(c, cv2.ROTATE_180) if a == 180 else c for c, a in zip(crops, angles)]
        receipts.append(crops)
    rec_settings = settings.rec
    if args.batch_max:
        rec_settings = replace(rec_settings, batch_size=args.batch_max,
                               max_batch_width=rec_settings.max_batch_width * args.batch_max // rec_settings.batch_size)
    rows = []
    for size in sizes:
        alone_s = rounds_s = 0.0
        same = lines = 0
        for n, first in enumerate(range(0, len(receipts), size)):
            group = receipts[first:first + size]
            for order in ((0, 1) if n % 2 == 0 else (1, 0)):
                start = time.process_time()
                if order == 0:
                    alone = [r for crops in group for r in pipeline.recognizer.recognize(crops, settings.rec)]
                    alone_s += time.process_time() - start
                else:
                    merged = pipeline.recognizer.recognize([c for crops in group for c in crops], rec_settings)
                    rounds_s += time.process_time() - start
            same += sum(a[0] == b[0] for a, b in zip(alone, merged))
            lines += len(alone)
        rows.append([size, args.batch_max or rec_settings.batch_size, f"{alone_s:.1f}", f"{rounds_s:.1f}",
                     f"{rounds_s / alone_s:.3f}", f"{same}/{lines}"])
        print(f"  rounds of {size}: {alone_s:.1f} s alone, {rounds_s:.1f} s in rounds", flush=True)
    model.close()
    print_table(["receipts / round", "lines / run", "rec CPU s, each alone", "rec CPU s, in rounds",
                 "rounds / alone", "lines read the same"], rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--waits", default="0,2,50", help="OCR_REC_BATCH_WAIT_MS values (0: off)")
    parser.add_argument("--batch-max", type=int, default=0, help="OCR_REC_BATCH_MAX of the servers with batching on")
    parser.add_argument("--clients", default="1,4,8", help="client concurrency levels")
    parser.add_argument("--threads", type=int, default=8, help="threads of the one worker")
    parser.add_argument("--requests", type=int, default=16, help="requests per trial")
    parser.add_argument("--rounds", type=int, default=2, help="trials per setting and level (order alternates)")
    parser.add_argument("--in-process", default="", help="receipts per round, e.g. 4,8: recognition CPU only")
    parser.add_argument("--memory-ceiling-mb", type=int, default=3072, help="OCR_MEMORY_CEILING_MB of each server")
    args = parser.parse_args(argv)
    if args.version is None:
        parser.error("--version is required: every server serves a copy of that one version")

    receipts = load_dataset(data_dir(args), args.limit)
    bodies = [r.image_path.read_bytes() for r in receipts]
    if args.in_process:
        return in_process(args, bodies, [int(k) for k in args.in_process.split(",")])
    work = [bodies[i % len(bodies)] for i in range(args.requests)]
    waits = [float(w) for w in args.waits.split(",")]
    levels = [int(c) for c in args.clients.split(",")]
    source = args.model_repo / "ppocr" / args.version
    golden = next(p for p in (args.model_repo / "golden", ROOT / "models" / "golden") if p.is_dir())
    results: list[dict[str, object]] = []
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-rec-batching-")))
        servers = {}
        for wait in waits:
            root = scratch / f"wait-{wait:g}" / "models"
            copy_version(source, root, args.version)
            shutil.copytree(golden, root / "golden")  # the quality gate's set, read once at start
            env = {"OCR_REC_BATCH_WAIT_MS": f"{wait:g}", "OCR_REC_BATCH_MAX": str(args.batch_max),
                   "OCR_MEMORY_CEILING_MB": str(args.memory_ceiling_mb), "OCR_ROLLOUT_BAKE_S": "0"}
            servers[wait] = stack.enter_context(gunicorn_server(root, scratch / f"logs-{wait:g}", workers=1,
                                                                threads=args.threads, env=env, ready_timeout=900))
        for server in servers.values():  # untimed: first shapes, first kernels
            LoadGenerator(server.url, bodies[:4], clients=2, content_type="image/jpeg", once=True).run()
        for clients in levels:
            for n in range(args.rounds):
                for wait in (waits if n % 2 == 0 else waits[::-1]):
                    entry = {"version": args.version, "wait_ms": wait, "clients": clients, "round": n,
                             **trial(servers[wait], work, clients)}
                    results.append(entry)
                    print(f"  wait {wait:g} ms, {clients} clients, round {n}: {entry['throughput_per_s']:.3f} req/s, "
                          f"p50 {entry['p50_s']:.2f} s, p99 {entry['p99_s']:.2f} s, "
                          f"{entry['requests_per_round']:.2f} requests/round, errors {entry['errors']}", flush=True)
    rows = []
    for clients in levels:
        for wait in waits:
            mine = [r for r in results if r["clients"] == clients and r["wait_ms"] == wait]
            mean = {key: sum(float(r[key]) for r in mine) / len(mine)  # type: ignore[arg-type]
                    for key in ("throughput_per_s", "p50_s", "p99_s", "requests_per_round")}
            rows.append([clients, "off" if wait == 0 else f"{wait:g} ms", f"{mean['throughput_per_s']:.3f}",
                         f"{mean['p50_s']:.2f}", f"{mean['p99_s']:.2f}",
                         f"{mean['requests_per_round']:.2f}" if wait else "-", sum(int(r["errors"]) for r in mine)])
    print_table(["clients", "batching", "req/s", "p50 s", "p99 s", "requests / round", "errors"], rows)
    path = results_path("rec_batching")
    path.write_text(json.dumps({"benchmark": "rec_batching", "machine": machine(), "data": str(data_dir(args)),
                                "args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                               indent=2), encoding="utf-8")
    print(f"wrote {path}")
    return 0 if all(r["errors"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
