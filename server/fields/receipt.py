"""Receipt and invoice fields: vendor, date, total, tax, receipt or invoice number, currency.

Rules over the lines and their layout, written for how such documents are printed anywhere, not for one
data set:

- vendor: the trading name heads the document. Among the first rows, a line ending in a legal form
  (SDN BHD, LTD, INC, GMBH, ...) wins, then a line naming a kind of business (MART, RESTAURANT,
  TRADING, ...), then the first line of plain words; labels, addresses, phone and registration lines
  never qualify, nor the customer's block of an invoice (BILL TO). A legal form wrapped onto its own
  line ("(SETIA ALAM) SDN BHD") is joined to the line above; a registration number after the legal
  form is not part of the name.
- total: amounts on lines labelled as a total (TOTAL, GRAND TOTAL, AMOUNT DUE, ...; not SUBTOTAL,
  TOTAL QTY, TOTAL TAX, ...), the amount on the label's line, else right of it on its row, else just
  below it. What the customer paid (cash minus change, or a card payment) confirms a candidate; failing
  that the largest labelled amount wins (a final total is never below the subtotals printed before it).
- date: dates on a line labelled DATE first (not DUE DATE, EXPIRY), else the first date from the top.
  Month-first reading only for documents in US dollars.
- tax: an amount on a GST / SST / VAT / TAX line that is not a registration number, a tax invoice
  heading or an "inclusive of tax" total; the one printed nearest the total.
- number: the code after an INVOICE NO / RECEIPT NO / BILL NO / DOC NO label (or right of it).
- currency: shown next to the total, else the one the document shows most.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from server.fields.amounts import Amount, currencies_in, find_amounts, money
from server.fields.dates import find_dates
from server.fields.layout import below, column_drift, right_of, rows
from server.fields.types import DocumentFields, Field, Line, field_from, squash


_LEGAL_END = re.compile(
    r"(SDN\.?BHD\.?|BHD\.?|S/B|LTD\.?|LIMITED|L\.?L\.?C\.?|INC\.?|CORP\.?|CORPORATION|COMPANY|CO\.|ENTERPRISES?|"
    r"GMBH|PLC|PTE\.?LTD\.?|PTY\.?LTD\.?|LLP|SARL|S\.?R\.?L\.?|S\.?P\.?A\.?|TRADING(?:CO\.?)?)$"
)
_BUSINESS = re.compile(
    r"(MART|MARKET|STORE|SHOP|RESTAURANT|RESTORAN|CAFE|KEDAI|PERNIAGAAN|SYARIKAT|HARDWARE|STATIONERY|"
    r"BOOKS|PHARMACY|FARMASI|BAKERY|HOTEL|TRADING|ENTERPRISE|BISTRO|GALLERY|PETRO|MOTOR|ELECTRICAL|"
    r"MACHINERY|SUPPLIES|SUPPLY|INDUSTRIES|HOLDINGS|GROUP|INTERNATIONAL|SERVICES|CENTRE|CENTER|"
    r"BOUTIQUE|OUTLET|DECO|FOOD|KITCHEN|DELIGHTS)"
)
# Lines that are not a trading name. Long words are matched on the squashed text; short ones must
# start a word of the line as printed ("GST ID", but not the "GST" of "HENG STATIONERY" squashed).
_NOT_VENDOR = re.compile(
    r"(INVOICE|RECEIPT|CASHBILL|TELEPHONE|PHONE|REG\.?NO|REGNO|CO\.?REG|COMPANYNO|WELCOME|THANK|CASHIER|"
    r"ADDRESS|EMAIL|E-MAIL|WWW\.|HTTP|\.COM|BILLTO|SHIPTO|SOLDTO|CUSTOMER|JALAN|ROAD|STREET|AVENUE|LORONG|"
    r"TAMAN|MEMBER|TERMINAL|COUNTER|SALESPERSON)"
)
_NOT_VENDOR_WORD = re.compile(r"(?<![A-Z])(TEL|FAX|GST|SST|VAT|DATE|TIME|TABLE|JLN|LOT|NO\.|BLOCK|FLOOR|ORDER|POS|"
                              r"PAGE)(?![A-Z]{2})")
# The document's title: the vendor is printed above it; what follows (a customer, a cashier) is not.
_TITLE = re.compile(r"^[^A-Z]*(SIMPLIFIED)?(TAX)?(INVOICE|RECEIPT|CASHBILL|OFFICIALRECEIPT|BILL|QUOTATION|"
                    r"DELIVERYORDER|CREDITNOTE)[^A-Z]*$")
_CONTINUES = re.compile(r"(&|\bAND|-|,|\([^)]*)$")
_REGISTRATION = re.compile(r"[\s(\[]*\(?\d{4,}(?:-?[A-Z])?\)?\s*$")  # "(519537-X)" after a name
_TOTAL_STRONG = re.compile(r"(GRANDTOTAL|TOTALDUE|AMOUNTDUE|BALANCEDUE|TOTALPAYABLE|AMOUNTPAYABLE|NETTTOTAL|"
                           r"NETTOTAL|ROUNDEDTOTAL|TOTALROUNDED|TOTALAMOUNTDUE|JUMLAH)")
_TOTAL = re.compile(r"TOTAL")
_NOT_TOTAL = re.compile(r"(SUBTOTAL|SUB-TOTAL|TOTALQTY|TOTALQUANTITY|TOTALITEM|TOTALNOOF|TOTALDISCOUNT|"
                        r"TOTALSAVING|TOTALGST|TOTALTAX|TOTALSST|TOTALVAT|TOTALEXCL|TOTALEXCLUDING|TOTALPOINT|"
                        r"TOTALUNIT|TOTALWEIGHT|TOTALPCS|TOTALTENDER)")
_TENDER = re.compile(r"(CASH|TENDER|PAID|PAYMENT|VISA|MASTER|CARD|DEBIT|CREDIT|EWALLET)")
_CHANGE = re.compile(r"(CHANGE|BALANCE(?!DUE))")
# On the printed text, starting a word ("RENOVATION" holds no VAT), or glued to the words that go with
# it when OCR drops the spaces ("SALESTAX7%", "TOTALGST").
_TAX = re.compile(r"(?:(?<![A-Z])|(?<=TOTAL)|(?<=SALES)|(?<=SERVICE)|(?<=VALUEADDED))(GST|SST|VAT|TAX)")
_NOT_TAX = re.compile(r"(TAXINVOICE|GSTID|GSTREG|GSTNO|SSTID|SSTREG|SSTNO|VATNO|VATREG|TAXID|REGNO|INCL|INCLUSIVE|"
                      r"EXCL|EXCLUSIVE|SUMMARY|TAXCODE)")
_DATE_LABEL = re.compile(r"(DATE|TARIKH|DATUM|FECHA)")
_NOT_DATE = re.compile(r"(DUE|EXPIR|VALIDUNTIL|PAYMENTBY|DELIVERY|PRINTED)")
# Matched on the printed text in upper case, spaces optional (OCR may drop them).
_NUMBER_LABEL = re.compile(
    r"(INVOICE|INV|RECEIPT|RCPT|BILL|DOC(?:UMENT)?|TRANS(?:ACTION)?|TRX|ORDER|CHECK|SLIP|REF(?:ERENCE)?|CS)"
    r"\s*\.?\s*(?:NO\b\.?|NO(?=[\s:.#\d])|NUMBER|NUM|#)\s*[:.#]*\s*"
)
_NUMBER_VALUE = re.compile(r"^[\s:#.]*([A-Z0-9][A-Z0-9\-/]*\d[A-Z0-9\-/]*|\d[A-Z0-9\-/]*)")
# A label glued to the end of a number by OCR ("INV-2026-0042DATE:08-12-2023").
_GLUED_LABEL = re.compile(r"(?<=\d)(DATE|TIME|CASHIER|TABLE|TERMINAL|TEL|PAGE|TERMS)$")


@dataclass(frozen=True)
class _Candidate:
    value: Decimal
    lines: list[Line]
    strength: int  # 2: a final-total label, 1: TOTAL
    currency: str | None
    position: float  # vertical position of the label


_MONEY_LABEL = re.compile(r"(TOTAL|GST|SST|VAT|TAX|CASH|CHANGE|ROUND|DISCOUNT|TENDER|PAID|PAYMENT|BALANCE|AMOUNT|"
                          r"DUE|CHARGE|CARD|VISA|MASTER|DEPOSIT)")


def _is_money_label(line: Line) -> bool:
    """A label of the totals block (not an item line, whose price is printed on the row below it)."""
    return bool(_MONEY_LABEL.search(squash(line.text))) and not find_amounts(line.text)


def _amounts_for(label: Line, lines: list[Line]) -> tuple[list[Amount], list[Line]]:
    """The amounts a label line points at: on it after the label, else right of it, else below it."""
    own = find_amounts(label.text)
    if own:
        return own, [label]
    for neighbour in right_of(label, lines, column_drift(label, lines, _is_money_label)):
        found = find_amounts(neighbour.text)
        if found:
            return found, [label, neighbour]
    for neighbour in below(label, lines)[:2]:
        found = find_amounts(neighbour.text)
        if found and not _TOTAL.search(squash(neighbour.text)):
            return found, [label, neighbour]
    return [], []


_ROUNDING = Decimal("0.10")  # the most a total is rounded by for cash (to 0.05 or 0.10)


def _payment(lines: list[Line]) -> tuple[Decimal | None, list[Line]]:
    """What was paid when both the cash tendered and the change are printed: cash minus change."""
    tendered: list[tuple[float, Decimal, list[Line]]] = []
    change: list[tuple[float, Decimal, list[Line]]] = []
    for line in lines:
        key = squash(line.text)
        if _TOTAL.search(key):
            continue
        target = change if _CHANGE.match(key) else tendered if _TENDER.match(key) else None
        if target is None:
            continue
        amounts, source = _amounts_for(line, lines)
        if amounts:
            target.append((line.centre_y, abs(amounts[-1].value), source))
    if not change:
        return None, []
    y, given, change_lines = change[0]
    above = [t for t in tendered if t[0] < y]
    if not above:
        return None, []
    _, cash, cash_lines = max(above, key=lambda t: t[0])  # the tender printed right above the change
    if cash < given:
        return None, []
    return cash - given, cash_lines + change_lines


def _total(lines: list[Line]) -> tuple[Field | None, str | None]:
    candidates: list[_Candidate] = []
    for line in lines:
        key = squash(line.text)
        if not _TOTAL.search(key) and not _TOTAL_STRONG.search(key):
            continue
        if _NOT_TOTAL.search(key) and not _TOTAL_STRONG.search(key):
            continue
        amounts, source = _amounts_for(line, lines)
        if not amounts:
            continue
        amount = amounts[-1]  # the rightmost: totals are printed right-aligned
        currency = amount.currency or next(iter(currencies_in(line.text)), None)
        strength = 2 if _TOTAL_STRONG.search(key) else 1
        candidates.append(_Candidate(amount.value, source, strength, currency, line.centre_y))
    paid, paid_lines = _payment(lines)
    if candidates:
        confirmed = [c for c in candidates if paid is not None and c.value == paid]
        if confirmed:
            best, certainty = max(confirmed, key=lambda c: (c.strength, c.position)), 0.95
        else:
            top = max(c.strength for c in candidates)
            best = max((c for c in candidates if c.strength == top), key=lambda c: (c.value, c.position))
            certainty = 0.85 if top == 2 else 0.75
            if paid is not None and 0 < abs(paid - best.value) <= _ROUNDING:
                # Cash paid with change given, a few cents off the labelled total: the total was rounded
                # to what cash can pay (or the label's amount misread); what was charged is the total.
                return field_from(money(paid), paid_lines, 0.8, best.currency), best.currency
        return field_from(money(best.value), best.lines, certainty, best.currency), best.currency
    if paid is not None:
        return field_from(money(paid), paid_lines, 0.5), None
    return None, None


def _currency(lines: list[Line], total: Field | None, total_currency: str | None) -> Field | None:
    if total is not None and total_currency:
        return Field(total_currency, total.text, total.box, total.confidence)
    counts: Counter[str] = Counter()
    first: dict[str, Line] = {}
    for line in lines:
        for code in currencies_in(line.text):
            counts[code] += 1
            first.setdefault(code, line)
    if not counts:
        return None
    code, seen = counts.most_common(1)[0]
    return field_from(code, [first[code]], min(0.9, 0.5 + 0.1 * seen))


def _date(lines: list[Line], order: str) -> Field | None:
    labelled, anywhere = [], []
    for line in sorted(lines, key=lambda l: l.centre_y):
        key = squash(line.text)
        if _NOT_DATE.search(key):
            continue
        found = find_dates(line.text, order)
        neighbours: list[Line] = []
        if not found and _DATE_LABEL.search(key):
            for neighbour in right_of(line, lines) + below(line, lines)[:1]:
                found = find_dates(neighbour.text, order)
                if found:
                    neighbours = [neighbour]
                    break
        if not found:
            continue
        chosen = next((d for d in found if d.full), found[0])
        entry = (not chosen.full, chosen.value.isoformat(), [line, *neighbours])
        (labelled if _DATE_LABEL.search(key) else anywhere).append(entry)
    for entries, certainty in ((labelled, 0.95), (anywhere, 0.8)):
        if entries:  # the first from the top, a date written in full before one like "3-7-15"
            partial, value, source = min(entries, key=lambda e: e[0])
            return field_from(value, source, certainty * (0.8 if partial else 1.0))
    return None


def _tax(lines: list[Line], total: Field | None) -> Field | None:
    candidates = []
    for line in lines:
        key = squash(line.text)
        if not _TAX.search(line.text.upper()) or _NOT_TAX.search(key):
            continue
        if _TOTAL.search(key) and not re.search(r"TOTAL(GST|TAX|SST|VAT)", key):
            continue
        amounts, source = _amounts_for(line, lines)
        if not amounts:
            continue
        amount = amounts[-1]
        distance = abs(line.centre_y - float(total.box[:, 1].mean())) if total is not None else line.centre_y
        candidates.append((distance, amount, source))
    if not candidates:
        return None
    _, amount, source = min(candidates, key=lambda c: c[0])
    return field_from(money(abs(amount.value)), source, 0.8, amount.currency)


def _number(lines: list[Line], kind: str) -> Field | None:
    preferred = ("INVOICE", "INV") if kind == "invoice" else ("RECEIPT", "RCPT", "BILL", "DOC", "CS", "TRANS")
    found = []
    for line in sorted(lines, key=lambda l: l.centre_y):
        upper = line.text.upper()
        match = _NUMBER_LABEL.search(upper)
        if not match:
            continue
        value_match = _NUMBER_VALUE.match(upper[match.end():])
        source = [line]
        if not value_match:
            for neighbour in right_of(line, lines) + below(line, lines)[:1]:
                value_match = _NUMBER_VALUE.match(neighbour.text.upper())
                if value_match:
                    source = [line, neighbour]
                    break
        if not value_match:
            continue
        rank = 0 if match.group(1).startswith(preferred) else 1
        found.append((rank, _GLUED_LABEL.sub("", value_match.group(1)), source))
    if not found:
        return None
    rank, value, source = min(found, key=lambda f: f[0])
    return field_from(value, source, 0.9 if rank == 0 else 0.7)


def _vendor_candidates(lines: list[Line]) -> list[tuple[float, list[Line]]]:
    grid = rows(lines)
    heights = sorted(line.height for line in lines)
    median_height = heights[len(heights) // 2] if heights else 1.0
    customer_rows: set[int] = set()
    for k, row in enumerate(grid):
        if any(re.search(r"(BILLTO|SHIPTO|SOLDTO|CUSTOMER|ATTN)", squash(l.text)) for l in row):
            customer_rows.update({k, k + 1, k + 2})
    titles = [k for k, row in enumerate(grid[:14]) if any(_TITLE.match(squash(l.text)) for l in row)]
    last = titles[0] if titles and titles[0] > 0 else 12
    out = []
    for k, row in enumerate(grid[:last]):
        if k in customer_rows:
            continue
        for line in row:
            key = squash(line.text)
            name = _REGISTRATION.sub("", key)  # "99 SPEED MART (519537-X)": the number is not the name
            letters = sum(c.isalpha() for c in name)
            digits = sum(c.isdigit() for c in name)
            if letters < 3 or digits > 0.3 * len(name):
                continue
            legal = bool(_LEGAL_END.search(name.rstrip(",:;")))
            if not legal and (_NOT_VENDOR.search(key) or _NOT_VENDOR_WORD.search(line.text.upper())):
                continue
            score = 3.0 if legal else 2.0 if _BUSINESS.search(key) else 1.0
            if line.height > 1.25 * median_height:
                score += 0.5
            score -= 0.12 * k
            source = [line]
            above = grid[k - 1] if k > 0 else []
            if legal and above and (name.startswith("(") or _LEGAL_END.fullmatch(name.rstrip(",:;"))):
                upper = max(above, key=lambda l: min(l.x1, line.x1) - max(l.x0, line.x0))
                if not (_NOT_VENDOR.search(squash(upper.text)) or _NOT_VENDOR_WORD.search(upper.text.upper())):
                    source = [upper, line]
            # The detector splits a centred heading at a wide gap ("LIGHTROOM GALLERY SDN" "BHD"): the
            # row's other words belong to the name.
            rest = [o for o in row if o is not line and _plain_words(o)]
            if rest and len(rest) == len(row) - 1:
                source = sorted([*source, *rest], key=lambda l: l.x0)
                joined = squash(" ".join(l.text for l in source))
                if _LEGAL_END.search(_REGISTRATION.sub("", joined).rstrip(",:;")) and not legal:
                    legal, score = True, score + 1.0
            if _CONTINUES.search(line.text.strip().upper()) and k + 1 < len(grid):
                following = max(grid[k + 1], key=lambda l: min(l.x1, line.x1) - max(l.x0, line.x0))
                key_next = squash(following.text)
                if not (_NOT_VENDOR.search(key_next) or _NOT_VENDOR_WORD.search(following.text.upper())) and \
                        sum(c.isdigit() for c in key_next) <= 0.3 * len(key_next):
                    source = source + [following]  # "HOME MASTER HARDWARE &" / "ELECTRICAL"
            out.append((score, source))
    return out


_LEGAL_FORM = re.compile(r"(?i)(sdn\.?\s*bhd\.?|bhd\.?|s/b|ltd\.?|limited|llc|inc\.?|gmbh|plc|llp)")


def _plain_words(line: Line) -> bool:
    """Words that may be part of a trading name: letters, not a label, an address or a number."""
    key = squash(line.text)
    letters = sum(c.isalpha() for c in key)
    return letters >= 2 and letters >= 0.7 * len(key) and not (
        _NOT_VENDOR.search(key) or _NOT_VENDOR_WORD.search(line.text.upper()))


def _vendor_name(source: list[Line]) -> str:
    text = re.sub(r"\s+", " ", " ".join(line.text.strip() for line in source))
    ends = [m.end() for m in _LEGAL_FORM.finditer(text)]
    if ends:  # a registration number after the legal form is not part of the name
        text = text[: ends[-1]]
    return text.strip(" ,:;")


def _vendor(lines: list[Line]) -> Field | None:
    candidates = _vendor_candidates(lines)
    if not candidates:
        return None
    score, source = max(candidates, key=lambda c: c[0])
    certainty = 0.9 if score >= 2.5 else 0.75 if score >= 1.5 else 0.5
    return field_from(_vendor_name(source), source, certainty)


def extract_receipt(lines: list[Line], kind: str = "receipt") -> DocumentFields:
    """The fields of a receipt (`kind="receipt"`) or an invoice (`kind="invoice"`)."""
    total, total_currency = _total(lines)
    currency = _currency(lines, total, total_currency)
    if total is not None and total.currency is None and currency is not None:
        total = Field(total.value, total.text, total.box, total.confidence, currency.value)
    # Month-first only where US dollars are named as such: a bare "$" is also the dollar of
    # day-first countries (Singapore, Australia, Canada, ...).
    order = "MDY" if any(re.search(r"(?<![A-Z])(USD|US\$)", l.text.upper()) for l in lines) else "DMY"
    tax = _tax(lines, total)
    if tax is not None and tax.currency is None and currency is not None:
        tax = Field(tax.value, tax.text, tax.box, tax.confidence, currency.value)
    number_name = "invoice_number" if kind == "invoice" else "receipt_number"
    return DocumentFields(kind, {
        "vendor": _vendor(lines),
        "date": _date(lines, order),
        "total": total,
        "tax": tax,
        number_name: _number(lines, kind),
        "currency": currency,
    })
