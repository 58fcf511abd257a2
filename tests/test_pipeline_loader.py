"""The real loader's failures, on the real default weights: which say the version is bad (sticky:
the controller rejects it) and which do not (the controller retries them with backoff)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from server.lifecycle.evaluation import Evaluator
from server.lifecycle.loader import LoadFailure, LoadRequest
from server.lifecycle.pipeline_loader import PipelineLoader
from server.lifecycle.source import VerifyCache, scan_repository
from server.lifecycle.verdicts import VerdictStore
from server.quality.gate import GatePolicy
from server.repository.layout import ModelRepository
from server.repository.publish import publish
from server.runtime import RuntimeOptions
from tests.support.lifecycle import write_golden_set
from tests.support.server import DEFAULT_VERSION

OPTIONS = RuntimeOptions(cpu_threads=2)


def _load(repo: ModelRepository, version: str, tmp_path: Path) -> None:
    inspection = scan_repository(repo, 0.0, VerifyCache()).versions[version]
    loader = PipelineLoader(repo, OPTIONS, Evaluator(GatePolicy(0.01, 0.3), repo.root),
                            VerdictStore(tmp_path / "verdicts"), warmup_shapes=((320, 320),))
    loader.load(LoadRequest(inspection, approval=None, live=None)).model.close()


def test_an_unreadable_golden_set_is_not_the_versions_fault(default_version_dir: Path, tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "models")
    publish(default_version_dir, repo, "1.0.0", created_by="tests")
    golden = write_golden_set(repo.root / "golden")
    (golden / "orphan.txt").write_text("a text without its image")
    with pytest.raises(LoadFailure) as failure:
        _load(repo, "1.0.0", tmp_path)
    assert failure.value.code == "gate_error" and not failure.value.sticky
    assert "orphan.txt without an image" in failure.value.reason
    (golden / "orphan.txt").unlink()
    _load(repo, "1.0.0", tmp_path)  # the same version passes once the set is mended


def test_a_malformed_quality_gate_in_the_manifest_is_the_versions_fault(default_version_dir: Path,
                                                                        tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(default_version_dir, source)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["quality_gate"] = {"tolerence": 0.02}  # misspelt
    (source / "manifest.json").write_text(json.dumps(manifest))
    repo = ModelRepository(tmp_path / "models")
    publish(source, repo, "1.0.0", created_by="tests")
    with pytest.raises(LoadFailure) as failure:
        _load(repo, "1.0.0", tmp_path)
    assert failure.value.code == "bad_manifest" and failure.value.sticky
    assert "tolerence" in failure.value.reason
