"""The default golden set: synthetic receipts and invoices with known text, rendered with Pillow.

Why synthetic, and why generated at install time rather than committed as images:
- The users' documents are receipts and invoices; real ones carry personal and commercial data that
  cannot ship with an open-source server (the SROIE receipts are for benchmarks only).
- The generator is the reviewable source of the set: its text is made here, so the expected text is
  exact by construction, and a reviewer reads Python, not binary blobs. Given the pinned Pillow (which
  bundles its own FreeType and font) and OpenCV, the same seed gives the same bytes (tested), and the
  gate compares a candidate with the live version on the same images, so a rendering drift between
  library versions could not make one version look better than another anyway.

What makes it a useful gate rather than a test every model passes: clean black-on-white text is read
perfectly by every PP-OCR generation, so the documents carry what real scans and photos carry and what
separates the generations: small print, faded thermal paper with worn print-head lines, low capture
resolution, JPEG compression, blur, slight skew, uneven lighting, and the receipt vocabulary (amounts, dates, times, invoice and
registration numbers, item lines with prices aligned right).
"""

from __future__ import annotations

import io
import math
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEFAULT_SEED = 2026
DOCUMENTS = 12

_COMPANIES = (
    "KEDAI RUNCIT AH SENG", "MEGAMART HYPERSTORE SDN BHD", "RESTORAN NASI KANDAR PELITA BARU",
    "SYARIKAT PERNIAGAAN LIM & SONS", "GREENLEAF GROCERS LTD", "NORTHWIND TRADING CO.",
    "BLUE HARBOUR CAFE", "ACME OFFICE SUPPLIES INC.", "TOKO BANGUNAN MAJU JAYA", "SUNRISE PHARMACY",
    "KOPITIAM SRI MELAKA", "HARDWARE CENTRE (M) SDN BHD", "CITY FUEL STATION 0417", "PAPER & INK STATIONERS",
)
_STREETS = ("JALAN SAGU 18", "JLN PERDANA 3/2", "NO. 12, MAIN STREET", "LOT 7, JALAN INDUSTRI 5",
            "45 HARBOUR ROAD", "UNIT 3-1, PLAZA DAMAS", "88 KING'S AVENUE", "NO.53 & 55, JALAN MERANTI")
_TOWNS = ("81100 JOHOR BAHRU, JOHOR", "47301 PETALING JAYA", "SINGAPORE 238801", "LONDON EC1A 4JQ",
          "50450 KUALA LUMPUR", "10200 PENANG", "SPRINGFIELD, IL 62704", "43000 KAJANG, SELANGOR")
_ITEMS = (
    ("MILO ICED", 2.5, 6.0), ("TEH TARIK", 1.8, 4.5), ("NASI LEMAK AYAM", 6.0, 12.0), ("ROTI CANAI", 1.2, 3.0),
    ("MINERAL WATER 1.5L", 1.0, 3.5), ("COFFEE BEANS 250G", 18.0, 45.0), ("A4 PAPER 80GSM 500S", 11.9, 24.9),
    ("BALL PEN BLUE 0.7MM", 0.9, 3.2), ("STAPLER NO.10", 6.5, 15.0), ("USB CABLE TYPE-C 1M", 9.9, 29.9),
    ("CHICKEN RICE", 5.5, 9.9), ("FRIED KUEY TEOW", 6.0, 11.0), ("PVC PIPE 20MM X 3M", 7.2, 19.5),
    ("WALL PLUG 6MM (50)", 2.4, 6.8), ("PANADOL ACTIVE 20S", 8.9, 14.5), ("VITAMIN C 1000MG", 19.9, 59.0),
    ("UNLEADED RON95", 40.0, 120.0), ("ENVELOPE DL WHITE", 3.5, 8.0), ("ICED LEMON TEA", 2.8, 5.5),
    ("CLEAR FILE F4 (12)", 4.2, 9.9), ("SANDWICH TUNA", 4.5, 8.9), ("CAPPUCCINO LARGE", 9.0, 15.0),
)
_THANKS = ("THANK YOU & PLEASE COME AGAIN", "GOODS SOLD ARE NOT RETURNABLE", "THANK YOU FOR SHOPPING WITH US",
           "PLEASE KEEP THIS RECEIPT", "*** THANK YOU ***", "HAVE A NICE DAY!")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True)
