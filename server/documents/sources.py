"""One input of a request - an image, a multi-page TIFF or a PDF - as the pages to read, one at a time.

Every input is a document of one page or more, so a request's inputs are all handled alike: `pages=`
selects in each, and each selected page becomes one result. Reading is split in two, as for images
(`server.documents.decode`):

- `open_source` is cheap and runs for every input before a model is held: the kind is found from the
  bytes (a PDF by its header, whatever the Content-Type said), pages are counted and selected, and each
  selected page's size is checked against the pixel limit, so a request is refused before any work;
- `Source.pages` decodes or renders one page at a time as the caller asks for the next, so a request
  holds one decoded page, not all of them.

A PDF is closed once it has been checked and opened again to be read: a request then holds at most one
PDF renderer process at a time, however many PDFs it sends. Both opens share the document's pdfium
time budget (`server.documents.pdf.PdfBudget`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image

from server.documents.decode import open_image, to_bgr
from server.documents.errors import DecodeError
from server.documents.pages import ImagePages, has_pages
from server.documents.pdf import PdfBudget, PdfLimits, PdfRenderer, looks_like_pdf
from server.documents.selection import PageSelection, selected_pages
from server.documents.textlayer import TextLayerLine


@dataclass(frozen=True)
class DocumentLimits:
    max_pixels: int  # a page's width x height (OCR_MAX_IMAGE_PIXELS)
    max_pages: int  # pages read from one document (OCR_MAX_PDF_PAGES)
    pdf: PdfLimits


@dataclass
class Page:
    """One page to answer: its pixels to recognise, or (a PDF page answered from its own text) its
    text-layer lines in the pixels the page would be rendered at."""

    number: int  # 1-based, in its document
    width: int
    height: int
    image: np.ndarray | None  # BGR uint8, when the page is to be recognised
    layer: list[TextLayerLine] | None  # when the page is answered from its text layer
    read_s: float  # decoding, rendering or text extraction


class Source:
    """An opened input: its `kind` ("image", "tiff" or "pdf") and the `numbers` of the pages to read."""

    kind: str
    numbers: tuple[int, ...]

    def pages(self) -> Iterator[Page]:
        raise NotImplementedError

    def close(self) -> None:
        """Free what the source holds (its file, its renderer); safe to call more than once."""


class _ImageSource(Source):
    kind = "image"

    def __init__(self, image: Image.Image, selection: PageSelection | None, max_pages: int) -> None:
        self.image: Image.Image | None = image
        self.numbers = selected_pages(selection, 1, max_pages)

    def pages(self) -> Iterator[Page]:
        assert self.image is not None, "an image source is read once"
        image, self.image = self.image, None
        start = time.perf_counter()
        pixels = to_bgr(image)  # closes the Pillow image
        yield Page(1, pixels.shape[1], pixels.shape[0], pixels, None, time.perf_counter() - start)

    def close(self) -> None:
        if self.image is not None:
            self.image.close()
            self.image = None


class _TiffSource(Source):
    kind = "tiff"

    def __init__(self, image: Image.Image, selection: PageSelection | None, limits: DocumentLimits) -> None:
        self.document = ImagePages(image, limits.max_pixels, limits.max_pages, selection)
        self.numbers = self.document.numbers

    def pages(self) -> Iterator[Page]:
        for number in self.numbers:
            start = time.perf_counter()
            pixels = self.document.render(number)
            yield Page(number, pixels.shape[1], pixels.shape[0], pixels, None, time.perf_counter() - start)

    def close(self) -> None:
        self.document.close()


class _PdfSource(Source):
    kind = "pdf"

    def __init__(self, data: bytes, selection: PageSelection | None, limits: PdfLimits, pdf_text: str,
                 renderer: PdfRenderer) -> None:
        self.data, self.selection, self.limits, self.pdf_text = data, selection, limits, pdf_text
        self.renderer = renderer
        self.budget = PdfBudget(limits.timeout_s)
        with renderer.open(data, limits, selection, self.budget) as document:
            self.numbers = tuple(page.number for page in document.pages)

    def pages(self) -> Iterator[Page]:
        with self.renderer.open(self.data, self.limits, self.selection, self.budget) as document:
            for number in self.numbers:
                start = time.perf_counter()
                size = document.page(number)
                if document.use_layer(number, self.pdf_text):
                    layer = document.text_lines(number)
                    yield Page(number, size.width, size.height, None, layer, time.perf_counter() - start)
                else:
                    pixels = document.render(number)
                    yield Page(number, size.width, size.height, pixels, None, time.perf_counter() - start)


def open_source(data: bytes, limits: DocumentLimits, selection: PageSelection | None, pdf_text: str,
                renderer: PdfRenderer) -> Source:
    """Identify and check one input; raises `DecodeError` for anything that cannot be read."""
    if data.startswith(b"%PDF-"):
        return _PdfSource(data, selection, limits.pdf, pdf_text, renderer)
    try:
        image = open_image(data, limits.max_pixels)
    except DecodeError as exc:
        # The format allows bytes before the header (within the first KiB): not an image, but a PDF.
        if exc.code == "invalid_image" and looks_like_pdf(data):
            return _PdfSource(data, selection, limits.pdf, pdf_text, renderer)
        raise
    try:
        if has_pages(image):
            return _TiffSource(image, selection, limits)
        return _ImageSource(image, selection, limits.max_pages)
    except BaseException:
        image.close()
        raise
