"""The PDF renderer process: pdfium runs here, never in a server worker.

Why a process of its own (bench/RESULTS.md, "PDF rendering bound"): pdfium's page load parses the whole
content stream in one uninterruptible call whose time and memory grow with the number of operators,
and a 25 KB compressed stream can hold a million of them (1.3 s and 364 MB measured); a 20 MB upload
can hold hundreds of times that. Rendering is linear in objects too (2,000 full-page fills in a 745-byte
file took 3.6 s). Nothing inside the server worker could stop that, and pdfium is not thread-safe
either. Here the parent enforces a wall-clock budget by killing this process, the address-space limit
turns a memory bomb into a failed allocation instead of the host's OOM killer, and a pdfium crash costs
this process, not a worker.

Protocol, over the socket given as fd `argv[1]` (`multiprocessing.connection` framing): the parent
sends a JSON request, plus one binary message when the request says `"payload": true`; this process
answers with a JSON reply (`{"ok": ...}` or `{"error": code, "message": ...}`), plus one binary message
when the reply says `"payload": true`. Only JSON and raw pixels cross: nothing is unpickled. Imports
are kept to pypdfium2 and the standard library so the process starts in about a tenth of a second.
"""

from __future__ import annotations

import ctypes
import json
import resource
import signal
import sys
import unicodedata
from multiprocessing.connection import Connection
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as raw

_PR_SET_PDEATHSIG = 1
_REAL_CATEGORIES = ("L", "N", "P", "S")  # letters, digits, punctuation, symbols: text a reader sees


class Refusal(Exception):
    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


def _is_real(char: str) -> bool:
    """A character a font really maps to Unicode: not a control code, private-use or replacement
    character (what pdfium reports for glyphs of a font without a usable ToUnicode map)."""
    if not char or char == "\ufffd":
        return False
    category = unicodedata.category(char)
    return category[0] in _REAL_CATEGORIES and category != "Co"


