"""PDF files written byte by byte, so that a test states exactly what a document holds.

Real clients send PDFs from many producers; the awkward ones (encrypted, truncated, scripted, with
attachments, declaring absurd pages) are easiest to make precisely by hand. `PdfWriter` lays out
numbered objects and a cross-reference table; the builders below make the documents the tests and
benches need. Text uses the standard Helvetica font (every PDF reader has it, nothing is embedded).
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from dataclasses import dataclass, field

from PIL import Image


def _escape(text: str) -> bytes:
    """A PDF literal string's body: Latin-1, with the three special characters escaped."""
    return text.encode("latin-1").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


@dataclass
class PdfWriter:
    """Objects by number (1-based), serialised with a valid xref table and trailer."""

    objects: list[bytes] = field(default_factory=list)
    streams: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # number -> (dictionary, data)

    def reserve(self) -> int:
        self.objects.append(b"null")
        return len(self.objects)

    def set(self, number: int, body: bytes) -> int:
        self.objects[number - 1] = body
        return number

    def add(self, body: bytes) -> int:
        return self.set(self.reserve(), body)

    def stream(self, dictionary: bytes, data: bytes) -> int:
        number = self.add(_stream_body(dictionary, data))
        self.streams[number] = (dictionary, data)
        return number

    def build(self, root: int, trailer_extra: bytes = b"", file_key: bytes | None = None) -> bytes:
        """The file; with `file_key` every stream is RC4-encrypted as the standard security handler
        (revision 2) does it (the caller adds the /Encrypt dictionary and /ID to the trailer)."""
        out = io.BytesIO()
        out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for number, body in enumerate(self.objects, start=1):
            if file_key is not None and number in self.streams:
                dictionary, data = self.streams[number]
                object_key = hashlib.md5(file_key + struct.pack("<I", number)[:3] + b"\0\0").digest()[:10]
                body = _stream_body(dictionary, _rc4(object_key, data))
            offsets.append(out.tell())
            out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
        xref = out.tell()
        out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(self.objects) + 1))
        for offset in offsets:
            out.write(b"%010d 00000 n \n" % offset)
        out.write(b"trailer\n<< /Size %d /Root %d 0 R " % (len(self.objects) + 1, root) + trailer_extra
                  + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref)
        return out.getvalue()


def _stream_body(dictionary: bytes, data: bytes) -> bytes:
    return b"<< " + dictionary + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def _rc4(key: bytes, data: bytes) -> bytes:
    state = list(range(256))
    j = 0
    for i in range(256):
        j = (j + state[i] + key[i % len(key)]) % 256
        state[i], state[j] = state[j], state[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + state[i]) % 256
        state[i], state[j] = state[j], state[i]
        out.append(byte ^ state[(state[i] + state[j]) % 256])
    return bytes(out)


# The standard security handler's password padding (PDF 32000-1, 7.6.3.3).
_PAD = bytes.fromhex("28bf4e5e4e758a4164004e56fffa01082e2e00b6d0683e802f0ca9fe6453697a")


@dataclass(frozen=True)
class TextRun:
    """Text at (x, y) in points from the page's bottom-left corner."""

    text: str
    x: float
    y: float
    size: float = 10.0
    invisible: bool = False  # render mode 3, what scanners' OCR layers use


@dataclass(frozen=True)
class PageSpec:
    width: float = 612.0  # points (1/72 inch); US Letter by default
    height: float = 792.0
    runs: tuple[TextRun, ...] = ()
    jpeg: bytes | None = None  # a JPEG drawn over the whole page, under the text
    jpeg_size: tuple[int, int] = (0, 0)  # its pixel size
    rotate: int = 0
    extra_content: bytes = b""  # raw content-stream operators appended after the text


def _content(page: PageSpec) -> bytes:
    parts = []
    if page.jpeg is not None:
        parts.append(b"q %.3f 0 0 %.3f 0 0 cm /Im0 Do Q" % (page.width, page.height))
    for run in page.runs:
        parts.append(b"BT /F1 %.2f Tf %d Tr %.2f %.2f Td (" % (run.size, 3 if run.invisible else 0, run.x, run.y)
                     + _escape(run.text) + b") Tj ET")
    parts.append(page.extra_content)
    return b"\n".join(parts)


