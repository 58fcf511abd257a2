"""The default golden set: synthetic receipts and invoices with known text, in the gate's pair format."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from server.lifecycle.pipeline_loader import load_version
from server.quality.golden import GoldenSetError, load_golden_set
from server.repository.layout import ModelRepository
from server.quality.receipts import DOCUMENTS, generate, write_golden_set
from server.runtime import RuntimeOptions
from server.quality.textmetrics import edit_distance, normalize_text
from tests.support.server import PADDLE_VERSION, ONNX_MODELS, ROOT


@pytest.fixture(scope="module")
def golden_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default set, as `ocr-server models install-golden` writes it."""
    root = tmp_path_factory.mktemp("golden-repo")
    done = subprocess.run([sys.executable, "-m", "server.cli", "models", "install-golden", "--model-repo", str(root)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(root / "golden")
    return root / "golden"


def test_same_seed_same_set() -> None:
    first, again, other = generate(count=3), generate(count=3), generate(seed=7, count=3)
    assert [d.name for d in first] == ["receipt-00", "receipt-01", "invoice-02"]
    for a, b in zip(first, again):
        assert a.text == b.text and np.array_equal(a.image, b.image)
    assert [d.text for d in first] != [d.text for d in other]


def test_pairs_on_disk_match_the_generator(golden_dir: Path) -> None:
    items = load_golden_set(golden_dir)
    documents = generate()
    assert len(items) == len(documents) == DOCUMENTS
    for item, doc in zip(sorted(items, key=lambda i: i.name), sorted(documents, key=lambda d: d.name)):
        assert item.name == doc.name and (golden_dir / f"{item.name}.png").is_file()
        assert item.text == doc.text
        assert np.array_equal(item.image, doc.image)  # PNG: lossless
    assert not [p for p in golden_dir.parent.iterdir() if p.name.startswith(".")]  # staging cleaned up


def test_documents_carry_what_receipts_and_invoices_carry(golden_dir: Path) -> None:
    items = load_golden_set(golden_dir)
    kinds = {item.name.split("-")[0] for item in items}
    assert kinds == {"receipt", "invoice"}
    for item in items:
        text = item.text
        assert re.search(r"\bTOTAL\b", text), item.name
        assert re.search(r"\b\d{2}[/-]\d{2}[/-]\d{4}\b|\b\d{4}-\d{2}-\d{2}\b|\b\d{2} [A-Z]{3} \d{4}\b", text), item.name
        assert re.search(r"\b(INV|CS|OR)[-\d]", text), item.name  # an invoice or bill number
        assert len(re.findall(r"\b\d{1,3}(,\d{3})*\.\d{2}\b", text)) >= 8, item.name  # item and total amounts
        assert 15 <= len(text.splitlines()) <= 40, item.name


def test_unpaired_files_are_refused(tmp_path: Path) -> None:
    write_golden_set(tmp_path / "golden", count=2)
    (tmp_path / "golden" / "receipt-00.txt").unlink()
    with pytest.raises(GoldenSetError, match="receipt-00"):
        load_golden_set(tmp_path / "golden")


def test_install_golden_keeps_an_existing_set(golden_dir: Path) -> None:
    own = golden_dir.parent / "ops" / "golden"
    own.mkdir(parents=True)
    (own / "cheque.txt").write_text("PAY TO THE ORDER OF\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "server.cli", "models", "install-golden", "--model-repo", str(own.parent)]
    kept = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert kept.returncode == 0 and "left as it is" in kept.stderr
    assert [p.name for p in own.iterdir()] == ["cheque.txt"]
    subprocess.run([*cmd, "--force"], capture_output=True, text=True, cwd=ROOT, check=True)
    assert len(load_golden_set(own)) == DOCUMENTS


def test_the_set_tells_generations_apart(golden_dir: Path, onnx_repo: Path) -> None:
    """Readable (the PP-OCRv4 default misses few characters) yet hard enough that PP-OCRv6 small, the
    better model on real receipts, scores clearly better: what a quality gate needs."""
    repo = ModelRepository(onnx_repo)
    items = load_golden_set(golden_dir)
    cer = {}
    for version in (PADDLE_VERSION, ONNX_MODELS["ppocrv6_small"]):
        model = load_version(repo, version, RuntimeOptions(cpu_threads=2))
        try:
            edits = sum(edit_distance(model.pipeline.run(i.image).text, i.text) for i in items)
        finally:
            model.close()
        cer[version] = edits / sum(len(normalize_text(i.text)) for i in items)
    assert cer[PADDLE_VERSION] < 0.15, cer
    assert cer[ONNX_MODELS["ppocrv6_small"]] < 0.6 * cer[PADDLE_VERSION], cer