class Session:
    """One open document and its most recently loaded page."""

    def __init__(self) -> None:
        self.document: pdfium.PdfDocument | None = None
        self.page_index = -1
        self.page: pdfium.PdfPage | None = None
        self.textpage: pdfium.PdfTextPage | None = None
        self.retire = False

    def close(self) -> None:
        if self.textpage is not None:
            self.textpage.close()
        if self.page is not None:
            self.page.close()
        if self.document is not None:
            self.document.close()
        self.document, self.page_index, self.page, self.textpage = None, -1, None, None

    # -- requests ---------------------------------------------------------------------------------

    def open(self, data: bytes) -> dict[str, Any]:
        self.close()
        try:
            self.document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            # pdfium's last error is never cleared, and some failures (an empty page tree) set none:
            # past a failed open this process cannot tell the next failure's cause, so it retires.
            self.retire = True
            code = getattr(exc, "err_code", None)
            if code == raw.FPDF_ERR_PASSWORD:
                raise Refusal("encrypted_pdf", "the PDF is encrypted and needs a password to open") from None
            if code == raw.FPDF_ERR_SUCCESS:  # what pdfium reports for a document whose page tree is empty
                raise Refusal("empty_document", "the PDF has no pages (or no page tree that can be read)") from None
            if code == raw.FPDF_ERR_SECURITY:
                raise Refusal("encrypted_pdf", "the PDF uses an encryption this server cannot open") from None
            raise Refusal("corrupt_pdf", f"the PDF cannot be parsed ({exc})") from None
        doc = self.document.raw
        sizes = []
        for index in range(len(self.document)):
            size = raw.FS_SIZEF()
            if not raw.FPDF_GetPageSizeByIndexF(doc, index, ctypes.byref(size)):
                raise Refusal("corrupt_pdf", f"page {index + 1} has no readable size", page=index + 1)
            sizes.append((size.width, size.height))
        return {
            "page_sizes": sizes,  # points, as displayed (after the page's /Rotate)
            "javascript": raw.FPDFDoc_GetJavaScriptActionCount(doc),
            "attachments": raw.FPDFDoc_GetAttachmentCount(doc),
            "security_revision": raw.FPDF_GetSecurityHandlerRevision(doc),
        }

    def _load(self, index: int) -> pdfium.PdfPage:
        if self.document is None:
            raise Refusal("internal", "no document is open")
        if index != self.page_index:
            if self.textpage is not None:
                self.textpage.close()
                self.textpage = None
            if self.page is not None:
                self.page.close()
                self.page = None
            try:
                self.page = self.document[index]
            except pdfium.PdfiumError as exc:
                raise Refusal("corrupt_pdf", f"page {index + 1} cannot be loaded ({exc})", page=index + 1) from None
            self.page_index = index
        assert self.page is not None
        return self.page

    def _text_page(self, index: int) -> pdfium.PdfTextPage:
        page = self._load(index)
        if self.textpage is None:
            self.textpage = page.get_textpage()
        return self.textpage

    def inspect(self, index: int) -> dict[str, Any]:
        """What the `pdf_text=auto` rule and the content checks need to know about a page."""
        page = self._load(index)
        width, height = page.get_size()
        page_area = max(1e-6, width * height)
        image_area, best_dpi = 0.0, 0.0
        for obj in page.get_objects(filter=(raw.FPDF_PAGEOBJ_IMAGE,), max_depth=4):
            left, bottom, right, top = obj.get_bounds()
            w_px, h_px = obj.get_px_size()
            shown_w, shown_h = max(1e-6, right - left), max(1e-6, top - bottom)
            area = shown_w * shown_h
            image_area += area
            if area >= 0.5 * page_area and w_px and h_px:  # a page-filling image (a scan): note its resolution
                best_dpi = max(best_dpi, min(w_px / shown_w, h_px / shown_h) * 72.0)
        attachments = 0
        for k in range(raw.FPDFPage_GetAnnotCount(page.raw)):
            annot = raw.FPDFPage_GetAnnot(page.raw, k)
            if annot:
                attachments += raw.FPDFAnnot_GetSubtype(annot) == raw.FPDF_ANNOT_FILEATTACHMENT
                raw.FPDFPage_CloseAnnot(annot)
        chars = real = visible_real = 0
        text = self._text_page(index)
        last_object = None
        invisible = False
        for k in range(text.count_chars()):
            if raw.FPDFText_IsGenerated(text.raw, k) == 1:
                continue
            char = chr(raw.FPDFText_GetUnicode(text.raw, k))
            if char.isspace():
                continue
            chars += 1
            if not _is_real(char):
                continue
            real += 1
            obj = raw.FPDFText_GetTextObject(text.raw, k)
            if obj != last_object:
                last_object = obj
                invisible = bool(obj) and raw.FPDFTextObj_GetTextRenderMode(obj) == raw.FPDF_TEXTRENDERMODE_INVISIBLE
            visible_real += not invisible
        return {
            "chars": chars, "real_chars": real, "visible_real_chars": visible_real,
            "image_coverage": min(1.0, image_area / page_area), "scan_dpi": best_dpi,
            "file_attachments": attachments,
        }

    def _device_transform(self, page: pdfium.PdfPage, width: int, height: int) -> tuple[float, ...]:
        """Page space -> bitmap pixels for a `width` x `height` rendering, as pdfium maps it (crop box,
        /Rotate and the y flip included), read off three mapped points."""
        def to_device(x: float, y: float) -> tuple[int, int]:
            dx, dy = ctypes.c_int(), ctypes.c_int()
            raw.FPDF_PageToDevice(page.raw, 0, 0, width * 16, height * 16, 0, x, y, ctypes.byref(dx), ctypes.byref(dy))
            return dx.value, dy.value
        # Mapped onto a 16x larger bitmap so that pdfium's integer rounding costs 1/16 px here.
        ox, oy = to_device(0.0, 0.0)
        ax, ay = to_device(1000.0, 0.0)
        bx, by = to_device(0.0, 1000.0)
        return ((ax - ox) / 16000, (bx - ox) / 16000, ox / 16, (ay - oy) / 16000, (by - oy) / 16000, oy / 16)

    def text(self, index: int, width: int, height: int) -> dict[str, Any]:
        """Every character of the page's text layer: [char, x0, y0, x1, y1, flags] with its box in page
        space (points, y up, before /Rotate), flags bit 0 = generated by pdfium (a space or line break
        it inferred), bit 1 = invisible (render mode 3, a scanner's OCR layer); and the transform from
        page space to the pixels of a `width` x `height` rendering."""
        page = self._load(index)
        transform = self._device_transform(page, width, height)
        text = self._text_page(index)
        out = []
        left, right, bottom, top = ctypes.c_double(), ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
        rect = raw.FS_RECTF()
        last_object, invisible = None, False
        for k in range(text.count_chars()):
            char = chr(raw.FPDFText_GetUnicode(text.raw, k))
            generated = raw.FPDFText_IsGenerated(text.raw, k) == 1
            if generated or char.isspace():
                out.append([char, 0, 0, 0, 0, 1 if generated else 0])
                continue
            if raw.FPDFText_GetLooseCharBox(text.raw, k, ctypes.byref(rect)):
                box = [rect.left, rect.bottom, rect.right, rect.top]
            elif raw.FPDFText_GetCharBox(text.raw, k, ctypes.byref(left), ctypes.byref(right),
                                         ctypes.byref(bottom), ctypes.byref(top)):
                box = [left.value, bottom.value, right.value, top.value]
            else:
                continue
            obj = raw.FPDFText_GetTextObject(text.raw, k)
            if obj != last_object:
                last_object = obj
                invisible = bool(obj) and raw.FPDFTextObj_GetTextRenderMode(obj) == raw.FPDF_TEXTRENDERMODE_INVISIBLE
            out.append([char, *(round(v, 3) for v in box), 2 if invisible else 0])
        return {"chars": out, "transform": transform}

    def render(self, index: int, width: int, height: int) -> tuple[dict[str, Any], bytes]:
        """The page as BGR pixels on white, annotations (stamps, filled form fields) included."""
        page = self._load(index)
        bitmap = raw.FPDFBitmap_CreateEx(width, height, raw.FPDFBitmap_BGR, None, 0)
        if not bitmap:
            raise Refusal("pdf_too_complex", f"no memory for a {width}x{height} bitmap", page=index + 1)
        try:
            raw.FPDFBitmap_FillRect(bitmap, 0, 0, width, height, 0xFFFFFFFF)
            raw.FPDF_RenderPageBitmap(bitmap, page.raw, 0, 0, width, height, 0, raw.FPDF_ANNOT)
            stride = raw.FPDFBitmap_GetStride(bitmap)
            pixels = ctypes.string_at(raw.FPDFBitmap_GetBuffer(bitmap), stride * height)
        finally:
            raw.FPDFBitmap_Destroy(bitmap)
        return {"stride": stride}, pixels


