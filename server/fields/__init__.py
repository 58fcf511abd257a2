"""Fields people read documents for (a receipt's total, a cheque's payee), from recognised lines.

    extract_fields("receipt", lines_from(result.lines)).to_json()

Kinds: `receipt` and `invoice` (vendor, date, total, tax, receipt or invoice number, currency) and
`cheque` (date, payee, amount in figures and in words, whether they agree, cheque number). Rules over
text and layout, no model: why, and how well they do, is in bench/RESULTS.md ("Fields").
"""

from __future__ import annotations

from typing import Iterable

from server.fields.cheque import extract_cheque
from server.fields.receipt import extract_receipt
from server.fields.types import DocumentFields, Field, HasTextBox, Line, lines_from

FIELD_KINDS = ("receipt", "invoice", "cheque")


def extract_fields(kind: str, lines: Iterable[HasTextBox]) -> DocumentFields:
    """The fields of `kind` found in one page's lines (pipeline `TextLine`s, text-layer lines, `Line`s)."""
    if kind not in FIELD_KINDS:
        raise ValueError(f"fields must be one of {', '.join(FIELD_KINDS)}, got {kind!r}")
    plain = lines_from(lines)
    return extract_cheque(plain) if kind == "cheque" else extract_receipt(plain, kind)


__all__ = ["FIELD_KINDS", "DocumentFields", "Field", "Line", "extract_fields", "lines_from"]
