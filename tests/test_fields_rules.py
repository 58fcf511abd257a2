"""Field rules on lines written by the test (no OCR): words to numbers, amounts, dates, layout, kinds."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import numpy as np
import pytest

from server.documents.textlayer import TextLayerLine
from server.fields import extract_fields, lines_from
from server.fields.amounts import currencies_in, find_amounts
from server.fields.dates import find_dates, parse_date
from server.quality.expected_fields import field_matches, score_fields
from server.quality.field_documents import generate, number_words
from server.fields.types import Line
from server.fields.words import parse_amount_words
from server.pipeline.types import TextLine


def page(rows: list[list[tuple[str, float]]], height: float = 24.0, gap: float = 10.0,
         width: float = 600.0) -> list[Line]:
    """Lines at given x positions (fractions of `width`), one row per entry, 24 px high."""
    lines = []
    for k, row in enumerate(rows):
        y = 20 + k * (height + gap)
        for text, x in row:
            x0 = x * width
            x1 = x0 + 11 * len(text)
            lines.append(Line(text, 0.98, np.array([[x0, y], [x1, y], [x1, y + height], [x0, y + height]],
                                                   dtype=np.float32)))
    return lines


# -- amount in words -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("One thousand two hundred thirty-four dollars and 56/100", "1234.56"),
    ("ONE THOUSAND TWO HUNDRED AND THIRTY FOUR DOLLARS AND FIFTY SIX CENTS ONLY", "1234.56"),
    ("RINGGIT MALAYSIA TWO HUNDRED AND FIFTY AND SEN TWENTY ONLY", "250.20"),
    ("Fifty six cents", "0.56"),
    ("ten dollars and fifty", "10.50"),
    ("TWELVE HUNDRED DOLLARS", "1200"),
    ("NINETY ONE THOUSAND ONE HUNDRED NINETY THREE AND SEN SIXTY SIX ONLY", "91193.66"),
    ("one hundred twenty three thousand four hundred fifty six and no/100 dollars", "123456"),
    ("Seventeen thousand eight hundred eighty-eight and 00/100", "17888"),
    ("RINGGIT MALAYSIA : ONE MILLION ONLY", "1000000"),
    ("FOURTY FIVE ONLY", "45"),  # a common misspelling on cheques
    # PP-OCR drops the spaces between Latin words:
    ("ONETHOUSANDTWOHUNDREDTHIRTYFOURDOLLARSANDFIFTYSIXCENTSONLY", "1234.56"),
    ("SEVENTYSEVENTHOUSANDEIGHTEENAND45/100DOLLARS", "77018.45"),
    ("NINETYNINEANDSENNINETYNINEONLY", "99.99"),
])
def test_amount_in_words(text: str, value: str) -> None:
    parsed = parse_amount_words(text)
    assert parsed is not None and parsed.value == Decimal(value)


@pytest.mark.parametrize("text", ["PAY TO THE ORDER OF", "AUTHORISED SIGNATURE", "", "12345"])
def test_text_without_an_amount_in_words(text: str) -> None:
    assert parse_amount_words(text) is None


@pytest.mark.parametrize("value", [0, 7, 13, 40, 99, 100, 101, 999, 1000, 1001, 12345, 100000, 999999, 1000000,
                                   7654321, 999999999])
def test_words_round_trip_with_the_generator(value: int) -> None:
    parsed = parse_amount_words(number_words(value))
    assert parsed is not None and parsed.value == value


# -- amounts, currencies, dates ------------------------------------------------------------------------


def test_amounts_and_currencies() -> None:
    found = find_amounts("TOTAL (RM) 1,234.56  RM9.00 -0.02 1.234,56")
    assert [a.value for a in found] == [Decimal("1234.56"), Decimal("9.00"), Decimal("-0.02"), Decimal("1234.56")]
    assert [a.currency for a in found] == [None, "MYR", None, None]
    assert find_amounts("Tel 07-3507405 QTY 3 25/12/2018 8:13:39") == []
    assert currencies_in("TOTAL (RM) 12.50") == ["MYR"]
    assert currencies_in("FORM TERMS") == []
    assert currencies_in("S$ 5.20 US$3.00 €4,00 £1.00") == ["SGD", "USD", "EUR", "GBP"]


@pytest.mark.parametrize(("text", "iso"), [
    ("Date:25/12/20188:13:39PM", "2018-12-25"),  # the time glued to the year by OCR
    ("18-11-1813:58SH01Z153", "2018-11-18"),  # a two-digit year with the time glued on
    ("12-01-19 21:13", "2019-01-12"),
    ("12/28/2017 10:17:32 PM", "2017-12-28"),  # day first is impossible: month first
    ("2018-03-05 12:00:00", "2018-03-05"),
    ("05 MAR 2018", "2018-03-05"),
    ("Mar 5, 2018", "2018-03-05"),
    ("TARIKH 5 Ogos 2019", "2019-08-05"),  # Malay month name
    ("DATE25.12.2018", "2018-12-25"),
])
def test_dates(text: str, iso: str) -> None:
    assert [d.value.isoformat() for d in find_dates(text)][:1] == [iso]


def test_not_dates() -> None:
    for text in ("HC03-7-15", "Tel: 07-355 1234", "INV-2026-0012", "03/2018", "99/99/2018"):
        assert find_dates(text) == [], text
    assert parse_date("03/04/2018") == date(2018, 4, 3)
    assert parse_date("03/04/2018", order="MDY") == date(2018, 3, 4)


# -- receipt and invoice rules ----------------------------------------------------------------------------


def test_receipt_fields_from_layout() -> None:
    lines = page([
        [("tan woon yann", 0.1)],  # a name printed above the company (SROIE-style header)
        [("SUNRISE HARDWARE SDN BHD", 0.15)],
        [("(123456-X)", 0.35)],
        [("NO. 5, JALAN SAGU 18, 81100 JOHOR", 0.05)],
        [("TEL: 07-355 1234", 0.2)],
        [("TAX INVOICE", 0.35)],
        [("GOGIANT ENGINEERING SDN BHD", 0.05)],  # the customer, printed under the title
        [("Receipt No: CS00082552", 0.0)],
        [("Date:", 0.0), ("25/12/2018 8:13:39PM", 0.3)],
        [("PVC PIPE 20MM", 0.0), ("19.50", 0.85)],
        [("SUBTOTAL", 0.0), ("19.50", 0.85)],
        [("GST @6%", 0.0), ("1.17", 0.85)],
        [("TOTAL (RM)", 0.0), ("20.67", 0.85)],
        [("ROUNDING", 0.0), ("-0.02", 0.85)],
        [("CASH", 0.0), ("50.00", 0.85)],
        [("CHANGE", 0.0), ("29.35", 0.85)],
        [("TOTAL QTY: 1", 0.0)],
    ])
    fields = extract_fields("receipt", lines)
    assert fields.value("vendor") == "SUNRISE HARDWARE SDN BHD"
    assert fields.value("date") == "2018-12-25"
    assert fields.value("total") == "20.65"  # what was paid: cash 50.00 - change 29.35, the rounded total
    assert fields.value("tax") == "1.17"
    assert fields.value("receipt_number") == "CS00082552"
    assert fields.value("currency") == "MYR"
    out = fields.to_json()
    assert out["kind"] == "receipt" and out["total"]["currency"] == "MYR"
    assert set(out["total"]) == {"value", "text", "box", "confidence", "currency"}
    assert 0 < out["total"]["confidence"] <= 1 and len(out["total"]["box"]) == 4


def test_total_value_below_its_label_and_drifting_columns() -> None:
    """A narrow receipt prints the amount under TOTAL; a bent photo puts the amounts half a row low."""
    narrow = page([[("BLUE CAFE", 0.3)], [("Total:", 0.0)], [("9.00", 0.1)], [("THANK YOU", 0.3)]])
    assert extract_fields("receipt", narrow).value("total") == "9.00"
    drifting = page([[("KEDAI RUNCIT AH SENG", 0.2)]] + [[(label, 0.0)] for label in
                    ("Sub Total", "Discount", "Total Excl GST", "GST 6%", "Total", "Rounding", "CASH", "CHANGE")])
    values = ("15.00", "0.00", "15.00", "0.00", "15.00", "0.00", "20.00", "5.00")
    for k, value in enumerate(values):  # each amount 20 px (0.6 row) below its label's row
        y = 20 + (k + 1) * 34 + 20
        drifting.append(Line(value, 0.99, np.array([[500, y], [560, y], [560, y + 24], [500, y + 24]], np.float32)))
    assert extract_fields("receipt", drifting).value("total") == "15.00"


def test_invoice_fields() -> None:
    lines = page([
        [("ORCHID OFFICE SOLUTIONS SDN BHD", 0.2)],
        [("38 JALAN AMPANG, 50450 KUALA LUMPUR", 0.15)],
        [("INVOICE", 0.4)],
        [("INVOICE NO: INV-2026-0042", 0.0), ("DATE: 08-12-2023", 0.7)],
        [("BILL TO: DELTA CAFE", 0.0), ("TERMS: 30 DAYS", 0.7)],
        [("5", 0.0), ("TONER CARTRIDGE 85A", 0.1), ("40.98", 0.6), ("204.90", 0.85)],
        [("SUBTOTAL", 0.5), ("204.90", 0.85)],
        [("SST 8%", 0.5), ("16.39", 0.85)],
        [("TOTAL DUE (RM)", 0.5), ("221.29", 0.85)],
        [("PAYMENT DUE BY 07-01-2024", 0.0)],
    ])
    fields = extract_fields("invoice", lines)
    assert {name: fields.value(name) for name in fields.fields} == {
        "vendor": "ORCHID OFFICE SOLUTIONS SDN BHD", "date": "2023-12-08", "total": "221.29", "tax": "16.39",
        "invoice_number": "INV-2026-0042", "currency": "MYR"}


def test_us_dollar_invoices_read_dates_month_first() -> None:
    lines = page([[("NOVA DIGITAL SUPPLIES INC", 0.2)], [("DATE: 03/04/2024", 0.0)],
                  [("TOTAL DUE (US$)", 0.5), ("99.00", 0.85)]])
    fields = extract_fields("invoice", lines)
    assert fields.value("date") == "2024-03-04" and fields.value("currency") == "USD"


# -- cheques -------------------------------------------------------------------------------------------------


def cheque_lines(words: list[str], figures: str) -> list[Line]:
    return page([
        [("PUBLIC BANK BERHAD", 0.0), ("CHEQUE NO. 861563", 0.75)],
        [("DATE", 0.7), ("01 MAR 2019", 0.82)],
        [("PAY", 0.0), ("SITI NURHALIZA BINTI AHMAD", 0.08), ("OR BEARER", 0.85)],
        [("RINGGIT MALAYSIA", 0.0)],
        [(words[0], 0.0), (figures, 0.8)],
        *[[(line, 0.0)] for line in words[1:]],
        [("A/C NO. 133009460634", 0.0), ("AUTHORISED SIGNATURE", 0.7)],
        [("861563 546146-549 8805679273", 0.12)],
    ], width=1000)


def test_cheque_fields_and_agreement() -> None:
    words = ["NINETY ONE THOUSAND ONE HUNDRED NINETY THREE", "AND SEN SIXTY SIX ONLY"]
    agreeing = extract_fields("cheque", cheque_lines(words, "RM **91,193.66**"))
    assert {name: agreeing.value(name) for name in agreeing.fields} == {
        "date": "2019-03-01", "payee": "SITI NURHALIZA BINTI AHMAD", "amount": "91193.66",
        "amount_words": "91193.66", "cheque_number": "861563"}
    assert agreeing.amounts_agree is True and agreeing.fields["amount"].currency == "MYR"
    assert agreeing.to_json()["amounts_agree"] is True
    disagreeing = extract_fields("cheque", cheque_lines(words, "RM **91,202.66**"))
    assert disagreeing.value("amount") == "91202.66" and disagreeing.amounts_agree is False
    without_words = extract_fields("cheque", [l for l in cheque_lines(words, "RM 5.00") if "SIXTY" not in l.text
                                              and "NINETY" not in l.text])
    assert without_words.amounts_agree is None  # nothing to compare is not agreement


def test_us_cheque_with_spaces_dropped() -> None:
    lines = page([
        [("FIRSTNATIONALBANK", 0.0), ("CHEQUENO.004512", 0.75)],
        [("DATE", 0.7), ("MAR05,2026", 0.82)],
        [("PAYTOTHEORDEROF", 0.0), ("JOHNA.SMITH", 0.3)],
        [("THESUMOF", 0.0)],
        [("ONETHOUSANDTWOHUNDREDTHIRTYFOURAND56/100DOLLARS", 0.0), ("$**1,234.56**", 0.8)],
    ], width=1000)
    fields = extract_fields("cheque", lines)
    assert fields.value("payee") == "JOHNA.SMITH" and fields.value("date") == "2026-03-05"
    assert fields.value("amount_words") == "1234.56" and fields.amounts_agree is True
    assert fields.value("cheque_number") == "004512"


# -- inputs and scoring ---------------------------------------------------------------------------------------


def test_pipeline_and_text_layer_lines_are_both_accepted() -> None:
    box = np.array([[0, 0], [100, 0], [100, 20], [0, 20]], dtype=np.float32)
    ocr = [TextLine("TOTAL 12.50", 0.9, box)]
    layer = [TextLayerLine("TOTAL 12.50", box)]
    assert extract_fields("receipt", ocr).value("total") == extract_fields("receipt", layer).value("total") == "12.50"
    assert lines_from(layer)[0].score == 1.0
    with pytest.raises(ValueError, match="fields must be one of"):
        extract_fields("passport", ocr)


def test_exact_match_normalisation() -> None:
    assert field_matches("total", "9.0", "9.00") and not field_matches("total", "9.00", "9.01")
    assert field_matches("vendor", "BOOK TA .K SDN BHD", "booktA.k sdnbhd")
    assert not field_matches("vendor", "BOOK TA .K SDN BHD", "BOOKTA_K SDNBHD")
    assert field_matches("date", "2018-12-25", "2018-12-25") and not field_matches("date", "2018-12-25", None)
    assert field_matches("amounts_agree", False, False) and not field_matches("amounts_agree", False, None)
    assert field_matches("currency", "myr", "MYR")


def test_synthetic_documents_are_deterministic_and_include_a_mismatch() -> None:
    first, again = generate(cheques=3, invoices=2), generate(cheques=3, invoices=2)
    assert [d.name for d in first] == ["cheque-00", "cheque-01", "cheque-02", "invoice-00", "invoice-01"]
    for a, b in zip(first, again):
        assert a.fields == b.fields and a.text == b.text and np.array_equal(a.image, b.image)
    agreement = [d.fields["amounts_agree"] for d in first if d.kind == "cheque"]
    assert agreement == [True, True, False]
    mismatched = first[2].fields
    assert Decimal(mismatched["amount"]) != Decimal(mismatched["amount_words"])
    # The expected fields follow from the printed text: the rules read them all off a perfect reading.
    for doc in first:
        rows = [row for row in doc.text.splitlines() if row]
        lines = page([[(row, 0.0)] for row in rows], width=2000)
        scores = score_fields(doc.fields, extract_fields(doc.kind, lines))
        missed = {name for name, ok in scores.items() if not ok}
        assert not missed - {"payee"}, (doc.name, missed)