def _serve(conn: Connection) -> None:
    session = Session()
    while True:
        try:
            request = json.loads(conn.recv_bytes())
            payload = conn.recv_bytes() if request.get("payload") else b""
        except EOFError:
            return
        op, args = request["op"], request.get("args", {})
        blob = b""
        try:
            if op == "open":
                reply: dict[str, Any] = {"ok": session.open(payload)}
            elif op == "inspect":
                reply = {"ok": session.inspect(**args)}
            elif op == "text":
                reply = {"ok": session.text(**args)}
            elif op == "render":
                meta, blob = session.render(**args)
                reply = {"ok": meta, "payload": True}
            elif op == "close":
                session.close()
                reply = {"ok": {}}
            else:
                reply = {"error": "internal", "message": f"unknown op {op!r}"}
        except Refusal as exc:
            reply = {"error": exc.code, "message": exc.message, "details": exc.details}
        except MemoryError:
            session.close()
            reply = {"error": "pdf_too_complex", "message": "the page needs more memory than the PDF renderer may use "
                     "(OCR_PDF_MEMORY_MB)"}
        except pdfium.PdfiumError as exc:
            reply = {"error": "corrupt_pdf", "message": f"pdfium cannot read the PDF: {exc}"}
        except Exception as exc:  # a bug of ours: the parent reports it as one (500), not as bad input
            reply = {"error": "internal", "message": f"{type(exc).__name__}: {exc}"}
        if session.retire:
            reply["retire"] = True
        conn.send_bytes(json.dumps(reply).encode())
        if reply.get("payload"):
            conn.send_bytes(blob)
        if session.retire:
            return


def main(argv: list[str]) -> int:
    fd, memory_mb = int(argv[1]), int(argv[2])
    try:  # Linux: die with the server worker that started us, even mid-render
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (AttributeError, OSError):
        pass
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn = Connection(fd)
    conn.send_bytes(b"ready")
    _serve(conn)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
