"""Orientation benchmark: CER of receipts read upright, turned 180 degrees, and with a few lines flipped.

Each receipt is read in three forms by every engine (interleaved per receipt, like bench.pipeline):

- `upright`: the scan as it is (the common case: no line should be turned over).
- `rot180`: the whole page turned 180 degrees; the predicted boxes are turned back before scoring.
- `lines`: `--flip` ground-truth lines per receipt (chosen by a seeded generator among lines whose
  rectangles overlap no other chosen line), each turned 180 degrees in place; the rest stays upright.
- `rot90` (only with `--modes ...,rot90`): the page turned 90 degrees clockwise, which a 0/180
  classifier cannot handle; measured to say so.

    .venv/bin/python -m bench.orientation --model-repo DIR \\
        --engines ours:line@1.0.0-ppocrv4,ours@1.0.0-ppocrv4,ours:nocls@1.0.0-ppocrv4

Engine names are bench.pipeline's; the presets `line` (PaddleOCR's per-line rule) and `nocls` (no
classifier) are the comparisons for the default page vote.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import zlib

import cv2
import numpy as np

from bench.cli import add_common_args, data_dir
from bench.pipeline import build_engine
from bench.report import machine, print_table, results_path
from bench.scoring import Accuracy, PredictedLine, Receipt, ReceiptScore, load_dataset, score

MODES = ("upright", "rot180", "lines", "rot90")


def _rect(box: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x0, y0 = max(0, int(box[:, 0].min())), max(0, int(box[:, 1].min()))
    x1, y1 = min(w, int(np.ceil(box[:, 0].max())) + 1), min(h, int(np.ceil(box[:, 1].max())) + 1)
    return x0, y0, x1, y1


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def flip_lines(image: np.ndarray, receipt: Receipt, count: int) -> np.ndarray:
    """`image` with up to `count` ground-truth lines turned 180 degrees in place (seeded by receipt id)."""
    rng = np.random.default_rng(zlib.crc32(receipt.id.encode()))
    rects = [_rect(line.box, image.shape) for line in receipt.lines if line.text.strip()]
    chosen: list[tuple[int, int, int, int]] = []
    for k in rng.permutation(len(rects)):
        if len(chosen) == count:
            break
        if rects[k][2] > rects[k][0] and rects[k][3] > rects[k][1] and not any(
                _overlap(rects[k], r) for j, r in enumerate(rects) if j != k):
            chosen.append(rects[k])
    out = image.copy()
    for x0, y0, x1, y1 in chosen:
        out[y0:y1, x0:x1] = cv2.rotate(image[y0:y1, x0:x1], cv2.ROTATE_180)
    return out


def transform(image: np.ndarray, receipt: Receipt, mode: str, flips: int):
    """The image an engine reads in `mode`, and how to bring its boxes back to the scan's coordinates."""
    h, w = image.shape[:2]
    if mode == "rot180":
        return cv2.rotate(image, cv2.ROTATE_180), lambda b: np.stack([w - 1 - b[:, 0], h - 1 - b[:, 1]], axis=1)
    if mode == "rot90":
        # Clockwise: scan (x, y) lands at (h - 1 - y, x).
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE), lambda b: np.stack([b[:, 1], h - 1 - b[:, 0]], axis=1)
    if mode == "lines":
        return flip_lines(image, receipt, flips), lambda b: b
    return image, lambda b: b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--engines", required=True, help="comma-separated engines (bench.pipeline's names)")
    parser.add_argument("--modes", default="upright,rot180,lines", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--flip", type=int, default=3, help="lines turned over per receipt in mode `lines`")
    parser.add_argument("--threads", type=int, default=None, help="math-library threads for every engine")
    args = parser.parse_args(argv)

    modes = args.modes.split(",")
    receipts = load_dataset(data_dir(args), args.limit)
    engines = [build_engine(spec, args) for spec in args.engines.split(",")]
    for engine in engines:
        engine(receipts[0].load_image())  # warm-up, untimed
    scores: dict[tuple[str, str], list[ReceiptScore]] = {(e.name, m): [] for e in engines for m in modes}
    latencies: dict[tuple[str, str], list[float]] = {key: [] for key in scores}
    for k, receipt in enumerate(receipts):
        image = receipt.load_image()
        for mode in modes:
            shown, back = transform(image, receipt, mode, args.flip)
            for engine in engines[k % len(engines):] + engines[: k % len(engines)]:
                start = time.perf_counter()
                lines = engine(shown)
                latencies[engine.name, mode].append(time.perf_counter() - start)
                restored = [PredictedLine(back(np.asarray(line.box, dtype=np.float32)), line.text) for line in lines]
                scores[engine.name, mode].append(score(restored, receipt))
        print(f"  {receipt.id}: " + "  ".join(
            f"{e.name}/{m} {scores[e.name, m][-1].edits}/{scores[e.name, m][-1].ref_chars}"
            for e in engines for m in modes), flush=True)

    rows, results = [], []
    for engine in engines:
        for mode in modes:
            acc = Accuracy.total(scores[engine.name, mode])
            median = statistics.median(latencies[engine.name, mode])
            rows.append([engine.name, mode, f"{100 * acc.cer:.2f}%", f"{100 * acc.line_recall:.1f}%",
                         f"{100 * acc.key_hit_rate:.1f}%", f"{median:.3f}"])
            results.append({"engine": engine.name, "mode": mode, "cer": acc.cer, "line_recall": acc.line_recall,
                            "key_hit_rate": acc.key_hit_rate, "median_s": median,
                            "cer_per_receipt": [s.cer for s in scores[engine.name, mode]]})
    print_table(["engine", "mode", "CER", "line recall", "key fields", "median s"], rows)
    path = results_path("orientation")
    path.write_text(json.dumps({"benchmark": "orientation", "machine": machine(), "receipts": len(receipts),
                                "flip": args.flip, "results": results}, indent=2), encoding="utf-8")
    print(f"wrote {path}")
    for engine in engines:
        engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