def build_pdf(pages: list[PageSpec], *, catalog_extra: bytes = b"", trailer_extra: bytes = b"",
              compress: bool = True, extra_objects: list[bytes] | None = None, page_extra: bytes = b"",
              user_password: bytes | None = None) -> bytes:
    """A PDF of `pages`. `extra_objects` are added after the catalog as objects 2, 3, ... so that
    `catalog_extra` (or `page_extra`, added to every page dictionary) can refer to them (e.g. a
    JavaScript action as `2 0 R`). With `user_password` the file is encrypted (RC4, 40-bit, revision 2;
    an empty password opens it without asking, as a permissions-only PDF)."""
    writer = PdfWriter()
    catalog = writer.reserve()
    for body in extra_objects or []:
        writer.add(body)
    tree = writer.reserve()
    font = writer.add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    kids = []
    for page in pages:
        resources = b"/Font << /F1 %d 0 R >>" % font
        if page.jpeg is not None:
            w, h = page.jpeg_size
            image = writer.stream(b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
                                  b"/BitsPerComponent 8 /Filter /DCTDecode" % (w, h), page.jpeg)
            resources += b" /XObject << /Im0 %d 0 R >>" % image
        data = _content(page)
        content = (writer.stream(b"/Filter /FlateDecode", zlib.compress(data)) if compress
                   else writer.stream(b"", data))
        kids.append(writer.add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %.3f %.3f] /Rotate %d "
                               b"/Resources << %s >> /Contents %d 0 R %s >>"
                               % (tree, page.width, page.height, page.rotate, resources, content, page_extra)))
    writer.set(tree, b"<< /Type /Pages /Kids [%s] /Count %d >>"
               % (b" ".join(b"%d 0 R" % kid for kid in kids), len(kids)))
    writer.set(catalog, b"<< /Type /Catalog /Pages %d 0 R %s >>" % (tree, catalog_extra))
    if user_password is None:
        return writer.build(catalog, trailer_extra)
    file_id = hashlib.md5(b"ocr-server test document").digest()
    padded_user = (user_password + _PAD)[:32]
    owner = _rc4(hashlib.md5((b"owner" + _PAD)[:32]).digest()[:5], padded_user)
    permissions = -44  # print and copy allowed, modify not: a typical permissions-only PDF
    file_key = hashlib.md5(padded_user + owner + struct.pack("<i", permissions) + file_id).digest()[:5]
    encrypt = writer.add(b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P %d >>"
                         % (owner.hex().encode(), _rc4(file_key, _PAD).hex().encode(), permissions))
    return writer.build(catalog, trailer_extra + b" /Encrypt %d 0 R /ID [<%s> <%s>]"
                        % (encrypt, file_id.hex().encode(), file_id.hex().encode()), file_key)


def text_page(lines: list[str], *, size: float = 12.0, width: float = 612.0, height: float = 792.0,
              margin: float = 54.0, invisible: bool = False) -> PageSpec:
    """One line of text per entry, top to bottom from the top margin."""
    runs = tuple(TextRun(line, margin, height - margin - size - i * size * 1.6, size, invisible)
                 for i, line in enumerate(lines))
    return PageSpec(width, height, runs)


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def image_page(jpeg: bytes, pixel_size: tuple[int, int], dpi: float, runs: tuple[TextRun, ...] = ()) -> PageSpec:
    """A scanned page: the JPEG's own bytes (no re-encoding) filling a page of its size at `dpi`."""
    w, h = pixel_size
    return PageSpec(w * 72.0 / dpi, h * 72.0 / dpi, runs, jpeg=jpeg, jpeg_size=pixel_size)


@dataclass(frozen=True)
class PlacedText:
    """Text for `typeset`: `x` is the anchor in points from the left, `align` left/right/center about it;
    `top` is the distance in points from the top of the page to the text's baseline."""

    text: str
    x: float
    top: float
    size: float
    align: str = "left"
    bold: bool = False


