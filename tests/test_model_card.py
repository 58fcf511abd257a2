"""The model card in the manifest: validation, publishing it (API and CLI), carrying it over; version
names that carry the framework."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from server.repository.card import CardError, ModelCard, load_card
from server.repository.layout import ModelRepository, parse_version
from server.repository.manifest import Manifest, ManifestError, read_manifest
from server.repository.publish import publish
from tests.governance_support import make_src
from tests.support.server import ROOT

FULL_CARD = {
    "trained_by": "ml-team@example.com",
    "training_data": {"id": "receipts-2026-03", "sha256": "ab" * 32},
    "evaluation": {"dataset": "sroie-dev", "metrics": {"cer": 0.066, "line_recall": 0.78, "images": 40}},
    "training_framework": {"name": "PaddleOCR", "version": "3.3.0"},
    "parent_version": "1.0.0-ppocrv4",
    "code_commit": "3f2c9ab",
    "notes": "fine-tuned on the March receipts",
}


def test_a_full_card_round_trips() -> None:
    card = ModelCard.from_json(FULL_CARD)
    assert card.training_data is not None and card.training_data.sha256 == "ab" * 32
    assert card.evaluation is not None
    assert card.evaluation.metrics == {"cer": 0.066, "line_recall": 0.78, "images": 40.0}
    assert ModelCard.from_json(card.to_json()) == card
    assert card.to_json()["evaluation"]["metrics"]["images"] == 40.0


def test_a_card_may_say_only_what_is_known() -> None:
    card = ModelCard.from_json({"trained_by": "alice", "training_framework": {"name": "PaddleOCR"}})
    assert card.to_json() == {"trained_by": "alice", "training_framework": {"name": "PaddleOCR"}}


@pytest.mark.parametrize(("change", "message"), [
    ({"trained-by": "x"}, "unknown model card fields ['trained-by']"),
    ({"training_data": {"sha256": "ab" * 32}}, "training_data.id is required"),
    ({"training_data": {"id": "d", "sha256": "xyz"}}, "training_data.sha256 must be 64 lowercase hex"),
    ({"training_data": {"id": "d", "url": "http://x"}}, "training_data has unknown fields ['url']"),
    ({"evaluation": {"metrics": {"cer": 0.1}}}, "evaluation.dataset is required"),
    ({"evaluation": {"dataset": "d", "metrics": {"cer": "low"}}}, "evaluation.metrics.cer must be a finite number"),
    ({"evaluation": {"dataset": "d", "metrics": {"cer": float("nan")}}}, "must be a finite number"),
    ({"evaluation": {"dataset": "d", "metrics": {"ok": True}}}, "must be a finite number"),
    ({"parent_version": "../1.0.0"}, "parent_version: invalid version name"),
    ({"code_commit": "main"}, "code_commit must be a git commit id"),
    ({"notes": "x" * 5000}, "notes is longer than 4096"),
    ({"trained_by": 7}, "trained_by must be a non-empty string"),
    ({"training_framework": "paddle"}, "training_framework must be a mapping"),
])
def test_malformed_cards_are_refused_naming_the_field(change: dict, message: str) -> None:
    with pytest.raises(CardError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ModelCard.from_json({**FULL_CARD, **change})


def test_load_card_reports_bad_yaml(tmp_path: Path) -> None:
    (tmp_path / "card.yaml").write_text("trained_by: [unclosed\n")
    with pytest.raises(CardError, match="not valid YAML"):
        load_card(tmp_path / "card.yaml")


def test_a_manifest_with_a_bad_card_is_a_bad_manifest(tmp_path: Path) -> None:
    target = publish(make_src(tmp_path / "src"), ModelRepository(tmp_path / "models"), "1.0.0")
    data = json.loads((target / "manifest.json").read_text())
    assert "card" not in data  # no card given: none written
    data["card"] = {"parent_version": "latest"}
    with pytest.raises(ManifestError, match="card: parent_version"):
        Manifest.from_json(data)


def test_publish_records_the_card_and_carries_it_over(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "models")
    card = ModelCard.from_json(FULL_CARD)
    first = publish(make_src(tmp_path / "src"), repo, "1.2.3-paddle3.3", card=card)
    assert read_manifest(first).card == card
    assert json.loads((first / "manifest.json").read_text())["card"]["parent_version"] == "1.0.0-ppocrv4"
    carried = publish(first, repo, "1.2.4-paddle3.3")
    assert read_manifest(carried).card == card
    replaced = publish(first, repo, "1.2.5-paddle3.3", card=ModelCard(trained_by="bob"))
    assert read_manifest(replaced).card == ModelCard(trained_by="bob")


def test_cli_publish_takes_a_card_file(tmp_path: Path) -> None:
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(FULL_CARD))
    env = {**os.environ, "OCR_MODEL_REPO": str(tmp_path / "models"), "OCR_STATE_DIR": str(tmp_path / "state")}
    command = [sys.executable, "-m", "server.cli", "models", "publish", str(make_src(tmp_path / "src")),
               "--version", "2.0.0-paddle3.3", "--card", str(tmp_path / "card.yaml")]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert read_manifest(tmp_path / "models" / "ppocr" / "2.0.0-paddle3.3").card == ModelCard.from_json(FULL_CARD)
    (tmp_path / "bad.yaml").write_text("trained_by: alice\ntrainer: bob\n")
    command[-3:] = ["2.0.1", "--card", str(tmp_path / "bad.yaml")]
    failed = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "unknown model card fields ['trainer']" in failed.stderr
    assert not (tmp_path / "models" / "ppocr" / "2.0.1").exists()


def test_version_names_may_carry_the_framework() -> None:
    """Users name versions after the framework they need (`1.2.3-paddle3.3`); they order like any other
    version: by number, then by label as text (so the label only breaks ties between equal numbers)."""
    names = ["1.2.3-paddle3.3", "1.2.3-paddle3.10", "1.2.3-onnx1.31", "1.10.0-paddle3.0", "1.2.3"]
    for name in names:
        parse_version(name)
    assert sorted(names, key=parse_version) == [
        "1.2.3", "1.2.3-onnx1.31", "1.2.3-paddle3.10", "1.2.3-paddle3.3", "1.10.0-paddle3.0"]
