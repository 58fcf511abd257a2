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

from server.fields import FIELD_KINDS, extract_fields
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


def field_names(kind: str) -> frozenset[str]:
    """The fields extraction reports for `kind` (what an expected-fields file may name)."""
    return frozenset(extract_fields(kind, []).fields) | ({"amounts_agree"} if kind == "cheque" else frozenset())


def read_expected_fields(directory: Path) -> dict[str, ExpectedFields]:
    """Every `NAME.fields.json` of a golden directory, by NAME. A file that does not parse, names an
    unknown kind or a field the kind does not have is an error (ValueError): a misspelt field would
    otherwise be scored as a miss on every version."""
    out = {}
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        name = path.name[: -len(SUFFIX)]
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not UTF-8 JSON: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("fields"), dict) or "kind" not in data:
            raise ValueError(f"{path}: expected {{\"kind\": ..., \"fields\": {{...}}}}")
        kind = data["kind"]
        if kind not in FIELD_KINDS:
            raise ValueError(f"{path}: kind must be one of {', '.join(FIELD_KINDS)}, got {kind!r}")
        unknown = sorted(set(data["fields"]) - field_names(kind))
        if unknown:
            raise ValueError(f"{path}: no field(s) {', '.join(unknown)} in a document of kind {kind}; "
                             f"known: {', '.join(sorted(field_names(kind)))}")
        out[name] = ExpectedFields(name, kind, dict(data["fields"]))
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
