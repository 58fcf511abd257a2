"""PDF input: rendering resolution against accuracy and time, and the `pdf_text=auto` rule's inputs.

    .venv/bin/python bench/pdf_dpi.py --data ../shared/data/sroie-dev [--model-repo models]
        [--version V] [--dpis 72 100 150 200 300] [--scan-dpis 150 200] [--limit N] [--synthetic N]
        [--threads N] [--json FILE]

Two kinds of PDF, made here from what we have, and read through the server's own PDF path
(`server.documents.pdf`: the renderer process, then the pipeline of one installed version):

- scans: each SROIE dev receipt's JPEG embedded as-is (no re-encoding) on a page sized so that the
  image is at its scanning resolution: the JPEG's own dpi where it states a plausible one (>= 100 and
  not 96, the "screen" default many programs write), else 200 dpi (a scanner's usual setting). Read at
  each fixed dpi and at "scan" (the page-filling image's own resolution, from the PDF). Scored as every
  bench scores receipts (`bench/scoring.py`: CER in reading order, key fields found in the text), the
  predicted boxes mapped back to the JPEG's pixels.
- born-digital: synthetic receipts (80 mm till roll, 8 pt Helvetica) and invoices (A4, 9 pt) typeset
  by pdfium from `server.quality.receipts`' documents. OCR at each dpi against the known text (CER of
  the lines joined in reading order, `server.quality.textmetrics`), and the text layer read instead (`layer`).

Per dpi it prints median render time, median OCR time and CER. Then the `pdf_text=auto` rule's inputs
(visible real characters, image coverage) for four kinds of page: born-digital, scan, scan under an
invisible OCR layer (the ground truth's lines in render mode 3, as scanners write them), and scan with a
visible stamp ("Scanned with ..." footers), with the rule's verdict for each.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scoring import Accuracy, PredictedLine, Receipt, load_dataset, reading_order, score  # noqa: E402
from server.documents.pdf import PdfLimits, PdfRenderer  # noqa: E402
from server.documents.textlayer import prefer_layer  # noqa: E402
from server.lifecycle.pipeline_loader import load_version  # noqa: E402
from server.repository.layout import ModelRepository  # noqa: E402
from server.quality.receipts import Row, invoice_rows, receipt_rows  # noqa: E402
from server.runtime import RuntimeOptions  # noqa: E402
from server.quality.textmetrics import edit_distance, normalize_text  # noqa: E402
from tests.support.pdfs import PlacedText, TextRun, build_pdf, image_page, typeset  # noqa: E402

FALLBACK_SCAN_DPI = 200.0


def scan_dpi(path: Path) -> float:
    dpi = Image.open(path).info.get("dpi")
    if dpi and dpi[0] >= 100 and round(dpi[0]) != 96:
        return float(dpi[0])
    return FALLBACK_SCAN_DPI


def scan_pdf(receipt: Receipt, *, invisible_layer: bool = False, stamp: bool = False) -> tuple[bytes, tuple[int, int]]:
    jpeg = receipt.image_path.read_bytes()
    size = Image.open(receipt.image_path).size
    dpi = scan_dpi(receipt.image_path)
    runs: list[TextRun] = []
    if invisible_layer:  # the ground truth as a scanner's OCR layer: each line at its box, 1 px = 72/dpi pt
        height_pt = size[1] * 72.0 / dpi
        for line in receipt.lines:
            x0, y1 = float(line.box[:, 0].min()), float(line.box[:, 1].max())
            line_h = max(1.0, float(line.box[:, 1].max() - line.box[:, 1].min())) * 72.0 / dpi
            runs.append(TextRun(line.text, x0 * 72.0 / dpi, height_pt - y1 * 72.0 / dpi, line_h * 0.8, invisible=True))
    if stamp:
        runs.append(TextRun("Scanned with CamScanner", 4.0, 4.0, 6.0))
    return build_pdf([image_page(jpeg, size, dpi, tuple(runs))]), size


def typeset_rows(rows: list[Row], width_pt: float, font_pt: float) -> tuple[bytes, str]:
    margin = 10.0 if width_pt < 300 else 50.0
    printable = width_pt - 2 * margin
    texts, top = [], margin
    for row in rows:
        size = font_pt * row.scale
        top += size * 1.45
        for cell in row.cells:
            texts.append(PlacedText(cell.text, margin + cell.x * printable, top, size, cell.align, row.bold))
    height = max(top + margin, width_pt * 1.414 if width_pt > 300 else 0)
    return typeset([(width_pt, height, texts)]), "\n".join(row.text for row in rows)


def synthetic_documents(count: int, seed: int = 11) -> list[tuple[str, bytes, str]]:
    rng = random.Random(seed)
    documents = []
    for k in range(count):
        if k % 3 == 2:
            pdf, text = typeset_rows(invoice_rows(rng), 595.0, 9.0)  # A4
            documents.append((f"invoice-{k:02d}", pdf, text))
        else:
            pdf, text = typeset_rows(receipt_rows(rng), 226.8, 8.0)  # 80 mm roll
            documents.append((f"receipt-{k:02d}", pdf, text))
    return documents


def joined(lines: list) -> str:
    order = reading_order([np.asarray(line.box, dtype=np.float32) for line in lines])
    return "\n".join(lines[i].text for i in order)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sroie-dev")
    parser.add_argument("--model-repo", type=Path, default=ROOT / "models")
    parser.add_argument("--version", help="version to read with (default: the highest installed)")
    parser.add_argument("--dpis", type=int, nargs="+", default=[72, 100, 150, 200, 300],
                        help="fixed resolutions for the born-digital documents")
    parser.add_argument("--scan-dpis", type=int, nargs="*", default=[150, 200],
                        help="fixed resolutions for the scans (each is also read at its own resolution)")
    parser.add_argument("--limit", type=int, help="only the first N receipts")
    parser.add_argument("--synthetic", type=int, default=12, help="born-digital documents to make")
    parser.add_argument("--threads", type=int, default=0, help="math threads (default: every core)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    repo = ModelRepository(args.model_repo)
    version = args.version or repo.version_names()[-1]
    threads = args.threads or len(os.sched_getaffinity(0))
    model = load_version(repo, version, RuntimeOptions(cpu_threads=threads, concurrency=1))
    renderer = PdfRenderer(memory_mb=2048)
    receipts = load_dataset(args.data, args.limit)
    modes: list[str | int] = [*args.scan_dpis, "scan"]

    def read(pdf: bytes, dpi: float) -> tuple[list, float, float, tuple[int, int]]:
        limits = PdfLimits(dpi=round(dpi), max_pages=4, max_pixels=100_000_000, timeout_s=120)
        with renderer.open(pdf, limits) as document:
            start = time.perf_counter()
            image = document.render(1)
            rendered = time.perf_counter() - start
            start = time.perf_counter()
            lines = model.pipeline.run(image).lines
            return lines, rendered, time.perf_counter() - start, (image.shape[1], image.shape[0])

    def page_scan_dpi(pdf: bytes) -> float:
        """The resolution of the page-filling image, as the server's renderer reports it."""
        limits = PdfLimits(dpi=72, max_pages=4, max_pixels=100_000_000, timeout_s=120)
        with renderer.open(pdf, limits) as document:
            return document.inspect(1).scan_dpi

    rows = []
    synthetic = synthetic_documents(args.synthetic)
    digital: dict[str, dict[str, list]] = {str(m): {"render": [], "ocr": [], "edits": [], "chars": []}
                                           for m in [*args.dpis, "layer"]}
    for k, (name, pdf, truth) in enumerate(synthetic):
        chars = len(normalize_text(truth))
        for dpi in args.dpis:
            lines, render_s, ocr_s, _ = read(pdf, dpi)
            bucket = digital[str(dpi)]
            bucket["render"].append(render_s)
            bucket["ocr"].append(ocr_s)
            bucket["edits"].append(edit_distance(joined(lines), truth))
            bucket["chars"].append(chars)
        limits = PdfLimits(dpi=args.dpis[0], max_pages=4, max_pixels=100_000_000, timeout_s=120)
        with renderer.open(pdf, limits) as document:
            start = time.perf_counter()
            lines = document.text_lines(1)
            bucket = digital["layer"]
            bucket["render"].append(time.perf_counter() - start)
            bucket["ocr"].append(0.0)
            bucket["edits"].append(edit_distance(joined(lines), truth))
            bucket["chars"].append(chars)
        print(f"born-digital {k + 1}/{len(synthetic)}", file=sys.stderr, end="\r")
    for mode, bucket in digital.items():
        rows.append({"corpus": "born-digital", "dpi": mode, "docs": len(synthetic),
                     "render_s": statistics.median(bucket["render"]), "ocr_s": statistics.median(bucket["ocr"]),
                     "cer": sum(bucket["edits"]) / max(1, sum(bucket["chars"])), "key_fields": None})

    scans: dict[str, dict[str, list]] = {str(m): {"render": [], "ocr": [], "scores": []} for m in modes}
    for k, receipt in enumerate(receipts):
        pdf, (width, _) = scan_pdf(receipt)
        for mode in modes:
            dpi = page_scan_dpi(pdf) if mode == "scan" else float(mode)
            lines, render_s, ocr_s, (rendered_w, _) = read(pdf, dpi)
            factor = width / rendered_w
            predicted = [PredictedLine(np.asarray(line.box, dtype=np.float32) * factor, line.text) for line in lines]
            bucket = scans[str(mode)]
            bucket["render"].append(render_s)
            bucket["ocr"].append(ocr_s)
            bucket["scores"].append(score(predicted, receipt))
        print(f"scan {k + 1}/{len(receipts)}", file=sys.stderr, end="\r")
    for mode in modes:
        bucket = scans[str(mode)]
        accuracy = Accuracy.total(bucket["scores"])
        rows.append({"corpus": "scans", "dpi": str(mode), "docs": len(receipts),
                     "render_s": statistics.median(bucket["render"]), "ocr_s": statistics.median(bucket["ocr"]),
                     "cer": accuracy.cer, "key_fields": accuracy.key_hit_rate})

    kinds = {
        "born-digital": [pdf for _, pdf, _ in synthetic],
        "scan": [scan_pdf(r)[0] for r in receipts],
        "scan + invisible OCR layer": [scan_pdf(r, invisible_layer=True)[0] for r in receipts],
        "scan + visible stamp": [scan_pdf(r, stamp=True)[0] for r in receipts],
    }
    auto = []
    for kind, pdfs in kinds.items():
        stats = []
        for pdf in pdfs:
            limits = PdfLimits(dpi=200, max_pages=4, max_pixels=100_000_000, timeout_s=120)
            with renderer.open(pdf, limits) as document:
                stats.append(document.inspect(1))
        visible = [s.visible_real_chars for s in stats]
        auto.append({"kind": kind, "pages": len(stats), "visible_real_chars_min": min(visible),
                     "visible_real_chars_max": max(visible),
                     "image_coverage_min": min(s.image_coverage for s in stats),
                     "layer_chosen": sum(prefer_layer(s) for s in stats)})
    renderer.close()
    model.close()

    print(f"\nversion {version}, {threads} threads; scans: {len(receipts)} SROIE receipts of {args.data}; "
          f"born-digital: {len(synthetic)} synthetic documents")
    print(f"{'corpus':<13} {'dpi':>6} {'render s':>9} {'OCR s':>7} {'CER %':>7} {'keys %':>7}")
    for row in rows:
        keys = f"{100 * row['key_fields']:.1f}" if row["key_fields"] is not None else "-"
        print(f"{row['corpus']:<13} {row['dpi']:>6} {row['render_s']:>9.3f} {row['ocr_s']:>7.2f} "
              f"{100 * row['cer']:>7.2f} {keys:>7}")
    print(f"\n{'page kind':<28} {'pages':>5} {'visible real chars':>19} {'image cover min':>15} {'layer chosen':>12}")
    for row in auto:
        print(f"{row['kind']:<28} {row['pages']:>5} {row['visible_real_chars_min']:>9}-{row['visible_real_chars_max']:<9} "
              f"{row['image_coverage_min']:>15.2f} {row['layer_chosen']:>12}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"version": version, "threads": threads, "rows": rows, "auto": auto}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
