"""In-process pipeline benchmark: per-receipt latency, throughput and accuracy, ours against the anchors.

All engines live in one process and take turns on each receipt (the order rotates per receipt), so a
noisy neighbour on a shared machine slows them alike and the ratios stay meaningful. Every engine first
reads `--warmup` receipts untimed. Throughput is single-stream (receipts / summed latency); each engine
uses every core in its own default way (ours: one worker's derived settings with all cores), unless
`--threads N` gives every engine N math threads. CPU seconds (process time) per receipt are reported too:
with `--threads 1` they are the least disturbed by other load on a shared machine.

    .venv/bin/python -m bench.pipeline --data DIR [--engines ours,rapidocr-onnx,rapidocr-paddle]

Engine names: `ours` (settings of the installed version), `ours:<preset>` with a preset of
bench/engines.py (`rapidocr`, `paddleocr`), either with `@<version>` to run another version of the
model repository than `--version` (e.g. `ours@1.1.0-ppocrv4_onnx`, PP-OCRv4 on ONNX Runtime), the
anchors `rapidocr-onnx` and `rapidocr-paddle`, and, only when named, `paddleocr3` /
`paddleocr3:nocls` (PaddleOCR 3.x in its own venv, bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.cli import add_common_args, data_dir
from bench.engines import Engine, OurPipeline, available_anchors, build_anchor
from bench.report import machine, print_table, results_path
from bench.scoring import Accuracy, ReceiptScore, load_dataset, score
from tests.support.load import percentile


def build_engine(spec: str, args: argparse.Namespace) -> Engine:
    if spec == "ours" or spec.startswith(("ours:", "ours@")):
        head, _, version = spec.partition("@")
        preset = head.partition(":")[2] or "default"
        return OurPipeline(args.model_repo, version or args.version, preset=preset,
                           cpu_threads=args.threads or args.cpu_threads, name=spec)
    return build_anchor(spec, args.threads, args.model_repo, args.version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--engines", default=None,
                        help="comma-separated engines (default: ours and every installed anchor)")
    parser.add_argument("--threads", type=int, default=None,
                        help="math-library threads for every engine (default: each engine's own choice). "
                             "On a busy machine 1 keeps spinning thread pools from distorting the ratios")
    parser.add_argument("--warmup", type=int, default=1, help="receipts each engine reads untimed first")
    args = parser.parse_args(argv)

    specs = args.engines.split(",") if args.engines else ["ours", *available_anchors()]
    receipts = load_dataset(data_dir(args), args.limit)
    engines = [build_engine(spec, args) for spec in specs]
    for engine in engines:
        for receipt in receipts[: args.warmup]:
            engine(receipt.load_image())

    latencies: dict[str, list[float]] = {e.name: [] for e in engines}
    cpu_times: dict[str, list[float]] = {e.name: [] for e in engines}
    scores: dict[str, list[ReceiptScore]] = {e.name: [] for e in engines}
    for k, receipt in enumerate(receipts):
        image = receipt.load_image()
        for engine in engines[k % len(engines):] + engines[: k % len(engines)]:
            start, cpu_start = time.perf_counter(), time.process_time()
            lines = engine(image)
            latencies[engine.name].append(time.perf_counter() - start)
            # An engine run in a subprocess (paddleocr3) reports that process's CPU time itself.
            cpu_times[engine.name].append(time.process_time() - cpu_start + getattr(engine, "last_child_cpu_s", 0.0))
            scores[engine.name].append(score(lines, receipt))
        print(f"  {receipt.id}: " + "  ".join(
            f"{e.name} {latencies[e.name][-1]:.2f}s cpu {cpu_times[e.name][-1]:.2f}s "
            f"edits {scores[e.name][-1].edits}/{scores[e.name][-1].ref_chars}" for e in engines), flush=True)

    ours_name = next((e.name for e in engines if e.name.startswith("ours")), None)
    ours_median = statistics.median(latencies[ours_name]) if ours_name else None
    ours_cpu = statistics.median(cpu_times[ours_name]) if ours_name else None
    summary_rows, results = [], []
    for engine in engines:
        lat = latencies[engine.name]
        acc = Accuracy.total(scores[engine.name])
        median = statistics.median(lat)
        cpu = statistics.median(cpu_times[engine.name])
        entry = {
            "engine": engine.name,
            "median_s": median,
            "p90_s": percentile(lat, 0.9),
            "mean_s": statistics.fmean(lat),
            "throughput_per_s": len(lat) / sum(lat),
            "cer": acc.cer,
            "line_recall": acc.line_recall,
            "key_hit_rate": acc.key_hit_rate,
            "median_vs_ours": median / ours_median if ours_median else None,
            "median_cpu_s": cpu,
            "cpu_vs_ours": cpu / ours_cpu if ours_cpu else None,
            "cpu_s": cpu_times[engine.name],
            "latencies_s": lat,
            "cer_per_receipt": [s.cer for s in scores[engine.name]],
        }
        results.append(entry)
        summary_rows.append([
            engine.name, f"{median:.3f}", f"{entry['p90_s']:.3f}", f"{entry['throughput_per_s']:.3f}",
            f"{100 * acc.cer:.2f}%", f"{100 * acc.line_recall:.1f}%", f"{100 * acc.key_hit_rate:.1f}%",
            f"{entry['median_vs_ours']:.2f}x" if ours_median else "-",
            f"{cpu:.3f}", f"{entry['cpu_vs_ours']:.2f}x" if ours_cpu else "-",
        ])
    print_table(["engine", "median s", "p90 s", "receipts/s", "CER", "line recall", "key fields",
                 "median / ours", "median CPU s", "CPU / ours"], summary_rows)
    path = results_path("pipeline")
    path.write_text(json.dumps({
        "benchmark": "pipeline", "machine": machine(), "receipts": len(receipts), "data": str(data_dir(args)),
        "warmup": args.warmup, "engines": results,
    }, indent=2), encoding="utf-8")
    print(f"wrote {path}")
    for engine in engines:
        engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
