"""Money in recognised text: amounts with cents, and the currency they are in.

An amount is a number printed with two decimals ("9.00", "1,234.56", "1.234,56", "RM9.00"): receipts,
invoices and cheques print money that way, and requiring the cents keeps quantities, phone numbers,
dates and registration numbers out. The last separator before the two final digits is the decimal
one, whatever it is: OCR reads commas as points and back ("RM**47.425.27**" for 47,425.27), which a
price parser that knows the conventions (price-parser) refuses, so the digits are put together here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

# Digits with an optional thousands separator (, . space or ') and exactly two decimals after . or ,
# (OCR sometimes reads the point as a comma). Not preceded or followed by more digits or separators:
# "20188:13" or "12.345.678" are not amounts.
_AMOUNT = re.compile(r"(?<![\d.,])(-)?(\d{1,3}(?:[,.']\d{3})+|\d+)\s?[.,]\s?(\d{2})(?![\d])(?![.,]\d)")

# Currency as printed -> ISO 4217. "$" alone is the US dollar unless the document names another dollar.
_CURRENCY_TOKENS: tuple[tuple[str, str], ...] = (
    ("RM", "MYR"), ("MYR", "MYR"), ("US$", "USD"), ("USD", "USD"), ("S$", "SGD"), ("SGD", "SGD"),
    ("A$", "AUD"), ("AUD", "AUD"), ("C$", "CAD"), ("CAD", "CAD"), ("HK$", "HKD"), ("HKD", "HKD"),
    ("NZ$", "NZD"), ("NZD", "NZD"), ("€", "EUR"), ("EUR", "EUR"), ("£", "GBP"), ("GBP", "GBP"),
    ("¥", "JPY"), ("JPY", "JPY"), ("RMB", "CNY"), ("CNY", "CNY"), ("₹", "INR"), ("INR", "INR"),
    ("RS.", "INR"), ("IDR", "IDR"), ("RP", "IDR"), ("฿", "THB"), ("THB", "THB"), ("₱", "PHP"),
    ("PHP", "PHP"), ("₫", "VND"), ("VND", "VND"), ("CHF", "CHF"), ("$", "USD"),
)
_ISO = dict(_CURRENCY_TOKENS)
_LONGEST_FIRST = sorted(_ISO, key=len, reverse=True)
# A currency written with letters stands alone, in brackets, or right before digits ("RM9.00",
# "TOTAL (RM)", not the "RM" of "FORM"), or glued to a money label when OCR drops the space
# ("TOTALGBP"); one with a symbol ("$", "S$", "€") may stand anywhere.
_AFTER = r"(?:(?<![A-Z])|(?<=TOTAL)|(?<=AMOUNT)|(?<=AMT)|(?<=DUE)|(?<=BALANCE))"
_TOKEN_PATTERN = re.compile(
    "|".join(
        re.escape(token) if not token.isalpha() and "." not in token else rf"{_AFTER}{re.escape(token)}(?=[^A-Z]|$)"
        for token in _LONGEST_FIRST
    ),
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Amount:
    value: Decimal
    start: int  # span in the line's text
    end: int
    currency: str | None  # ISO code of a currency printed right before it


def find_amounts(text: str) -> list[Amount]:
    """Every amount with cents in `text`, left to right."""
    found = []
    for match in _AMOUNT.finditer(text):
        sign, whole, cents = match.groups()
        value = Decimal(re.sub(r"\D", "", whole) + "." + cents)
        if sign:
            value = -value
        found.append(Amount(value, match.start(), match.end(), currency_before(text, match.start())))
    return found


def currency_before(text: str, position: int) -> str | None:
    """The currency printed immediately before `position` (allowing a space), if any."""
    head = text[max(0, position - 8): position].rstrip(" *#:").upper()  # "RM **91,193.66**", "RM: 9.00"
    for token in _LONGEST_FIRST:
        if head.endswith(token) and (not token[0].isalpha() or not head[: -len(token)][-1:].isalpha()):
            return _ISO[token]
    return None


def currencies_in(text: str) -> list[str]:
    """ISO codes of the currency tokens in `text`, in order."""
    return [_ISO[m.group(0).upper()] for m in _TOKEN_PATTERN.finditer(text)]


def money(value: Decimal) -> str:
    """The decimal amount as a string with two decimals (JSON numbers would lose exactness)."""
    return f"{value.quantize(Decimal('0.01'))}"
