"""PDF input: open, check, select pages, render each page to BGR or read its text layer, within limits.

pdfium (pypdfium2) runs in renderer processes (`server.documents.pdfium_worker`, which says why), one
per document being read, kept for reuse by a small pool. Every pdfium call of a document shares one
budget of wall-clock time (`PdfLimits.timeout_s`, a `PdfBudget`): the time the renderer spends on its
calls, not the time between them (the OCR of a page already rendered must not use up the budget of the
next one), across every open of the document. A renderer that runs past it is killed and the client
gets 422 `pdf_too_complex`. The renderer's address space is limited too (`memory_mb`).

Checks, cheapest first, each a `DecodeError` (README, "Documents and fields", has the table):
1. in this process, on the bytes: no `%%EOF` in the last KiB (truncated upload), JavaScript actions or
   embedded files written in plain objects;
2. in the renderer, on open: unparseable, needs a password, zero pages, too many pages selected, pages
   out of range, a page whose pixel size at the DPI exceeds `max_pixels` (from the page's size,
   before its content is parsed), document-level scripts and attachments;
3. per page, when it is read: a page that cannot load, file-attachment annotations, the time budget.

An encrypted PDF that opens with the empty user password (permissions only: common for statements and
invoices from billing systems) is read like any other.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from server.config import Settings
from server.documents.errors import DecodeError
from server.documents.selection import PageSelection, selected_pages
from server.documents.textlayer import PageText, TextLayerLine, group_lines, prefer_layer

PDF_TEXT_MODES = ("auto", "ocr", "layer")
_EOF_WINDOW = 1024  # Acrobat's own rule: %%EOF must be within the last 1024 bytes
_JAVASCRIPT = re.compile(rb"/J(?:avaScript|S)(?![A-Za-z0-9#])")
_EMBEDDED = re.compile(rb"/(?:EmbeddedFiles?|FileAttachment)(?![A-Za-z0-9#])")
_RENDERER_START_S = 30.0  # time a new renderer process gets to import pypdfium2 (on a loaded 2-core box)


def looks_like_pdf(data: bytes) -> bool:
    """A PDF header within the first KiB (the spec lets producers put bytes before it)."""
    return b"%PDF-" in data[:_EOF_WINDOW]


@dataclass(frozen=True)
class PdfLimits:
    dpi: int  # rendering resolution (OCR_PDF_DPI)
    max_pages: int  # pages one document may have read (OCR_MAX_PDF_PAGES)
    max_pixels: int  # a rendered page's width x height at `dpi` (OCR_MAX_IMAGE_PIXELS)
    timeout_s: float  # pdfium time for one whole document (OCR_PDF_TIMEOUT_S)

    @classmethod
    def from_settings(cls, settings: Settings) -> "PdfLimits":
        return cls(dpi=settings.pdf_dpi, max_pages=settings.max_pdf_pages, max_pixels=settings.max_image_pixels,
                   timeout_s=settings.pdf_timeout_s)


class PdfBudget:
    """pdfium time left to one document, in seconds; spent by each renderer call as it runs."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds

    def charge(self, seconds: float) -> None:
        self.left -= seconds


def pixel_size(width_pt: float, height_pt: float, dpi: float) -> tuple[int, int]:
    """A page's rendered size in pixels: its size in points (1/72 inch) at `dpi`, at least 1x1."""
    return max(1, round(width_pt * dpi / 72.0)), max(1, round(height_pt * dpi / 72.0))


class _Renderer:
    """One renderer process and our end of its socket."""

    def __init__(self, memory_mb: int) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "server.documents.pdfium_worker", str(theirs.fileno()), str(memory_mb)],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, close_fds=True,
            )
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        try:  # the process says "ready" once pypdfium2 is imported; document budgets start after that
            ready = self.conn.poll(_RENDERER_START_S) and self.conn.recv_bytes() == b"ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise RuntimeError(f"the PDF renderer process did not start within {_RENDERER_START_S:.0f} s")

    def call(self, op: str, timeout_s: float, page: int | None = None, payload: bytes | None = None,
             **args: Any) -> tuple[dict[str, Any], bytes]:
        """Send one request and wait `timeout_s` for its reply; kill the renderer past that."""
        request: dict[str, Any] = {"op": op, "args": args}
        if payload is not None:
            request["payload"] = True
        try:
            self.conn.send_bytes(json.dumps(request).encode())
            if payload is not None:
                self.conn.send_bytes(payload)
            if not self.conn.poll(max(0.0, timeout_s)):
                self.kill()
                raise _too_slow(page)
            reply = json.loads(self.conn.recv_bytes())
            blob = self.conn.recv_bytes() if reply.get("payload") else b""
            if reply.get("retire"):  # it exits after this reply; never reuse it
                self.kill()
        except (EOFError, OSError):
            self.kill()
            raise DecodeError(422, "corrupt_pdf", "the PDF renderer failed on this document (it is malformed, or "
                              "needs more memory than OCR_PDF_MEMORY_MB)" + (f"; on page {page}" if page else ""),
                              **({"page": page} if page else {})) from None
        if "error" in reply:
            if reply["error"] == "internal":
                raise RuntimeError(f"PDF renderer: {reply['message']}")
            raise DecodeError(422, reply["error"], reply["message"], **reply.get("details", {}))
        return reply["ok"], blob

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with suppress(OSError):
            self.process.kill()
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.conn.close()


