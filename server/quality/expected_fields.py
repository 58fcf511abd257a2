"""Expected fields beside a golden set's images, and exact-match scoring of extracted fields.

Format: `NAME.fields.json` next to `NAME.png` and `NAME.txt` (the quality gate's pairs), holding
`{"kind": "receipt" | "invoice" | "cheque", "fields": {"total": "12.50", "date": "2026-03-12", ...}}`.
A version's golden set may carry them for some of its images; the reader of the pairs ignores them.

A field matches when the extracted value equals the expected one after the normalisation of its type:
- dates: the same ISO date;
- amounts (total, tax, amount, amount_words): the same decimal ("9.0" equals "9.00");
- `amounts_agree`: the same boolean;
- currency: the same ISO code, case-insensitively;
- text (vendor, payee, numbers): the same characters case-folded with whitespace removed, the
  project's one text normalisation (`server.quality.textmetrics.normalize_text`; PP-OCR drops spaces).
An expected field whose extracted value is missing does not match; fields not listed are not scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping

from server.fields.types import DocumentFields
from server.quality.textmetrics import normalize_text

SUFFIX = ".fields.json"
AMOUNT_FIELDS = frozenset({"total", "tax", "amount", "amount_words"})
DATE_FIELDS = frozenset({"date"})


@dataclass(frozen=True)
class ExpectedFields:
    name: str
    kind: str
    fields: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "fields": self.fields}


def read_expected_fields(directory: Path) -> dict[str, ExpectedFields]:
    """Every `NAME.fields.json` of a golden directory, by NAME."""
    out = {}
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        name = path.name[: -len(SUFFIX)]
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("fields"), dict) or "kind" not in data:
            raise ValueError(f"{path}: expected {{\"kind\": ..., \"fields\": {{...}}}}")
        out[name] = ExpectedFields(name, str(data["kind"]), dict(data["fields"]))
    return out


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def field_matches(name: str, expected: Any, got: Any) -> bool:
    """Whether an extracted value `got` matches the `expected` one for field `name`."""
    if got is None or expected is None:
        return got is None and expected is None
    if name == "amounts_agree":
        return bool(got) == bool(expected) and isinstance(got, bool)
    if name in AMOUNT_FIELDS:
        a, b = _decimal(expected), _decimal(got)
        return a is not None and a == b
    if name in DATE_FIELDS:
        return str(expected) == str(got)
    if name == "currency":
        return str(expected).upper() == str(got).upper()
    return normalize_text(str(expected)) == normalize_text(str(got))


def score_fields(expected: ExpectedFields | Mapping[str, Any], extracted: DocumentFields) -> dict[str, bool]:
    """Exact match per expected field: {field name: matched}."""
    wanted = expected.fields if isinstance(expected, ExpectedFields) else expected
    out = {}
    for name, value in wanted.items():
        got = extracted.amounts_agree if name == "amounts_agree" else extracted.value(name)
        out[name] = field_matches(name, value, got)
    return out
