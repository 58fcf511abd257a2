"""PDF input (server.documents.pdf): real pdfium in its renderer processes, PDFs written by the tests.

Good documents come back page by page at the configured resolution, with their text layer in the same
pixels as the rendering; every bad one (encrypted, corrupt, truncated, empty, scripted, with
attachments, too many or too large pages, too slow or too big to render) is a DecodeError with its
status and code, never a hang, and the server process carries on with a fresh renderer.
"""

from __future__ import annotations

import io
import os
import threading
import time
import zlib
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from server.documents.errors import DecodeError
from server.documents.pdf import PdfBudget, PdfLimits, PdfRenderer, check_bytes, looks_like_pdf, pixel_size
from server.documents.selection import PageSelection
from tests.support.images import render_text
from tests.support.pdfs import (
    PageSpec,
    PdfWriter,
    TextRun,
    build_pdf,
    corrupt_pdf,
    embedded_file_pdf,
    encrypted_pdf,
    image_page,
    javascript_pdf,
    jpeg_bytes,
    page_count_bomb,
    page_size_bomb,
    slow_page_pdf,
    text_page,
    truncated_pdf,
    zero_page_pdf,
)

LIMITS = PdfLimits(dpi=100, max_pages=8, max_pixels=40_000_000, timeout_s=20.0)


@pytest.fixture(scope="module")
def renderer() -> Iterator[PdfRenderer]:
    pool = PdfRenderer(memory_mb=1024)
    yield pool
    pool.close()


def refused(renderer: PdfRenderer, data: bytes, limits: PdfLimits = LIMITS, pages: str | None = None,
            read: bool = True) -> DecodeError:
    """The DecodeError that opening `data` (and reading its pages, with `read`) raises."""
    with pytest.raises(DecodeError) as caught:
        with renderer.open(data, limits, PageSelection.parse(pages) if pages else None) as document:
            for page in document.pages if read else ():
                document.render(page.number)
    return caught.value


def ink_box(image: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(image.min(axis=2) < 128)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


# -- good documents -------------------------------------------------------------------------------------


def test_pages_render_at_the_configured_resolution(renderer: PdfRenderer) -> None:
    data = build_pdf([text_page(["FIRST PAGE"]), text_page(["SECOND"], width=300, height=400)])
    assert looks_like_pdf(data)
    with renderer.open(data, LIMITS) as document:
        assert document.page_count == 2
        assert [(p.number, p.width, p.height) for p in document.pages] == [(1, 850, 1100), (2, 417, 556)]
        first, second = document.render(1), document.render(2)
    assert first.shape == (1100, 850, 3) and first.dtype == np.uint8 and first.flags["C_CONTIGUOUS"]
    assert second.shape == (556, 417, 3)
    assert first[0, 0].tolist() == [255, 255, 255]  # white paper, not transparent black
    x0, y0, _, _ = ink_box(first)
    assert 70 <= x0 <= 80 and y0 < 120  # 54 pt margin at 100 dpi = 75 px


def test_text_layer_lines_sit_on_the_rendered_text(renderer: PdfRenderer) -> None:
    """Each layer line's box covers the ink of its text in the rendered page; rows with a wide gap
    come back as two lines, as the detector splits them."""
    page = PageSpec(runs=(TextRun("INVOICE NO: INV-2026-0042", 54, 700, 14), TextRun("TOTAL", 54, 600, 12),
                          TextRun("1,234.56", 400, 600, 12)))
    with renderer.open(build_pdf([page]), LIMITS) as document:
        image = document.render(1)
        lines = document.text_lines(1)
    assert [line.text for line in lines] == ["INVOICE NO: INV-2026-0042", "TOTAL", "1,234.56"]
    dark = image.min(axis=2) < 128
    covered = np.zeros_like(dark)
    for line in lines:
        x0, y0 = np.floor(line.box.min(axis=0)).astype(int)
        x1, y1 = np.ceil(line.box.max(axis=0)).astype(int)
        assert dark[y0:y1 + 1, x0:x1 + 1].any(), line.text
        covered[max(0, y0 - 1):y1 + 2, max(0, x0 - 1):x1 + 2] = True
        assert line.to_json()["score"] == 1.0 and line.to_json()["angle"] == 0
    assert not (dark & ~covered).any()  # no ink outside the boxes


def test_rotated_page_boxes_follow_the_rotation(renderer: PdfRenderer) -> None:
    page = PageSpec(runs=(TextRun("ROTATED TOTAL 12.50", 54, 700, 16),), rotate=90)
    with renderer.open(build_pdf([page]), LIMITS) as document:
        assert (document.pages[0].width, document.pages[0].height) == (1100, 850)  # landscape once turned
        image = document.render(1)
        (line,) = document.text_lines(1)
    x0, y0, x1, y1 = ink_box(image)
    bx0, by0 = line.box.min(axis=0)
    bx1, by1 = line.box.max(axis=0)
    assert bx0 - 2 <= x0 and by0 - 2 <= y0 and x1 <= bx1 + 2 and y1 <= by1 + 2
    assert (y1 - y0) > 3 * (x1 - x0)  # the text runs down the page


def test_image_pdf_made_by_pillow_round_trips(renderer: PdfRenderer) -> None:
    """What a phone scanning app sends: Pillow writes each page as an image at its resolution."""
    pages = [render_text(["PAGE ONE", "TOTAL 12.50"]), render_text(["PAGE TWO IS WIDER THAN ONE"])]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="PDF", save_all=True, append_images=pages[1:], resolution=100.0)
    with renderer.open(buffer.getvalue(), LIMITS) as document:
        rendered = [document.render(p.number) for p in document.pages]
        info = document.inspect(1)
        assert not document.use_layer(1, "auto")  # a scan: read by OCR
    for original, image in zip(pages, rendered):
        assert image.shape[:2] == (original.height, original.width)  # at 100 dpi: pixel for pixel
        expected = np.asarray(original)[:, :, ::-1].astype(int)
        assert np.abs(image.astype(int) - expected).mean() < 8  # JPEG-compressed by Pillow, so close, not equal
    assert info.image_coverage > 0.99 and abs(info.scan_dpi - 100) < 1 and info.visible_real_chars == 0