class PdfRenderer:
    """The renderer processes of one server process: one per document being read, `keep` kept idle
    for the next documents (a start costs about 0.1 s; bench/RESULTS.md). `memory_mb` is each
    process's address-space limit (OCR_PDF_MEMORY_MB; 0: none)."""

    def __init__(self, memory_mb: int, keep: int = 2) -> None:
        self.memory_mb = memory_mb
        self.keep = keep
        self._idle: list[_Renderer] = []
        self._lock = threading.Lock()

    def _take(self) -> _Renderer:
        with self._lock:
            while self._idle:
                renderer = self._idle.pop()
                if renderer.alive:
                    return renderer
                renderer.kill()
        return _Renderer(self.memory_mb)

    def _give_back(self, renderer: _Renderer) -> None:
        with self._lock:
            if renderer.alive and not renderer.conn.closed and len(self._idle) < self.keep:
                self._idle.append(renderer)
                return
        renderer.kill()

    def open(self, data: bytes, limits: PdfLimits, selection: PageSelection | None = None,
             budget: PdfBudget | None = None) -> "PdfDocument":
        """Check and open `data`; the pages to read are chosen and size-checked here, before any is
        rendered. Close the document (or use it as a context manager) to free its renderer. Pass the
        `budget` of an earlier open of the same bytes to have both share it (a new one otherwise)."""
        check_bytes(data)
        budget = budget if budget is not None else PdfBudget(limits.timeout_s)
        renderer = self._take()
        try:
            info, _ = _timed(budget, renderer, "open", payload=data)
            return PdfDocument(self, renderer, limits, budget, info, selection)
        except BaseException:
            self._release(renderer)
            raise

    def _release(self, renderer: _Renderer) -> None:
        """Close whatever `renderer` has open and keep it for the next document, or kill it."""
        if renderer.alive and not renderer.conn.closed:
            try:
                renderer.call("close", 10.0)
            except DecodeError:
                return  # it was killed
            self._give_back(renderer)
        else:
            renderer.kill()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for renderer in idle:
            renderer.kill()


def _too_slow(page: int | None) -> DecodeError:
    return DecodeError(422, "pdf_too_complex", "the PDF took longer to render than this server allows "
                       "(OCR_PDF_TIMEOUT_S)" + (f"; stopped on page {page}" if page else ""),
                       **({"page": page} if page else {}))


def _timed(budget: PdfBudget, renderer: _Renderer, op: str, page: int | None = None, payload: bytes | None = None,
           **args: Any) -> tuple[dict[str, Any], bytes]:
    """One renderer call within what is left of `budget`, charged with the time it took."""
    if budget.left <= 0:
        raise _too_slow(page)
    start = time.monotonic()
    try:
        return renderer.call(op, budget.left, page, payload, **args)
    finally:
        budget.charge(time.monotonic() - start)


def check_bytes(data: bytes) -> None:
    """What the raw bytes show, before any parser runs."""
    if not data:
        raise DecodeError(400, "empty_image", "the document is empty (0 bytes)")
    if b"%%EOF" not in data[-_EOF_WINDOW:]:
        raise DecodeError(422, "corrupt_pdf", "the PDF is truncated (no %%EOF marker at its end); send the whole file")
    if _JAVASCRIPT.search(data):
        raise DecodeError(422, "pdf_javascript", "the PDF contains JavaScript; this server does not read scripted "
                          "PDFs (print it to a new PDF without scripts, or send page images)")
    if _EMBEDDED.search(data):
        raise DecodeError(422, "pdf_embedded_files", "the PDF has embedded files; this server does not read PDFs "
                          "with attachments (send the document without them)")


