"""Field extraction against known answers: SROIE's key fields and the synthetic cheques and invoices.

    .venv/bin/python bench/fields.py --data ../shared/data/sroie-dev --model-repo /tmp/docs-models
        [--versions V ...] [--limit N] [--threads N] [--cache DIR] [--json FILE]

Every installed version (loaded in this process, as bench/versions.py does) reads every receipt of an
SROIE-layout directory and the synthetic documents of `server.quality.field_documents` (6 cheques, the last
with words and figures that disagree, and 6 invoices); `server.fields` extracts the receipt, invoice
or cheque fields from what it read. Printed per version: exact match per field, in percent, and the
median / p90 extraction time per document (the rules alone, OCR excluded).

Exact match, after this normalisation of both sides:
- company: case-folded, whitespace removed (`server.quality.textmetrics.normalize_text`, the project's one
  text normalisation: PP-OCR drops the spaces between Latin words, so "BOOK TA .K" and "BOOKTA.K" are
  the same company), otherwise every character must match;
- date: the key parsed as a date (day first, as SROIE's Malaysian receipts print them, month first only
  where day first is impossible) and compared as ISO `YYYY-MM-DD` with the extracted value;
- total: the key parsed as a decimal amount (price-parser: "$8.20" is 8.20) and compared as a decimal.
A receipt whose key is empty for a field is not scored on that field. The synthetic documents are
scored by `server.quality.expected_fields.score_fields` (the quality gate's function).

`--cache DIR` keeps each version's recognised lines per document in DIR and reuses them on the next
run, so changing the rules does not mean reading everything again (timings of OCR are not reported).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import numpy as np
from price_parser import Price

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scoring import load_dataset  # noqa: E402
from server.fields import extract_fields  # noqa: E402
from server.fields.dates import parse_date  # noqa: E402
from server.quality.expected_fields import score_fields  # noqa: E402
from server.quality.field_documents import generate  # noqa: E402
from server.fields.types import Line  # noqa: E402
from server.lifecycle.pipeline_loader import load_version  # noqa: E402
from server.repository.layout import ModelRepository  # noqa: E402
from server.runtime import RuntimeOptions  # noqa: E402
from server.quality.textmetrics import normalize_text  # noqa: E402

SROIE_FIELDS = {"company": "vendor", "date": "date", "total": "total"}


def sroie_matches(key: str, expected: str, got: Any) -> bool:
    """Exact match of one SROIE key field, normalised as the module docstring says."""
    if got is None:
        return False
    if key == "company":
        return normalize_text(expected) == normalize_text(str(got))
    if key == "date":
        wanted = parse_date(expected)
        return wanted is not None and wanted.isoformat() == got
    amount = Price.fromstring(expected).amount
    return amount is not None and Decimal(amount) == Decimal(str(got))


def _lines_json(lines: list[Line]) -> list[dict[str, Any]]:
    return [{"text": l.text, "score": l.score, "box": np.asarray(l.box).tolist()} for l in lines]


def _lines_from_json(items: list[dict[str, Any]]) -> list[Line]:
    return [Line(i["text"], float(i["score"]), np.asarray(i["box"], dtype=np.float32)) for i in items]


def read_cached(cache: Path | None, version: str, name: str, read: Callable[[], list[Line]]) -> list[Line]:
    if cache is None:
        return read()
    path = cache / version / f"{name}.json"
    if path.is_file():
        return _lines_from_json(json.loads(path.read_text()))
    lines = read()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_lines_json(lines)))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sroie-dev")
    parser.add_argument("--model-repo", type=Path, default=ROOT / "models")
    parser.add_argument("--versions", nargs="*", help="versions to measure (default: every installed one)")
    parser.add_argument("--limit", type=int, help="only the first N receipts")
    parser.add_argument("--threads", type=int, default=0, help="math threads (default: every core)")
    parser.add_argument("--cache", type=Path, help="reuse recognised lines kept here by an earlier run")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)

    repo = ModelRepository(args.model_repo)
    versions = args.versions or repo.version_names()
    threads = args.threads or len(os.sched_getaffinity(0))
    receipts = load_dataset(args.data, args.limit)
    synthetic = generate()
    rows = []
    for version in versions:
        model = None

        def read(image: np.ndarray) -> list[Line]:
            nonlocal model
            if model is None:
                model = load_version(repo, version, RuntimeOptions(cpu_threads=threads, concurrency=1))
            return [Line(l.text, float(l.score), l.box) for l in model.pipeline.run(image).lines]

        hits: dict[str, list[bool]] = {key: [] for key in SROIE_FIELDS}
        seconds: list[float] = []
        misses: list[dict[str, Any]] = []
        for k, receipt in enumerate(receipts):
            lines = read_cached(args.cache, version, receipt.id, lambda: read(receipt.load_image()))
            start = time.perf_counter()
            fields = extract_fields("receipt", lines)
            seconds.append(time.perf_counter() - start)
            for key, name in SROIE_FIELDS.items():
                expected = receipt.keys.get(key, "")
                if not expected.strip():
                    continue
                matched = sroie_matches(key, expected, fields.value(name))
                hits[key].append(matched)
                if not matched:
                    misses.append({"receipt": receipt.id, "field": key, "expected": expected, "got": fields.value(name)})
            print(f"{version}: receipt {k + 1}/{len(receipts)}", file=sys.stderr, end="\r")
        synthetic_hits: dict[str, list[bool]] = {"cheque": [], "invoice": []}
        for doc in synthetic:  # cached under the image's hash: a changed generator is read again
            key = f"{doc.name}-{hashlib.sha1(doc.image.tobytes()).hexdigest()[:12]}"
            lines = read_cached(args.cache, version, key, lambda: read(doc.image))
            start = time.perf_counter()
            fields = extract_fields(doc.kind, lines)
            seconds.append(time.perf_counter() - start)
            for name, matched in score_fields(doc.fields, fields).items():
                synthetic_hits[doc.kind].append(matched)
                if not matched:
                    got = fields.amounts_agree if name == "amounts_agree" else fields.value(name)
                    misses.append({"document": doc.name, "field": name, "expected": doc.fields[name], "got": got})
        if model is not None:
            model.close()
        rate = {key: sum(v) / max(1, len(v)) for key, v in hits.items()}
        rows.append({
            "version": version,
            **{key: rate[key] for key in SROIE_FIELDS},
            "mean": sum(rate.values()) / len(rate),
            "cheque": sum(synthetic_hits["cheque"]) / max(1, len(synthetic_hits["cheque"])),
            "invoice": sum(synthetic_hits["invoice"]) / max(1, len(synthetic_hits["invoice"])),
            "extract_ms_median": 1000 * statistics.median(seconds),
            "extract_ms_p90": 1000 * float(np.percentile(seconds, 90)),
            "scored": {key: len(v) for key, v in hits.items()},
            "misses": misses,
        })

    print(f"\n{len(receipts)} receipts of {args.data}; synthetic: {sum(d.kind == 'cheque' for d in synthetic)} cheques, "
          f"{sum(d.kind == 'invoice' for d in synthetic)} invoices; exact match %")
    print(f"{'version':<24} {'company':>8} {'date':>6} {'total':>6} {'mean':>6} {'cheque':>7} {'invoice':>8} "
          f"{'extract ms p50/p90':>19}")
    for row in rows:
        print(f"{row['version']:<24} {100 * row['company']:>8.1f} {100 * row['date']:>6.1f} {100 * row['total']:>6.1f} "
              f"{100 * row['mean']:>6.1f} {100 * row['cheque']:>7.1f} {100 * row['invoice']:>8.1f} "
              f"{row['extract_ms_median']:>9.2f}/{row['extract_ms_p90']:<9.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"data": str(args.data), "rows": rows}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
