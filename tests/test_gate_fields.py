"""The quality gate on golden sets with expected fields (`NAME.fields.json`): the decision on scores,
the manifest's overrides, the set's format, and that a set without fields costs no extraction. The
gate run on real readings of the synthetic cheques and invoices is in test_fields_ocr.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from server.pipeline.types import ImageResult, StageTimings, TextLine
from server.quality import gate
from server.quality.expected_fields import ExpectedFields
from server.quality.field_documents import write_field_set
from server.quality.gate import GatePolicy, GatePolicyError, GoldenScore, golden_score, judge
from server.quality.golden import GoldenSample, GoldenSet, GoldenSetError, load_golden_set

POLICY = GatePolicy(tolerance=0.01, max_cer=0.3, min_field_match=0.8, field_tolerance=0.05)
SET = GoldenSet("set", "set", ())


def score(field_hits: int, fields: int, cer: float = 0.02) -> GoldenScore:
    return GoldenScore(cer=cer, errors=int(cer * 100), chars=100, images=4, field_hits=field_hits, fields=fields)


def test_fields_floor_and_live_tolerance() -> None:
    passed = judge(score(18, 20), SET, POLICY, None)
    assert passed.passed and "fields 18/20 exact" in passed.reason
    assert (passed.field_hits, passed.fields, passed.field_match, passed.baseline_field_match) == (18, 20, 0.9, None)
    floor = judge(score(15, 20), SET, POLICY, None)
    assert not floor.passed and "below the floor 0.8000" in floor.reason and "15 of 20 expected fields" in floor.reason
    live = ("1.0.0", score(20, 20))
    assert judge(score(19, 20), SET, POLICY, live).passed  # 0.95: within the tolerance of the live 1.0
    worse = judge(score(18, 20), SET, POLICY, live)
    assert not worse.passed and "worse than the live version 1.0.0's 1.0000" in worse.reason
    assert worse.baseline_field_match == 1.0
    # A live score on other expected fields (another set, or one judged before fields existed) is no baseline.
    assert judge(score(18, 20), SET, POLICY, ("1.0.0", score(10, 10))).passed
    # CER is judged first, as before.
    assert "above the ceiling" in judge(score(20, 20, cer=0.5), SET, POLICY, None).reason


def test_a_set_without_fields_is_judged_as_before() -> None:
    result = judge(score(0, 0), SET, POLICY, ("1.0.0", score(0, 0)))
    assert result.passed and "fields" not in result.reason
    assert result.to_json()["fields"] is None and result.to_json()["field_match"] is None


def test_manifest_may_set_the_field_thresholds() -> None:
    assert POLICY.for_manifest({"min_field_match": 1.0}).min_field_match == 1.0
    assert POLICY.for_manifest({"field_tolerance": 0}).field_tolerance == 0.0
    with pytest.raises(GatePolicyError):
        POLICY.for_manifest({"min_field_match": 1.5})
    # Without field settings a policy checks no fields (floor 0, tolerance 1).
    assert judge(score(0, 20), SET, GatePolicy(tolerance=0.01, max_cer=0.3), ("1.0.0", score(20, 20))).passed


class _Reader:
    """Returns one fixed line for every image, and counts the readings."""

    def __init__(self) -> None:
        self.runs = 0

    def run(self, image: np.ndarray) -> ImageResult:
        self.runs += 1
        line = TextLine("TOTAL 9.00", 0.99, np.array([[0, 0], [90, 0], [90, 20], [0, 20]], dtype=np.float32))
        return ImageResult([line], StageTimings(), 100, 40)


def test_fields_are_extracted_only_where_expected(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate reads each image once, and extracts fields only for images that expect them."""
    extracted: list[str] = []
    real = gate.extract_fields
    monkeypatch.setattr(gate, "extract_fields", lambda kind, lines: extracted.append(kind) or real(kind, lines))
    image = np.zeros((40, 100, 3), dtype=np.uint8)
    plain = [GoldenSample(f"p{k}", image, "TOTAL 9.00") for k in range(3)]
    reader = _Reader()
    without = golden_score(reader, plain)  # type: ignore[arg-type]
    assert (reader.runs, extracted, without.fields, without.cer) == (3, [], 0, 0.0)

    expected = ExpectedFields("r", "receipt", {"total": "9.00", "date": "2026-01-02"})
    scored = golden_score(reader, [*plain, GoldenSample("r", image, "TOTAL 9.00", expected)])  # type: ignore[arg-type]
    assert (reader.runs, extracted, scored.field_hits, scored.fields) == (7, ["receipt"], 1, 2)


def test_the_golden_reader_pairs_expected_fields(tmp_path: Path) -> None:
    target = write_field_set(tmp_path / "golden", cheques=2, invoices=1)
    samples = load_golden_set(target)
    assert [(s.name, s.expected_fields.kind if s.expected_fields else None) for s in samples] == [
        ("cheque-00", "cheque"), ("cheque-01", "cheque"), ("invoice-00", "invoice")]
    assert samples[1].expected_fields is not None and samples[1].expected_fields.fields["amounts_agree"] is False
    (target / "invoice-00.fields.json").write_text(json.dumps({"kind": "invoice", "fields": {"totl": "1.00"}}))
    with pytest.raises(GoldenSetError, match="no field.s. totl in a document of kind invoice"):
        load_golden_set(target)
    (target / "invoice-00.fields.json").write_text("{not json")
    with pytest.raises(GoldenSetError, match="not UTF-8 JSON"):
        load_golden_set(target)
    (target / "invoice-00.fields.json").unlink()
    (target / "orphan.fields.json").write_text(json.dumps({"kind": "receipt", "fields": {}}))
    with pytest.raises(GoldenSetError, match="orphan.fields.json without an image"):
        load_golden_set(target)