def test_pdf_text_auto_uses_the_layer_only_for_born_digital_pages(renderer: PdfRenderer) -> None:
    scan = jpeg_bytes(render_text(["SCANNED RECEIPT", "TOTAL 9.00"]))
    size = Image.open(io.BytesIO(scan)).size
    receipt = [f"ITEM {k} MINERAL WATER 1.5L 3.50" for k in range(6)]
    documents = {
        "born digital": (build_pdf([text_page(receipt)]), True),
        "scan": (build_pdf([image_page(scan, size, 150)]), False),
        "scan under an invisible OCR layer": (build_pdf([image_page(scan, size, 150, tuple(
            TextRun(line, 10, 100 - 20 * i, 9, invisible=True) for i, line in enumerate(receipt)))]), False),
        "scan with a visible stamp": (build_pdf([image_page(scan, size, 150, (TextRun("Scanned with an app", 4, 4, 6),))]),
                                      False),
        "a few words": (build_pdf([text_page(["PAGE 2 OF 3"])]), False),
    }
    for name, (data, layer) in documents.items():
        with renderer.open(data, LIMITS) as document:
            assert document.use_layer(1, "auto") is layer, name
            assert document.use_layer(1, "layer") and not document.use_layer(1, "ocr")
    with renderer.open(documents["scan under an invisible OCR layer"][0], LIMITS) as document:
        lines = document.text_lines(1)  # pdf_text=layer returns the invisible layer's text
    assert [line.text for line in lines] == receipt and all(line.invisible for line in lines)


def test_permissions_only_encryption_is_read(renderer: PdfRenderer) -> None:
    data = build_pdf([text_page(["STATEMENT TOTAL 88.10"])], user_password=b"")
    with renderer.open(data, LIMITS) as document:
        assert [line.text for line in document.text_lines(1)] == ["STATEMENT TOTAL 88.10"]
        assert ink_box(document.render(1))  # the content stream was decrypted


def test_page_selection(renderer: PdfRenderer) -> None:
    data = build_pdf([text_page([f"PAGE {n}"]) for n in range(1, 11)])
    with renderer.open(data, LIMITS, PageSelection.parse("2-3,9-")) as document:
        assert [p.number for p in document.pages] == [2, 3, 9, 10]
        assert [line.text for line in document.text_lines(9)] == ["PAGE 9"]
    with renderer.open(data, LIMITS, PageSelection.parse("1")) as document:  # 10 pages > 8, but only 1 read
        assert [p.number for p in document.pages] == [1]


