"""Request options: the same names in the query string, multipart form fields or JSON keys.

Each option is validated here, with a 400 that names it. Two kinds: the pipeline's (`RequestOptions`,
whose default is the model version's setting) and the documents' - which pages to read, a PDF's text
layer or OCR, which fields to extract - whose defaults are the server's settings (`OCR_PDF_TEXT`,
`OCR_FIELDS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

from server.config import Settings
from server.documents.errors import DecodeError, shown
from server.documents.pdf import PDF_TEXT_MODES
from server.documents.selection import PageSelection
from server.fields import FIELD_KINDS
from server.http.errors import ApiError
from server.pipeline import RequestOptions

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ApiError(400, "invalid_option", f"{name} must be a boolean (true/false, 1/0), got {shown(value)}")


def _integer(name: str, value: Any, low: int, high: int) -> int:
    """An integer, given as a JSON number or a string; 960.0 is accepted, 960.5 is not."""
    # JSON's NaN and Infinity (and 1e400) arrive as floats that int() cannot take: refused here, not a 500.
    if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        raise ApiError(400, "invalid_option", f"{name} must be an integer, got {shown(value)}")
    try:
        number = float(value) if isinstance(value, float) else int(str(value).strip())
    except ValueError:
        raise ApiError(400, "invalid_option", f"{name} must be an integer, got {shown(value)}") from None
    if number != int(number):
        raise ApiError(400, "invalid_option", f"{name} must be an integer, got {shown(value)}")
    return _within(name, int(number), low, high)


def _real(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool):
        raise ApiError(400, "invalid_option", f"{name} must be a number, got {shown(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer of hundreds of digits
        raise ApiError(400, "invalid_option", f"{name} must be a number, got {shown(value)}") from None
    return _within(name, number, low, high)


def _within(name: str, number: T, low: float, high: float) -> T:
    if not low <= number <= high:  # also refuses NaN
        raise ApiError(400, "invalid_option", f"{name} must be within [{low}, {high}], got {number}")
    return number


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ApiError(400, "invalid_option", f"{name} must be one of {', '.join(allowed)}, got {shown(value)}")
    return value


def _pages(value: Any) -> PageSelection:
    """Pages as text (`1-3,5`), or one page as a JSON integer (`3`; not `-2`, whose text means "the first two")."""
    if isinstance(value, bool) or (isinstance(value, int) and value < 1):
        raise ApiError(400, "invalid_option", f"pages must be page numbers and ranges such as 1-3,5; got {shown(value)}",
                       option="pages")
    try:
        return PageSelection.parse(value if isinstance(value, str) else str(value))
    except DecodeError as exc:
        raise ApiError(400, "invalid_option", exc.message, **exc.details) from None


def _fields(value: Any) -> str | None:
    """A document kind, or `none` (also an empty value) to override a server default of OCR_FIELDS."""
    if value in ("", "none"):
        return None
    return _choice("fields", value, FIELD_KINDS + ("none",))


@dataclass(frozen=True)
class Options:
    ocr: RequestOptions
    pages: PageSelection | None  # None: every page
    pdf_text: str  # auto, ocr or layer
    fields: str | None  # receipt, invoice, cheque, or None for no fields


_DOCUMENT_PARSERS: dict[str, Callable[[Any], Any]] = {
    "pages": _pages,
    "pdf_text": lambda v: _choice("pdf_text", v, PDF_TEXT_MODES),
    "fields": _fields,
}

_OPTION_PARSERS: dict[str, Callable[[Any], Any]] = {
    "use_cls": lambda v: _bool("use_cls", v),
    "det_limit_side_len": lambda v: _integer("det_limit_side_len", v, 16, 4000),
    "det_limit_type": lambda v: _choice("det_limit_type", v, ("min", "max")),
    "det_thresh": lambda v: _real("det_thresh", v, 0.01, 0.99),
    "det_box_thresh": lambda v: _real("det_box_thresh", v, 0.0, 1.0),
    "det_unclip_ratio": lambda v: _real("det_unclip_ratio", v, 0.5, 5.0),
    "drop_score": lambda v: _real("drop_score", v, 0.0, 1.0),
}


def parse_options(raw: Mapping[str, Any], settings: Settings) -> Options:
    """Validate request options. An unknown name is an error, not silently ignored (typos); a JSON
    `null` means the default (the model's setting, or the server's), like leaving the option out."""
    known = set(_OPTION_PARSERS) | set(_DOCUMENT_PARSERS)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ApiError(400, "unknown_option", f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    given = {name: value for name, value in raw.items() if value is not None}
    documents = {name: _DOCUMENT_PARSERS[name](value) for name, value in given.items() if name in _DOCUMENT_PARSERS}
    return Options(
        ocr=RequestOptions(**{name: _OPTION_PARSERS[name](value) for name, value in given.items()
                              if name in _OPTION_PARSERS}),
        pages=documents.get("pages"),
        pdf_text=documents.get("pdf_text", settings.pdf_text),
        fields=documents["fields"] if "fields" in documents else (settings.default_fields or None),
    )
