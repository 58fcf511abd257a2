"""What field extraction reads and what it returns: plain data, independent of where lines came from.

A `Line` is what both the OCR pipeline (`TextLine`) and a PDF text layer (`TextLayerLine`) give: text,
a confidence and a 4-point box. `Field` is one extracted value with its evidence: the normalised
value, the line text it came from, that line's box, and a confidence.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

import numpy as np


def squash(text: str) -> str:
    """Upper case without spaces or accents: PP-OCR drops the spaces between Latin words and now and
    then adds an accent ("INVOICÉ", "CHÁNGE"), so keywords are matched on this form ("GRANDTOTAL" and
    "GRAND TOTAL" alike)."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"\s+", "", plain.upper())


class HasTextBox(Protocol):
    text: str
    score: float
    box: Any


@dataclass(frozen=True)
class Line:
    text: str
    score: float
    box: np.ndarray  # (4, 2) float32, clockwise from top-left, page pixels

    @property
    def x0(self) -> float:
        return float(self.box[:, 0].min())

    @property
    def x1(self) -> float:
        return float(self.box[:, 0].max())

    @property
    def y0(self) -> float:
        return float(self.box[:, 1].min())

    @property
    def y1(self) -> float:
        return float(self.box[:, 1].max())

    @property
    def height(self) -> float:
        return max(1.0, self.y1 - self.y0)

    @property
    def centre_y(self) -> float:
        return (self.y0 + self.y1) / 2


def lines_from(items: Iterable[HasTextBox]) -> list[Line]:
    """Anything with `text`, `score` and `box` (pipeline or text-layer lines) -> `Line`s.

    Text is NFKC-normalised: the PP-OCR dictionaries hold full-width forms of Latin punctuation, and a
    recogniser may read a comma as "，" or a colon as "：" (seen in "$**37，458.37**").
    """
    return [Line(unicodedata.normalize("NFKC", str(item.text)), float(item.score),
                 np.asarray(item.box, dtype=np.float32).reshape(4, 2)) for item in items]


@dataclass(frozen=True)
class Field:
    """One extracted field. `value` is normalised: ISO date, decimal amount as a string, plain text."""

    value: Any
    text: str  # the source text the value was read from (one or more lines joined with a space)
    box: np.ndarray  # (4, 2): the rectangle around the source lines
    confidence: float  # the rule's certainty times the OCR confidence of the source lines, 0..1
    currency: str | None = None  # ISO 4217 code, for amounts where a currency is shown

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": self.value,
            "text": self.text,
            "box": [[int(round(float(x))), int(round(float(y)))] for x, y in self.box],
            "confidence": round(float(self.confidence), 4),
        }
        if self.currency is not None:
            out["currency"] = self.currency
        return out


def field_from(value: Any, lines: list[Line], certainty: float, currency: str | None = None) -> Field:
    """A `Field` read from `lines` (joined), its box their bounding rectangle."""
    x0, y0 = min(l.x0 for l in lines), min(l.y0 for l in lines)
    x1, y1 = max(l.x1 for l in lines), max(l.y1 for l in lines)
    box = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)
    score = min(l.score for l in lines)
    return Field(value, " ".join(l.text for l in lines), box, certainty * score, currency)


@dataclass
class DocumentFields:
    """The fields of one page for one document kind; a field not found is `None`."""

    kind: str
    fields: dict[str, Field | None] = field(default_factory=dict)
    amounts_agree: bool | None = None  # cheques only: the amount in words equals the amount in figures

    def value(self, name: str) -> Any:
        found = self.fields.get(name)
        return None if found is None else found.value

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        out.update({name: (f.to_json() if f is not None else None) for name, f in self.fields.items()})
        if self.kind == "cheque":
            out["amounts_agree"] = self.amounts_agree
        return out