def test_documents_in_threads_each_get_a_renderer(renderer: PdfRenderer) -> None:
    """pdfium is not thread-safe; a server worker's threads read documents at once, each in its own process."""
    results: dict[int, list[str]] = {}
    pids: dict[int, int] = {}

    def read(k: int) -> None:
        with renderer.open(build_pdf([text_page([f"DOCUMENT {k}"] * 30)]), LIMITS) as document:
            pids[k] = document.renderer_pid or 0
            results[k] = [line.text for line in document.text_lines(1)]
            document.render(1)

    threads = [threading.Thread(target=read, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == {k: [f"DOCUMENT {k}"] * 30 for k in range(4)}
    assert len(set(pids.values())) == 4


# -- bad documents ----------------------------------------------------------------------------------------


def test_encrypted_pdf_needing_a_password(renderer: PdfRenderer) -> None:
    error = refused(renderer, encrypted_pdf())
    assert (error.status, error.code) == (422, "encrypted_pdf")


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_pdf(renderer: PdfRenderer, cut: float) -> None:
    error = refused(renderer, truncated_pdf(cut))
    assert (error.status, error.code) == (422, "corrupt_pdf") and "truncated" in error.message


def test_corrupt_pdf(renderer: PdfRenderer) -> None:
    error = refused(renderer, corrupt_pdf())
    assert (error.status, error.code) == (422, "corrupt_pdf")


def test_page_that_does_not_load(renderer: PdfRenderer) -> None:
    """A page tree whose kid is not a page dictionary: the document opens, the page cannot."""
    writer = PdfWriter()
    catalog, tree = writer.reserve(), writer.reserve()
    good = writer.add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 200 200] >>" % tree)
    writer.set(tree, b"<< /Type /Pages /Kids [%d 0 R 99 0 R] /Count 2 >>" % good)
    writer.set(catalog, b"<< /Type /Catalog /Pages %d 0 R >>" % tree)
    data = writer.build(catalog)
    with pytest.raises(DecodeError) as caught:
        with renderer.open(data, LIMITS) as document:
            for page in document.pages:
                document.render(page.number)
    assert caught.value.status == 422 and caught.value.code in ("corrupt_pdf", "empty_document")


def test_zero_pages(renderer: PdfRenderer) -> None:
    error = refused(renderer, zero_page_pdf())
    assert (error.status, error.code) == (422, "empty_document")


def test_javascript(renderer: PdfRenderer) -> None:
    error = refused(renderer, javascript_pdf(), read=False)
    assert (error.status, error.code) == (422, "pdf_javascript")
    # Written with name escapes, the plain-bytes check misses it; pdfium's document-level count does not.
    hidden = build_pdf([text_page(["HELLO"])], catalog_extra=b"/Names << /J#61vaScript 2 0 R >>",
                       extra_objects=[b"<< /Names [(x) 3 0 R] >>", b"<< /S /J#61vaScript /J#53 (app.alert\\(1\\)) >>"])
    error = refused(renderer, hidden, read=False)
    assert (error.status, error.code) == (422, "pdf_javascript")


def test_embedded_files(renderer: PdfRenderer) -> None:
    assert refused(renderer, embedded_file_pdf(), read=False).code == "pdf_embedded_files"
    spec = b"<< /Type /Filespec /F (invoice.xml) /EF << /F 4 0 R >> >>"
    hidden_tree = build_pdf([text_page(["HELLO"])], catalog_extra=b"/Names << /Embedded#46iles 2 0 R >>",
                            extra_objects=[b"<< /Names [(invoice.xml) 3 0 R] >>", spec.replace(b"/EF", b"/E#46"),
                                           b"<< /Length 5 >>\nstream\n<x/>\n\nendstream"])
    assert refused(renderer, hidden_tree, read=False).code == "pdf_embedded_files"
    annotation = build_pdf([text_page(["HELLO"])], page_extra=b"/Annots [2 0 R]", extra_objects=[
        b"<< /Type /Annot /Subtype /File#41ttachment /Rect [0 0 20 20] /FS 3 0 R >>",
        b"<< /Type /Filespec /F (a.txt) /E#46 << /F 4 0 R >> >>", b"<< /Length 2 >>\nstream\nhi\nendstream"])
    error = refused(renderer, annotation)
    assert (error.status, error.code, error.details.get("page")) == (422, "pdf_embedded_files", 1)


def test_page_count_bomb(renderer: PdfRenderer) -> None:
    """5,000 empty pages in a few hundred KB: refused at open, unless pages picks few enough."""
    data = page_count_bomb(5000)
    error = refused(renderer, data, read=False)
    assert (error.status, error.code) == (413, "too_many_pages") and error.details == {"pages": 5000, "max_pages": 8}
    with renderer.open(data, LIMITS, PageSelection.parse("4999-5000")) as document:
        assert [p.number for p in document.pages] == [4999, 5000]
    error = refused(renderer, data, pages="5001")
    assert (error.status, error.code, error.details["page_count"]) == (422, "page_out_of_range", 5000)


def test_page_size_bomb(renderer: PdfRenderer) -> None:
    """A 200 x 200 inch page (the largest the format allows) is refused from its size, not rendered."""
    data = page_size_bomb()
    error = refused(renderer, data, read=False)
    assert (error.status, error.code) == (413, "image_too_large")
    assert error.details == {"page": 2, "width": 20000, "height": 20000, "dpi": 100, "max_pixels": 40_000_000}
    with renderer.open(data, LIMITS, PageSelection.parse("1")) as document:  # the other page is still readable
        assert document.render(1).shape == (1100, 850, 3)


def test_slow_page_is_stopped_within_the_budget(renderer: PdfRenderer) -> None:
    """100,000 full-page fills compress to a few KB and would take pdfium minutes: the renderer is
    killed when the document's budget runs out, and the next document gets a new one."""
    data = slow_page_pdf()
    limits = PdfLimits(dpi=100, max_pages=8, max_pixels=40_000_000, timeout_s=2.0)
    start = time.monotonic()
    with pytest.raises(DecodeError) as caught:
        with renderer.open(data, limits) as document:
            pid = document.renderer_pid
            document.render(1)
    elapsed = time.monotonic() - start
    assert (caught.value.status, caught.value.code, caught.value.details) == (422, "pdf_too_complex", {"page": 1})
    assert elapsed < 30  # the 2 s budget, plus a loaded machine's slack; never the minutes of the page
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped
    with renderer.open(build_pdf([text_page(["NEXT"])]), LIMITS) as document:
        assert document.renderer_pid != pid and [l.text for l in document.text_lines(1)] == ["NEXT"]


def test_memory_bomb_fails_in_the_renderer() -> None:
    """A content stream of 3 million operators (76 KB compressed) needs about 1 GB to parse: over the
    renderer's limit it fails there, as a 422, instead of growing a server worker."""
    compressor = zlib.compressobj(9)
    stream = b"".join(compressor.compress(b"0 0 1 1 re f\n" * 10_000) for _ in range(300)) + compressor.flush()
    writer = PdfWriter()
    catalog, tree = writer.reserve(), writer.reserve()
    content = writer.stream(b"/Filter /FlateDecode", stream)
    page = writer.add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R >>" % (tree, content))
    writer.set(tree, b"<< /Type /Pages /Kids [%d 0 R] /Count 1 >>" % page)
    writer.set(catalog, b"<< /Type /Catalog /Pages %d 0 R >>" % tree)
    small = PdfRenderer(memory_mb=400)
    try:
        error = refused(small, writer.build(catalog))
        assert error.status == 422 and error.code in ("corrupt_pdf", "pdf_too_complex")
        with small.open(build_pdf([text_page(["STILL WORKS"])]), LIMITS) as document:
            assert [l.text for l in document.text_lines(1)] == ["STILL WORKS"]
    finally:
        small.close()


def test_checks_on_the_bytes() -> None:
    with pytest.raises(DecodeError) as caught:
        check_bytes(b"")
    assert (caught.value.status, caught.value.code) == (400, "empty_image")
    assert not looks_like_pdf(b"\x89PNG\r\n") and looks_like_pdf(b"junk\n%PDF-1.4\n")
    assert pixel_size(612, 792, 200) == (1700, 2200) and pixel_size(0.1, 0.1, 72) == (1, 1)


def test_the_budget_counts_pdfium_time_only_and_is_shared_by_opens(renderer: PdfRenderer) -> None:
    """The server OCRs a page between two renderer calls: that time is not pdfium's and must not use up
    the next page's budget; a document opened twice (checked, then read) has one budget for both."""
    data = build_pdf([text_page(["FIRST"]), text_page(["SECOND"])])
    limits = PdfLimits(dpi=100, max_pages=8, max_pixels=40_000_000, timeout_s=1.5)
    with renderer.open(data, limits) as document:
        document.render(1)
        time.sleep(2.0)  # longer than the whole budget, outside pdfium
        assert document.render(2).shape == (1100, 850, 3)
        assert 0 < document.budget.left < 1.5
    spent = PdfBudget(0.0)
    with pytest.raises(DecodeError) as caught:
        renderer.open(data, limits, budget=spent)
    assert caught.value.code == "pdf_too_complex"