@dataclass(frozen=True)
class PdfPage:
    number: int  # 1-based
    width: int  # rendered size in pixels
    height: int
    dpi: float


class PdfDocument:
    """An open, checked PDF and the pages chosen to be read."""

    def __init__(self, owner: PdfRenderer, renderer: _Renderer, limits: PdfLimits, budget: PdfBudget,
                 info: dict[str, Any], selection: PageSelection | None) -> None:
        self._owner, self.limits, self.budget = owner, limits, budget
        self._renderer: _Renderer | None = renderer
        if info["javascript"]:
            raise DecodeError(422, "pdf_javascript", "the PDF contains document-level JavaScript; this server does "
                              "not read scripted PDFs")
        if info["attachments"]:
            raise DecodeError(422, "pdf_embedded_files", "the PDF has embedded files; this server does not read "
                              "PDFs with attachments")
        sizes = info["page_sizes"]
        self.page_count = len(sizes)
        if self.page_count == 0:
            raise DecodeError(422, "empty_document", "the PDF has no pages")
        numbers = selected_pages(selection, self.page_count, limits.max_pages)
        self.pages: tuple[PdfPage, ...] = tuple(self._sized(n, *sizes[n - 1]) for n in numbers)
        self._inspected: dict[int, PageText] = {}

    def _sized(self, number: int, width_pt: float, height_pt: float) -> PdfPage:
        width, height = pixel_size(width_pt, height_pt, self.limits.dpi)
        if width * height > self.limits.max_pixels:
            raise DecodeError(
                413, "image_too_large",
                f"page {number} is {width_pt / 72:.1f} x {height_pt / 72:.1f} inches, {width}x{height} = "
                f"{width * height} pixels at {self.limits.dpi} dpi; the limit is {self.limits.max_pixels} "
                "(OCR_MAX_IMAGE_PIXELS)",
                page=number, width=width, height=height, dpi=self.limits.dpi, max_pixels=self.limits.max_pixels,
            )
        return PdfPage(number, width, height, float(self.limits.dpi))

    def page(self, number: int) -> PdfPage:
        for page in self.pages:
            if page.number == number:
                return page
        raise KeyError(number)

    def _call(self, op: str, page: int, **args: Any) -> tuple[dict[str, Any], bytes]:
        if self._renderer is None:
            raise RuntimeError("the PDF document is closed")
        return _timed(self.budget, self._renderer, op, page, index=page - 1, **args)

    def inspect(self, number: int) -> PageText:
        """Load the page (its content is parsed now) and check what it holds."""
        if number not in self._inspected:
            info, _ = self._call("inspect", number)
            if info.pop("file_attachments"):
                raise DecodeError(422, "pdf_embedded_files", f"page {number} carries file attachments; this server "
                                  "does not read PDFs with attachments", page=number)
            self._inspected[number] = PageText(**info)
        return self._inspected[number]

    def render(self, number: int) -> np.ndarray:
        """Page `number` as a contiguous (H, W, 3) BGR uint8 array on a white background."""
        page = self.page(number)
        self.inspect(number)
        meta, pixels = self._call("render", number, width=page.width, height=page.height)
        rows = np.frombuffer(pixels, dtype=np.uint8).reshape(page.height, meta["stride"])
        return np.ascontiguousarray(rows[:, : page.width * 3].reshape(page.height, page.width, 3))

    def text_lines(self, number: int) -> list[TextLayerLine]:
        """The page's text layer as lines with boxes in the pixels `render` would give."""
        page = self.page(number)
        self.inspect(number)
        data, _ = self._call("text", number, width=page.width, height=page.height)
        return group_lines(data["chars"], data["transform"])

    def use_layer(self, number: int, mode: str) -> bool:
        """Whether page `number` is answered from its text layer under `pdf_text=mode`."""
        if mode not in PDF_TEXT_MODES:
            raise ValueError(f"pdf_text must be one of {PDF_TEXT_MODES}, got {mode!r}")
        return mode == "layer" or (mode == "auto" and prefer_layer(self.inspect(number)))

    @property
    def renderer_pid(self) -> int | None:
        """The renderer process reading this document (None once closed)."""
        return self._renderer.process.pid if self._renderer is not None else None

    def close(self) -> None:
        renderer, self._renderer = self._renderer, None
        if renderer is not None:
            self._owner._release(renderer)

    def __enter__(self) -> "PdfDocument":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
