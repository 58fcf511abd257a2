from server.quality.textmetrics import cer, edit_distance, normalize_text


def test_normalisation_ignores_case_and_whitespace() -> None:
    assert normalize_text("Invoice No: 12\n A") == "invoiceno:12a"
    assert cer("INVOICENO:2026-1187", "Invoice No: 2026-1187") == 0.0


def test_cer_counts_edits_over_reference_length() -> None:
    assert edit_distance("TOTAL 9.0O", "TOTAL 9.00") == 1
    assert cer("TOTAL 9.0O", "TOTAL 9.00") == 1 / 9
    assert cer("", "ABCD") == 1.0
    assert cer("", "") == 0.0
    assert cer("X", "") == 1.0
