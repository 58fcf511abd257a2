"""Cheque fields: date, payee, amount in figures, amount in words, whether they agree, cheque number.

The amount in words is what a bank's reviewers compare with the figures: a mismatch is a reason to
hold the cheque, so `amounts_agree` is reported as false only when both amounts were read and differ,
and as null when either is missing (nothing to compare is not agreement).

- payee: the text after a PAY / PAY TO THE ORDER OF label (same line, right of it, or under it),
  without "OR BEARER" / "OR ORDER".
- amount in words: rows that read as number words (most of their letters are amount vocabulary, two
  or more number words, or a "xx/100" fraction), consecutive rows joined (the words often wrap).
- amount in figures: an amount with cents (not inside a date); one with a currency sign or asterisk
  padding ("**1,234.56**") first, then the one furthest right.
- date: a date on a DATE line first (also written as 8 digits, DDMMYYYY, in boxes), else the first
  date; cheque number: the digits after CHEQUE NO / CHQ NO / CHECK NO / NO., else the first group of
  six or more digits on the code line at the bottom.
"""

from __future__ import annotations

import re

from server.fields.amounts import find_amounts, money
from server.fields.dates import find_dates, make_date
from server.fields.layout import below, right_of, rows
from server.fields.types import DocumentFields, Field, Line, field_from, squash
from server.fields.words import NUMBER_WORDS, coverage, parse_amount_words, segment

_PAY = re.compile(r"^(PAY(?:TOTHEORDEROF|TO|EE)?|BAYAR(?:KEPADA)?)[:.]*")
_PAY_WORDS = re.compile(r"(?i)^\s*(pay(\s*to\s*the\s*order\s*of|\s*to|ee)?|bayar(\s*kepada)?)\s*[:.]*\s*")
_BEARER = re.compile(r"(?i)\s*(or\s*bearer|or\s*order|atau\s*pembawa)\s*$")
_CHEQUE_NO = re.compile(r"(CHEQUE|CHQ|CHECK|CEK)\.?(NO|NUMBER|#)\.?[:#]*(\d{4,10})|^NO[.:]+(\d{4,10})")
_COMPACT_DATE = re.compile(r"(?<!\d)(\d{2})\s?(\d{2})\s?(\d{4})(?!\d)")


def _payee(lines: list[Line]) -> Field | None:
    for line in sorted(lines, key=lambda l: l.centre_y):
        if not _PAY.match(squash(line.text)):
            continue
        own = _BEARER.sub("", _PAY_WORDS.sub("", line.text, count=1)).strip(" :.-_")
        if len(own) >= 2:
            return field_from(own, [line], 0.9)
        for neighbour in right_of(line, lines) + below(line, lines)[:1]:
            text = _BEARER.sub("", neighbour.text).strip(" :.-_")
            if len(text) >= 2 and not find_amounts(text) and not _is_words(text):
                return field_from(text, [line, neighbour], 0.85)
    return None


def _is_words(text: str) -> bool:
    numbers = sum(w in NUMBER_WORDS for w in segment(text))
    fraction = bool(re.search(r"\d{1,2}\s*/\s*100|no\s*/\s*100", text, re.IGNORECASE))
    # Two number words, or the "AND 56/100 DOLLARS" the words wrap onto.
    return coverage(text) >= 0.75 and (numbers >= 2 or fraction)


def _amount_words(lines: list[Line]) -> Field | None:
    groups: list[list[Line]] = []
    previous = -2
    for k, row in enumerate(rows(lines)):
        wordy = [line for line in row if _is_words(line.text)]
        if not wordy:
            continue
        if k == previous + 1 and groups:
            groups[-1].extend(wordy)
        else:
            groups.append(list(wordy))
        previous = k
    best: tuple[int, Field] | None = None
    for group in groups:
        parsed = parse_amount_words(" ".join(line.text for line in group))
        if parsed is None:
            continue
        weight = sum(w in NUMBER_WORDS for w in parsed.words)
        found = field_from(money(parsed.value), group, 0.9 * min(1.0, parsed.coverage + 0.1))
        if best is None or weight > best[0]:
            best = (weight, found)
    return best[1] if best else None


def _amount_figures(lines: list[Line]) -> Field | None:
    candidates = []
    for line in lines:
        dated = [(d.start, d.end) for d in find_dates(line.text)]
        for amount in find_amounts(line.text):
            if any(s <= amount.start < e for s, e in dated):
                continue
            decorated = amount.currency is not None or "*" in line.text or "#" in line.text
            candidates.append((decorated, line.x1, amount, line))
    if not candidates:
        return None
    decorated, _, amount, line = max(candidates, key=lambda c: (c[0], c[1]))
    return field_from(money(amount.value), [line], 0.9 if decorated else 0.7, amount.currency)


def _date(lines: list[Line]) -> Field | None:
    ordered = sorted(lines, key=lambda l: l.centre_y)
    for line in ordered:
        if "DATE" not in squash(line.text) and "TARIKH" not in squash(line.text):
            continue
        for source in [line, *right_of(line, lines)]:
            found = find_dates(source.text)
            if found:
                return field_from(found[0].value.isoformat(), [source], 0.95)
            compact = _COMPACT_DATE.search(source.text)
            if compact:
                value = make_date(int(compact.group(3)), int(compact.group(2)), int(compact.group(1)))
                if value is not None:
                    return field_from(value.isoformat(), [source], 0.9)
    for line in ordered:
        found = find_dates(line.text)
        if found:
            return field_from(found[0].value.isoformat(), [line], 0.75)
    return None


def _cheque_number(lines: list[Line]) -> Field | None:
    for line in sorted(lines, key=lambda l: l.centre_y):
        match = _CHEQUE_NO.search(squash(line.text))
        if match:
            return field_from(match.group(3) or match.group(4), [line], 0.9)
    grid = rows(lines)
    if grid:
        for line in grid[-1]:
            digits = re.search(r"\d{6,}", re.sub(r"[^\d\s]", " ", line.text))
            if digits:
                return field_from(digits.group(0)[:6], [line], 0.6)
    return None


def extract_cheque(lines: list[Line]) -> DocumentFields:
    words = _amount_words(lines)
    figures = _amount_figures(lines)
    agree = None if words is None or figures is None else words.value == figures.value
    fields: dict[str, Field | None] = {
        "date": _date(lines),
        "payee": _payee(lines),
        "amount": figures,
        "amount_words": words,
        "cheque_number": _cheque_number(lines),
    }
    return DocumentFields("cheque", fields, agree)
