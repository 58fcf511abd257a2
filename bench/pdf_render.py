"""What pdfium does with pathological PDFs, and what running it in renderer processes costs.

    .venv/bin/python bench/pdf_render.py [--repeat 5]

In this process (pypdfium2 directly), the time and peak memory pdfium needs for: a normal text page;
N full-page fills in one content stream (a few hundred bytes compressed); one path of N random
segments; and a content stream of N tiny operators (loading the page parses all of it, in one call).
Then through `server.documents.pdf` (the server's path): starting a renderer process, opening a small
PDF on a warm renderer, and rendering an A4 text page at 200 dpi in-process against through the
renderer (the pixels cross a socket), medians over `--repeat` runs; and how long the server takes to
refuse a page that would render for minutes, with a 2 s budget.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.documents.errors import DecodeError  # noqa: E402
from server.documents.pdf import PdfLimits, PdfRenderer  # noqa: E402
from tests.support.pdfs import PageSpec, PdfWriter, build_pdf, text_page  # noqa: E402

_PROBE = """
import resource, sys, time
import pypdfium2 as pdfium
data = sys.stdin.buffer.read()
start = time.perf_counter()
document = pdfium.PdfDocument(data)
page = document[0]
loaded = time.perf_counter()
page.render(scale=200 / 72)
done = time.perf_counter()
print(f"{loaded - start:.3f} {done - loaded:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
"""


def content_stream_pdf(operators: int) -> bytes:
    compressor = zlib.compressobj(9)
    stream = b"".join(compressor.compress(b"0 0 1 1 re f\n" * 10_000) for _ in range(operators // 10_000))
    stream += compressor.flush()
    writer = PdfWriter()
    catalog, tree = writer.reserve(), writer.reserve()
    content = writer.stream(b"/Filter /FlateDecode", stream)
    page = writer.add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R >>" % (tree, content))
    writer.set(tree, b"<< /Type /Pages /Kids [%d 0 R] /Count 1 >>" % page)
    writer.set(catalog, b"<< /Type /Catalog /Pages %d 0 R >>" % tree)
    return writer.build(catalog)


def probe(label: str, data: bytes, timeout: float = 300) -> None:
    """Load and render page 1 at 200 dpi in a fresh interpreter (so peak memory is this PDF's own)."""
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], input=data, capture_output=True, timeout=timeout)
        load_s, render_s, rss_mb = done.stdout.decode().split()
        print(f"{label:<44} {len(data):>9} B  load {load_s:>7} s  render {render_s:>7} s  peak RSS {rss_mb:>5} MB")
    except subprocess.TimeoutExpired:
        print(f"{label:<44} {len(data):>9} B  still running after {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    rng = random.Random(1)

    print("pdfium in-process (pypdfium2), page 1 at 200 dpi:")
    probe("text page (40 lines)", build_pdf([text_page(["HELLO WORLD TOTAL 12.50"] * 40)]))
    for n in (1_000, 2_000, 4_000):
        probe(f"{n} full-page fills", build_pdf([PageSpec(extra_content=b"0 0 612 792 re f\n" * n)]))
    for n in (10_000, 30_000):
        path = b"0 0 m " + b"".join(b"%d %d l " % (rng.randint(0, 612), rng.randint(0, 792)) for _ in range(n)) + b"f\n"
        probe(f"one path of {n} random segments", build_pdf([PageSpec(extra_content=path)]))
    for n in (1_000_000, 3_000_000):
        probe(f"{n} operators in one content stream", content_stream_pdf(n))

    print("\nthrough the server's renderer processes:")
    limits = PdfLimits(dpi=200, max_pages=4, max_pixels=40_000_000, timeout_s=30)
    small = build_pdf([text_page(["TOTAL 12.50"])])
    a4 = build_pdf([text_page([f"LINE {k} MINERAL WATER 1.5L 3.50" for k in range(40)], width=595, height=842)])
    starts, opens, inproc, via = [], [], [], []
    import pypdfium2 as pdfium
    for _ in range(args.repeat):
        renderer = PdfRenderer(memory_mb=1536)
        start = time.perf_counter()
        with renderer.open(small, limits):
            pass
        starts.append(time.perf_counter() - start)
        start = time.perf_counter()
        with renderer.open(small, limits):
            pass
        opens.append(time.perf_counter() - start)
        with renderer.open(a4, limits) as document:
            document.inspect(1)
            start = time.perf_counter()
            document.render(1)
            via.append(time.perf_counter() - start)
        renderer.close()
        doc = pdfium.PdfDocument(a4)
        page = doc[0]
        start = time.perf_counter()
        page.render(scale=200 / 72).to_numpy()
        inproc.append(time.perf_counter() - start)
        doc.close()
    print(f"first document (process start + open)     median {1000 * statistics.median(starts):7.1f} ms")
    print(f"next document on the warm renderer         median {1000 * statistics.median(opens):7.1f} ms")
    print(f"A4 page at 200 dpi, in-process             median {1000 * statistics.median(inproc):7.1f} ms")
    print(f"A4 page at 200 dpi, through the renderer   median {1000 * statistics.median(via):7.1f} ms")
    renderer = PdfRenderer(memory_mb=1536)
    slow = build_pdf([PageSpec(extra_content=b"0 0 612 792 re f\n" * 100_000)])
    start = time.perf_counter()
    try:
        with renderer.open(slow, PdfLimits(dpi=200, max_pages=4, max_pixels=40_000_000, timeout_s=2.0)) as document:
            document.render(1)
    except DecodeError as error:
        print(f"100,000 full-page fills, 2 s budget: {error.code} after {time.perf_counter() - start:.2f} s")
    renderer.close()
    print(f"this process's peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