class Cell:
    text: str
    x: float  # anchor as a fraction of the printable width
    align: str = "left"  # "left", "right" or "center" about the anchor


@dataclass(frozen=True)
class Row:
    cells: tuple[Cell, ...]
    scale: float = 1.0
    bold: bool = False

    @property
    def text(self) -> str:
        return " ".join(cell.text for cell in sorted(self.cells, key=lambda c: c.x))


def _left(text: str, scale: float = 1.0, bold: bool = False) -> Row:
    return Row((Cell(text, 0.0),), scale, bold)


def _center(text: str, scale: float = 1.0, bold: bool = False) -> Row:
    return Row((Cell(text, 0.5, "center"),), scale, bold)


def _pair(left: str, right: str, bold: bool = False) -> Row:
    return Row((Cell(left, 0.0), Cell(right, 1.0, "right")), 1.0, bold)


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _day(rng: random.Random) -> str:
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(2017, 2026)
    return rng.choice((f"{day:02d}/{month:02d}/{year}", f"{day:02d} {_MONTHS[month - 1]} {year}"))


def _date(rng: random.Random) -> str:
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(2017, 2026)
    hour, minute, second = rng.randint(7, 22), rng.randint(0, 59), rng.randint(0, 59)
    return rng.choice((
        f"{day:02d}/{month:02d}/{year} {hour:02d}:{minute:02d}",
        f"{year}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}",
        f"{day:02d} {_MONTHS[month - 1]} {year}",
        f"{day:02d}-{month:02d}-{year} {hour % 12 or 12:02d}:{minute:02d} {'PM' if hour >= 12 else 'AM'}",
    ))


def _header(rng: random.Random) -> list[Row]:
    company = rng.choice(_COMPANIES)
    rows = [_center(company, 1.25, bold=True)]
    if rng.random() < 0.7:
        rows.append(_center(f"CO. REG: {rng.randint(100000, 999999)}-{rng.choice('ADHKPTUVWX')}"))
    rows.append(_center(rng.choice(_STREETS) + ","))
    rows.append(_center(rng.choice(_TOWNS)))
    rows.append(_center(f"TEL: 0{rng.randint(3, 9)}-{rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"))
    if rng.random() < 0.6:
        rows.append(_center(f"GST ID: {rng.randint(10**11, 10**12 - 1):012d}"))
    return rows


def receipt_rows(rng: random.Random) -> list[Row]:
    """A till receipt: header, document numbers, item lines with right-aligned prices, totals."""
    rows = _header(rng)
    rows.append(_center(rng.choice(("TAX INVOICE", "SIMPLIFIED TAX INVOICE", "RECEIPT", "CASH BILL")), bold=True))
    rows.append(_pair(f"INV NO: {rng.choice(('CS', 'OR', 'INV'))}{rng.randint(10**7, 10**8 - 1)}",
                      f"CASHIER: {rng.randint(1, 40):02d}"))
    rows.append(_left(f"DATE: {_date(rng)}"))
    rows.append(_pair("ITEM", "AMOUNT (RM)"))
    subtotal = 0.0
    for name, low, high in rng.sample(_ITEMS, rng.randint(4, 8)):
        qty = rng.choice((1, 1, 1, 2, 3))
        price = round(rng.uniform(low, high), 2)
        amount = round(qty * price, 2)
        subtotal += amount
        if qty > 1:
            rows.append(_left(name))
            rows.append(_pair(f"  {qty} X {_money(price)}", _money(amount)))
        else:
            rows.append(_pair(name, _money(amount)))
    tax = round(subtotal * 0.06, 2)
    total = subtotal + tax
    rounded = round(total * 20) / 20
    cash = math.ceil(rounded / 10) * 10
    rows += [
        _pair("SUBTOTAL", _money(subtotal)),
        _pair("GST @6%", _money(tax)),
        _pair("ROUNDING ADJ", f"{rounded - total:+.2f}"),
        _pair("TOTAL", _money(rounded), bold=True),
        _pair("CASH", _money(cash)),
        _pair("CHANGE", _money(cash - rounded)),
        _center(rng.choice(_THANKS)),
    ]
    return rows


