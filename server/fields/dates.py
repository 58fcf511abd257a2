"""Dates in recognised text, as ISO `YYYY-MM-DD`.

Numeric dates (25/12/2018, 25-12-18, 2018.12.25) are read by pattern: day-month-year unless told the
document is month-first (US dollars), and the other order when the preferred one is not a date
(12/28/2017 can only be December 28th). Dates with a month name (25 DEC 2018, Mar 5, 2018, 5 Mei 2018)
are read by dateparser, which knows month names and abbreviations in many languages. OCR glues a
time to the year ("25/12/20188:13:39PM"), so a four-digit year may be followed by more digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import dateparser

# Languages whose month names are read; the documents this server sees are in these (receipts of
# Malaysia and Indonesia included).
LANGUAGES = ["en", "ms", "id", "de", "fr", "es", "it", "nl", "pt"]
_SETTINGS = {"REQUIRE_PARTS": ["day", "month", "year"], "PREFER_DAY_OF_MONTH": "first",
             "STRICT_PARSING": True, "RETURN_AS_TIMEZONE_AWARE": False}
MIN_YEAR, MAX_YEAR = 1970, 2099

_SEP = r"\s?[/.\-]\s?"
# Not glued to a letter or digit before it: "HC03-7-15" is an item code, not a date (a DATE label
# glued to its value is separated first, see `find_dates`). The year is tried as four digits, then as
# two ("18-11-1813:58" is 18-11-18 with the time glued on).
_NUMERIC_DMY = re.compile(rf"(?<![A-Za-z\d])(\d{{1,2}})({_SEP})(\d{{1,2}})\2(\d{{2}})(\d{{2}})?")
_NUMERIC_YMD = re.compile(rf"(?<![A-Za-z\d])(\d{{4}})({_SEP})(\d{{1,2}})\2(\d{{1,2}})(?!\d)")
_LABEL = re.compile(r"(?i)(date|tarikh|datum|fecha)")
_DAY_MONTH = re.compile(r"(?<!\d)(\d{1,2})(?:st|nd|rd|th)?[\s.\-/]*([A-Za-z]{3,9})\.?[\s.,\-/]*(\d{4}|\d{2}(?!\d))",
                        re.IGNORECASE)
_MONTH_DAY = re.compile(r"(?<![A-Za-z])([A-Za-z]{3,9})\.?[\s.\-]*(\d{1,2})(?:st|nd|rd|th)?[\s,.\-]+(\d{4})", re.IGNORECASE)


@dataclass(frozen=True)
class FoundDate:
    value: date
    start: int
    end: int
    full: bool = True  # written in full (four-digit year, or two-digit day and month), not "3-7-15"


def _year(text: str) -> int:
    year = int(text)
    if len(text) == 2:
        year += 2000 if year < 70 else 1900
    return year


def make_date(year: int, month: int, day: int) -> date | None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        return None
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _numeric(first: int, second: int, year: int, order: str) -> date | None:
    day_first = make_date(year, second, first)
    month_first = make_date(year, first, second)
    preferred, other = (day_first, month_first) if order == "DMY" else (month_first, day_first)
    return preferred or other


def _named(text: str) -> date | None:
    parsed = dateparser.parse(text, languages=LANGUAGES, settings=_SETTINGS)
    if parsed is None:
        return None
    return make_date(parsed.year, parsed.month, parsed.day)


def find_dates(text: str, order: str = "DMY") -> list[FoundDate]:
    """Every date in `text`, left to right. `order` ("DMY" or "MDY") decides ambiguous numeric dates."""
    text = _LABEL.sub(lambda m: m.group(0) + " ", text)  # "DATE25/12/2018": a label glued to its value
    found: list[FoundDate] = []
    taken: list[tuple[int, int]] = []

    def add(value: date | None, start: int, end: int, full: bool = True) -> None:
        if value is not None and not any(s < end and start < e for s, e in taken):
            found.append(FoundDate(value, start, end, full))
            taken.append((start, end))

    for match in _NUMERIC_YMD.finditer(text):
        add(make_date(int(match.group(1)), int(match.group(3)), int(match.group(4))), match.start(), match.end())
    for match in _NUMERIC_DMY.finditer(text):
        first, second, century, rest = int(match.group(1)), int(match.group(3)), match.group(4), match.group(5)
        value = _numeric(first, second, int(century + rest), order) if rest else None
        end, four_digits = match.end(), value is not None
        if value is None:  # a two-digit year, unless more digits follow it ("15/06/201?" is cut short)
            after = text[match.end():]  # ... other than a time glued on ("01-03-185:23:26PM")
            if not rest and after[:1].isdigit() and not re.match(r"\d{1,2}:\d{2}", after):
                continue
            value, end = _numeric(first, second, _year(century), order), match.start(4) + 2
        padded = len(match.group(1)) == 2 and len(match.group(3)) == 2
        add(value, match.start(), end, four_digits or padded)
    for pattern in (_DAY_MONTH, _MONTH_DAY):
        for match in pattern.finditer(text):
            add(_named(" ".join(match.groups())), match.start(), match.end())
    return sorted(found, key=lambda d: d.start)


def best_date(text: str, order: str = "DMY") -> FoundDate | None:
    """The first date written in full, else the first date."""
    dates = find_dates(text, order)
    return next((d for d in dates if d.full), dates[0] if dates else None)


def parse_date(text: str, order: str = "DMY") -> date | None:
    """The first date in `text` (for reading an expected value such as SROIE's `date` key)."""
    dates = find_dates(text, order)
    return dates[0].value if dates else None


def warm_up() -> None:
    """Have dateparser load what it loads on first use: every language's data (a date no language
    reads makes it try them all) and what a first match costs on top."""
    _named("5 Qqq 2018")
    _named("25 Dec 2018")