def typeset(pages: list[tuple[float, float, list[PlacedText]]]) -> bytes:
    """A born-digital PDF written by pdfium itself (Helvetica, its own metrics for alignment): what an
    invoicing system or a till's "e-receipt" produces. `pages` are (width, height, texts) in points."""
    import ctypes

    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    document = pdfium.PdfDocument.new()
    for width, height, texts in pages:
        page = document.new_page(width, height)
        for item in texts:
            font = b"Helvetica-Bold" if item.bold else b"Helvetica"
            obj = raw.FPDFPageObj_NewTextObj(document.raw, font, ctypes.c_float(item.size))
            encoded = (item.text + "\0").encode("utf-16-le")
            raw.FPDFText_SetText(obj, ctypes.cast(ctypes.create_string_buffer(encoded, len(encoded)),
                                                  ctypes.POINTER(raw.FPDF_WCHAR)))
            left, bottom, right, top = (ctypes.c_float() for _ in range(4))
            raw.FPDFPageObj_GetBounds(obj, ctypes.byref(left), ctypes.byref(bottom), ctypes.byref(right), ctypes.byref(top))
            text_width = right.value - left.value
            x = {"left": item.x, "right": item.x - text_width, "center": item.x - text_width / 2}[item.align]
            raw.FPDFPageObj_Transform(obj, 1, 0, 0, 1, x, height - item.top)
            raw.FPDFPage_InsertObject(page.raw, obj)
        page.gen_content()
        page.close()
    buffer = io.BytesIO()
    document.save(buffer)
    document.close()
    return buffer.getvalue()


# -- documents a server must refuse, each the smallest file that shows one problem ------------------------


def encrypted_pdf() -> bytes:
    """Needs a password to open (RC4, revision 2)."""
    return build_pdf([text_page(["SECRET"])], user_password=b"hunter2")


def corrupt_pdf() -> bytes:
    """A PDF header and end marker around bytes that are no PDF at all."""
    noise = hashlib.sha256(b"corrupt").digest() * 125  # 4000 bytes, the same every time
    return b"%PDF-1.7\n" + noise + b"\n%%EOF\n"


def truncated_pdf(keep: float = 0.6) -> bytes:
    """An upload cut short: the first `keep` of a three-page document."""
    data = build_pdf([text_page(["TRUNCATED UPLOAD"]) for _ in range(3)])
    return data[: int(len(data) * keep)]


def zero_page_pdf() -> bytes:
    return build_pdf([])


def page_count_bomb(pages: int = 5000) -> bytes:
    """`pages` empty pages in a few hundred KB."""
    writer = PdfWriter()
    catalog, tree = writer.reserve(), writer.reserve()
    kids = [writer.add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] >>" % tree) for _ in range(pages)]
    writer.set(tree, b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), pages))
    writer.set(catalog, b"<< /Type /Catalog /Pages %d 0 R >>" % tree)
    return writer.build(catalog)


def page_size_bomb() -> bytes:
    """An A4-sized text page, then a 200 x 200 inch page (the largest the format allows)."""
    return build_pdf([text_page(["A4 FIRST"]), PageSpec(width=14400, height=14400)])


def javascript_pdf() -> bytes:
    """A script run when the document opens."""
    return build_pdf([text_page(["HELLO"])], catalog_extra=b"/OpenAction 2 0 R",
                     extra_objects=[b"<< /S /JavaScript /JS (app.alert\\('hi'\\)) >>"])


def embedded_file_pdf() -> bytes:
    """An attachment in the document's EmbeddedFiles name tree (as ZUGFeRD invoices carry their XML)."""
    spec = b"<< /Type /Filespec /F (invoice.xml) /EF << /F 4 0 R >> >>"
    return build_pdf([text_page(["HELLO"])], catalog_extra=b"/Names << /EmbeddedFiles 2 0 R >>",
                     extra_objects=[b"<< /Names [(invoice.xml) 3 0 R] >>", spec,
                                    b"<< /Type /EmbeddedFile /Length 5 >>\nstream\n<x/>\n\nendstream"])


def slow_page_pdf(fills: int = 100_000) -> bytes:
    """`fills` full-page rectangle fills: a few KB compressed, minutes of rendering."""
    return build_pdf([PageSpec(extra_content=b"0 0 612 792 re f\n" * fills)])