def invoice_rows(rng: random.Random) -> list[Row]:
    """A supplier invoice: header, bill-to block, a four-column item table, totals and payment terms."""
    rows = _header(rng)
    rows.append(_center("INVOICE", 1.3, bold=True))
    rows.append(Row((Cell(f"INVOICE NO: INV-{rng.randint(2017, 2026)}-{rng.randint(1, 9999):04d}", 0.0),
                     Cell(f"DATE: {_date(rng)}", 1.0, "right"))))
    rows.append(Row((Cell(f"BILL TO: {rng.choice(_COMPANIES)}", 0.0),)))
    rows.append(Row((Cell(f"P.O. NO: PO{rng.randint(10**5, 10**6 - 1)}", 0.0),
                     Cell(f"TERMS: {rng.choice((7, 14, 30, 60))} DAYS", 1.0, "right"))))
    rows.append(Row((Cell("QTY", 0.0), Cell("DESCRIPTION", 0.1), Cell("UNIT PRICE", 0.8, "right"),
                     Cell("AMOUNT", 1.0, "right")), bold=True))
    subtotal = 0.0
    for name, low, high in rng.sample(_ITEMS, rng.randint(5, 9)):
        qty = rng.randint(1, 24)
        price = round(rng.uniform(low, high), 2)
        amount = round(qty * price, 2)
        subtotal += amount
        rows.append(Row((Cell(str(qty), 0.0), Cell(name, 0.1), Cell(_money(price), 0.8, "right"),
                         Cell(_money(amount), 1.0, "right"))))
    tax = round(subtotal * 0.08, 2)
    rows += [
        Row((Cell("SUBTOTAL", 0.55), Cell(_money(subtotal), 1.0, "right"))),
        Row((Cell("SST 8%", 0.55), Cell(_money(tax), 1.0, "right"))),
        Row((Cell("TOTAL DUE", 0.55), Cell(_money(subtotal + tax), 1.0, "right")), bold=True),
        _left(f"PAYMENT DUE BY {_day(rng)}"),
        _left(f"BANK: MAYBANK A/C {rng.randint(10**11, 10**12 - 1)}"),
    ]
    return rows


@dataclass(frozen=True)
class Style:
    """How one document is printed and captured."""

    width: int  # page width in pixels
    font_px: int  # body text size
    ink: int  # grey level of the ink, 0 black
    paper: int  # grey level of the paper
    streaks: int  # worn thermal print-head elements: thin vertical lines where the ink is weak
    blur: float  # Gaussian sigma of the optics, pixels
    jpeg_quality: int
    resolution: float  # capture scale: below 1 the page is photographed or scanned at a lower DPI
    skew_deg: float
    shade: float  # strength of uneven lighting across the page, 0..1
    noise: float  # sensor noise, grey levels


def _style(rng: random.Random, kind: str) -> Style:
    return Style(
        width=rng.randint(440, 560) if kind == "receipt" else rng.randint(820, 980),
        font_px=rng.choice((15, 16, 17, 18, 20)),
        ink=rng.randint(20, 90),
        paper=rng.randint(215, 245),
        streaks=rng.choice((0, 0, 2, 4, 7)),
        blur=rng.uniform(0.4, 1.0),
        jpeg_quality=rng.randint(35, 70),
        resolution=rng.choice((1.0, 0.85, 0.75, 0.65)),
        skew_deg=rng.uniform(-0.6, 0.6),
        shade=rng.uniform(0.1, 0.35),
        noise=rng.uniform(2.0, 7.0),
    )


