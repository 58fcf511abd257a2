"""Synthetic cheques and invoices whose fields are known, printed and captured like the golden set.

The same renderer as the default golden set (`server.quality.receipts.render`: faded ink, uneven
light, blur, noise, skew, JPEG), the same determinism (a seed gives the same images and fields), and
the expected fields written by construction, so extraction is scored exactly. Cheques are printed
ones, as company payment runs produce them (the recognition models read print, not handwriting), in
the two layouts this server's users send: Malaysian ringgit ("RINGGIT MALAYSIA ... SEN ... ONLY") and
US dollars ("PAY TO THE ORDER OF", "... AND 56/100 DOLLARS"). Every set includes a cheque whose words
and figures disagree (`amounts_agree: false`), the case a bank's reviewers look for.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from server.quality.expected_fields import SUFFIX
from server.quality.receipts import Cell, Row, Style, render

DEFAULT_SEED = 515
_ONES = ("ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE THIRTEEN FOURTEEN FIFTEEN "
         "SIXTEEN SEVENTEEN EIGHTEEN NINETEEN").split()
_TENS = "_ _ TWENTY THIRTY FORTY FIFTY SIXTY SEVENTY EIGHTY NINETY".split()
_BANKS = ("MAYBANK BERHAD", "PUBLIC BANK BERHAD", "CIMB BANK BERHAD", "FIRST NATIONAL BANK", "HONG LEONG BANK",
          "CITIZENS SAVINGS BANK", "RHB BANK BERHAD", "OCEANIC TRUST BANK")
_PAYEES = ("TAN AH KOW", "JOHN A. SMITH", "SITI NURHALIZA BINTI AHMAD", "GREENFIELD LOGISTICS SDN BHD",
           "MARIA GONZALEZ", "LIM KOK WING", "NORTHSTAR SUPPLIES INC", "ABDUL RAHMAN BIN YUSOF",
           "EVERGREEN PROPERTIES LLC", "WONG MEI LING")
_VENDORS = ("ORCHID OFFICE SOLUTIONS SDN BHD", "BRIGHTWAY ENGINEERING LTD", "KELANA PRINTING SERVICES",
            "PACIFIC RIM TRADING CO.", "SINAR JAYA HARDWARE SDN BHD", "NOVA DIGITAL SUPPLIES INC",
            "TERAS BINA CONSTRUCTION SDN BHD", "MERIDIAN FOODS GMBH")
_CUSTOMERS = ("ALPHA HOLDINGS BHD", "BETA RETAIL LTD", "GAMMA LOGISTICS SDN BHD", "DELTA CAFE")
_ITEMS = ("A4 COPIER PAPER (BOX)", "TONER CARTRIDGE 85A", "INSTALLATION SERVICE", "NETWORK CABLE CAT6 305M",
          "SAFETY HELMET", "CEMENT 50KG", "OFFICE CHAIR ERGO", "LED PANEL 600X600", "CONSULTING (HOURS)",
          "DELIVERY CHARGE", "STEEL BAR 12MM", "PAINT WHITE 18L")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def number_words(value: int) -> str:
    """`value` (0..999,999,999) in English words, as cheques print it ("ONE THOUSAND TWO HUNDRED
    THIRTY FOUR")."""
    if value < 20:
        return _ONES[value]
    if value < 100:
        return _TENS[value // 10] + ("" if value % 10 == 0 else " " + _ONES[value % 10])
    for size, name in ((10**6, "MILLION"), (1000, "THOUSAND"), (100, "HUNDRED")):
        if value >= size:
            head, rest = divmod(value, size)
            return f"{number_words(head)} {name}" + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError(value)


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


@dataclass(frozen=True)
class FieldDocument:
    """A rendered document, its printed text (one row per line) and its expected fields."""

    name: str
    kind: str
    image: np.ndarray  # BGR uint8
    text: str
    fields: dict[str, Any]


def _style(rng: random.Random, width: int) -> Style:
    """A clean office scan: cheques and invoices arrive from flatbed scanners, not till rolls."""
    return Style(width=width, font_px=rng.choice((18, 20, 22)), ink=rng.randint(10, 50), paper=rng.randint(225, 250),
                 streaks=0, blur=rng.uniform(0.3, 0.7), jpeg_quality=rng.randint(60, 85),
                 resolution=rng.choice((1.0, 0.9)), skew_deg=rng.uniform(-0.4, 0.4), shade=rng.uniform(0.05, 0.2),
                 noise=rng.uniform(1.0, 4.0))


def _date(rng: random.Random, style: str = "day-first") -> tuple[str, str]:
    """(printed, ISO) of a date: "day-first" (most of the world), "month-first" (US documents in US$)
    or "named" (the month spelt out, as US cheques write it)."""
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(2019, 2026)
    named = f"{_MONTHS[month - 1]} {day:02d}, {year}"
    printed = {
        "day-first": rng.choice((f"{day:02d}/{month:02d}/{year}", f"{day:02d}-{month:02d}-{year}",
                                 f"{day:02d} {_MONTHS[month - 1]} {year}")),
        "month-first": rng.choice((f"{month:02d}/{day:02d}/{year}", named)),
        "named": named,
    }[style]
    return printed, f"{year}-{month:02d}-{day:02d}"


def _wrap(text: str, width: int) -> list[str]:
    words, lines = text.split(), [""]
    for word in words:
        if lines[-1] and len(lines[-1]) + 1 + len(word) > width:
            lines.append(word)
        else:
            lines[-1] = f"{lines[-1]} {word}".strip()
    return lines


def cheque(rng: random.Random, name: str, mismatch: bool = False) -> FieldDocument:
    """A printed cheque; with `mismatch` the figures differ from the words by a digit's place."""
    ringgit = rng.random() < 0.5
    amount = Decimal(rng.randint(1_000, 9_999_999)) / 100
    figures = amount + (Decimal(rng.choice((9, 90, 900))) if mismatch else 0)
    whole, cents = int(amount), int((amount * 100) % 100)
    number = f"{rng.randint(1, 999999):06d}"
    printed_date, iso = _date(rng, "day-first" if ringgit else "named")
    payee = rng.choice(_PAYEES)
    if ringgit:
        words = f"{number_words(whole)}" + (f" AND SEN {number_words(cents)}" if cents else "") + " ONLY"
        label, currency_sign, pay_label, bearer = "RINGGIT MALAYSIA", "RM", "PAY", "OR BEARER"
    else:
        words = f"{number_words(whole)} AND {cents:02d}/100 DOLLARS"
        label, currency_sign, pay_label, bearer = "THE SUM OF", "$", "PAY TO THE ORDER OF", ""
    word_lines = _wrap(words, 44)
    rows = [
        Row((Cell(rng.choice(_BANKS), 0.0),), 1.1, bold=True),
        Row((Cell(f"CHEQUE NO. {number}", 1.0, "right"),)),  # in plain print, as cheque books number them
        Row((Cell("DATE", 0.72), Cell(printed_date, 1.0, "right"))),
        Row((Cell(pay_label, 0.0), Cell(payee, 0.27 if not ringgit else 0.08)) + ((Cell(bearer, 1.0, "right"),)
                                                                                  if bearer else ())),
        Row((Cell(label, 0.0),)),
        Row((Cell(word_lines[0], 0.0), Cell(f"{currency_sign} **{_money(figures)}**", 1.0, "right"))),
        *[Row((Cell(line, 0.0),)) for line in word_lines[1:]],
        Row((Cell(f"A/C NO. {rng.randint(10**11, 10**12 - 1)}", 0.0), Cell("AUTHORISED SIGNATURE", 1.0, "right"))),
        Row((Cell(f"{number}   {rng.randint(10**5, 10**6 - 1)}-{rng.randint(100, 999)}   "
                  f"{rng.randint(10**9, 10**10 - 1)}", 0.12),), 1.1),
    ]
    image = render(rows, _style(rng, rng.randint(980, 1100)), rng)
    fields = {"date": iso, "payee": payee, "amount": str(figures), "amount_words": str(amount),
              "cheque_number": number, "amounts_agree": not mismatch}
    return FieldDocument(name, "cheque", image, "\n".join(r.text for r in rows) + "\n", fields)


def invoice(rng: random.Random, name: str) -> FieldDocument:
    """A supplier invoice with a known vendor, date, number, tax, total and currency."""
    currency, sign, tax_label, rate = rng.choice((("MYR", "RM", "SST 8%", 8), ("USD", "US$", "SALES TAX 7%", 7),
                                                  ("EUR", "EUR", "VAT 19%", 19), ("SGD", "S$", "GST 9%", 9)))
    vendor = rng.choice(_VENDORS)
    number = f"INV-{rng.randint(2019, 2026)}-{rng.randint(1, 9999):04d}"
    date_style = "month-first" if currency == "USD" else "day-first"
    printed_date, iso = _date(rng, date_style)
    rows = [
        Row((Cell(vendor, 0.5, "center"),), 1.3, bold=True),
        Row((Cell(f"{rng.randint(1, 200)} JALAN {rng.choice(('AMPANG', 'TUN RAZAK', 'KLANG LAMA'))}, "
                  f"{rng.randint(10000, 99999)} KUALA LUMPUR", 0.5, "center"),)),
        Row((Cell(f"TEL: 03-{rng.randint(1000, 9999)} {rng.randint(1000, 9999)}", 0.5, "center"),)),
        Row((Cell("INVOICE", 0.5, "center"),), 1.3, bold=True),
        Row((Cell(f"INVOICE NO: {number}", 0.0), Cell(f"DATE: {printed_date}", 1.0, "right"))),
        Row((Cell(f"BILL TO: {rng.choice(_CUSTOMERS)}", 0.0), Cell(f"TERMS: {rng.choice((14, 30, 60))} DAYS", 1.0,
                                                                      "right"))),
        Row((Cell("QTY", 0.0), Cell("DESCRIPTION", 0.1), Cell("UNIT PRICE", 0.8, "right"), Cell("AMOUNT", 1.0, "right")),
            bold=True),
    ]
    subtotal = Decimal(0)
    for item in rng.sample(_ITEMS, rng.randint(3, 6)):
        qty = rng.randint(1, 20)
        price = Decimal(rng.randint(150, 90000)) / 100
        subtotal += qty * price
        rows.append(Row((Cell(str(qty), 0.0), Cell(item, 0.1), Cell(_money(price), 0.8, "right"),
                         Cell(_money(qty * price), 1.0, "right"))))
    tax = (subtotal * rate / 100).quantize(Decimal("0.01"))
    total = subtotal + tax
    rows += [
        Row((Cell("SUBTOTAL", 0.55), Cell(_money(subtotal), 1.0, "right"))),
        Row((Cell(tax_label, 0.55), Cell(_money(tax), 1.0, "right"))),
        Row((Cell(f"TOTAL DUE ({sign})", 0.55), Cell(_money(total), 1.0, "right")), bold=True),
        Row((Cell(f"PAYMENT DUE BY {_date(rng, date_style)[0]}", 0.0),)),
    ]
    image = render(rows, _style(rng, rng.randint(900, 1000)), rng)
    fields = {"vendor": vendor, "date": iso, "total": str(total), "tax": str(tax), "invoice_number": number,
              "currency": currency}
    return FieldDocument(name, "invoice", image, "\n".join(r.text for r in rows) + "\n", fields)


def generate(seed: int = DEFAULT_SEED, cheques: int = 6, invoices: int = 6) -> list[FieldDocument]:
    """`cheques` cheques (the last one's amounts disagree) and `invoices` invoices, the same for the
    same seed."""
    rng = random.Random(seed)
    documents = [cheque(rng, f"cheque-{k:02d}", mismatch=k == cheques - 1) for k in range(cheques)]
    documents += [invoice(rng, f"invoice-{k:02d}") for k in range(invoices)]
    return documents


def write_field_set(target: Path, seed: int = DEFAULT_SEED, cheques: int = 6, invoices: int = 6) -> Path:
    """Write the documents as golden pairs with expected fields (`NAME.png`, `NAME.txt`,
    `NAME.fields.json`) into a new directory `target`, built aside and renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for doc in generate(seed, cheques, invoices):
            buffer = io.BytesIO()
            Image.fromarray(cv2.cvtColor(doc.image, cv2.COLOR_BGR2RGB)).save(buffer, format="PNG")
            (staging / f"{doc.name}.png").write_bytes(buffer.getvalue())
            (staging / f"{doc.name}.txt").write_text(doc.text, encoding="utf-8")
            (staging / f"{doc.name}{SUFFIX}").write_text(
                json.dumps({"kind": doc.kind, "fields": doc.fields}, indent=2) + "\n", encoding="utf-8")
        os.chmod(staging, 0o755)
        if target.exists():
            raise FileExistsError(f"{target} exists; remove it first")
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