def render(rows: list[Row], style: Style, rng: random.Random) -> np.ndarray:
    """Print `rows` on a page and capture it (BGR uint8)."""
    margin = 24
    line_px = int(style.font_px * 1.75)
    height = margin * 2 + sum(int(line_px * r.scale) for r in rows)
    ink = Image.new("L", (style.width, height), 0)
    draw = ImageDraw.Draw(ink)
    fonts: dict[int, ImageFont.FreeTypeFont] = {}
    y = margin
    printable = style.width - 2 * margin
    for row in rows:
        size = int(round(style.font_px * row.scale))
        font = fonts.setdefault(size, ImageFont.load_default(size=size))
        for cell in row.cells:
            width = font.getlength(cell.text)
            anchor = margin + cell.x * printable
            x = {"left": anchor, "right": anchor - width, "center": anchor - width / 2}[cell.align]
            draw.text((max(margin, x), y), cell.text, fill=255, font=font, stroke_width=1 if row.bold else 0,
                      stroke_fill=255)
        y += int(line_px * row.scale)
    np_rng = np.random.default_rng(rng.randrange(2**32))
    # Faded thermal print: the ink's strength varies slowly along the page, and a worn print-head
    # element leaves a thin vertical line where it barely prints.
    fade = 0.85 + 0.15 * np.sin(np.linspace(0, rng.uniform(2, 6), height) + rng.uniform(0, 6))[:, None]
    strength = np.asarray(ink, dtype=np.float32) / 255.0 * fade
    for _ in range(style.streaks):
        x = rng.randrange(margin, style.width - margin)
        strength[:, x : x + rng.choice((1, 1, 2))] *= rng.uniform(0.15, 0.5)
    page = style.paper - strength * (style.paper - style.ink)
    # Uneven lighting: a linear gradient in a random direction.
    yy, xx = np.mgrid[0:height, 0:style.width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (xx * math.cos(angle) + yy * math.sin(angle)) / max(height, style.width)
    page *= 1.0 - style.shade * (ramp - ramp.min())
    page = cv2.GaussianBlur(page, (0, 0), style.blur)
    page += np_rng.normal(0.0, style.noise, page.shape).astype(np.float32)
    page = np.clip(page, 0, 255).astype(np.uint8)
    rotation = cv2.getRotationMatrix2D((style.width / 2, height / 2), style.skew_deg, style.resolution)
    size = (int(style.width * style.resolution), int(height * style.resolution))
    rotation[:, 2] -= [(style.width - size[0]) / 2, (height - size[1]) / 2]
    page = cv2.warpAffine(page, rotation, size, flags=cv2.INTER_AREA if style.resolution < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=style.paper)
    ok, encoded = cv2.imencode(".jpg", page, [cv2.IMWRITE_JPEG_QUALITY, style.jpeg_quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR)


@dataclass(frozen=True)
class GoldenDocument:
    name: str
    image: np.ndarray  # BGR uint8
    text: str  # one printed row per line


def generate(seed: int = DEFAULT_SEED, count: int = DOCUMENTS) -> list[GoldenDocument]:
    """`count` documents, two receipts for every invoice, the same for the same seed."""
    rng = random.Random(seed)
    documents = []
    for k in range(count):
        kind = "invoice" if k % 3 == 2 else "receipt"
        rows = invoice_rows(rng) if kind == "invoice" else receipt_rows(rng)
        image = render(rows, _style(rng, kind), rng)
        documents.append(GoldenDocument(f"{kind}-{k:02d}", image, "\n".join(r.text for r in rows) + "\n"))
    return documents


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_golden_set(target: Path, seed: int = DEFAULT_SEED, count: int = DOCUMENTS) -> Path:
    """Write the set into `target` (a `golden/` directory), replacing it whole: built in a dot-prefixed
    sibling and renamed into place, so a gate never reads half a set."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for doc in generate(seed, count):
            (staging / f"{doc.name}.png").write_bytes(_png(doc.image))
            (staging / f"{doc.name}.txt").write_text(doc.text, encoding="utf-8")
        os.chmod(staging, 0o755)
        if target.exists():
            trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=target.parent))
            os.replace(target, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
