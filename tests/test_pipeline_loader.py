"""The real loader's failures, on the real default weights: which say the version is bad (sticky:
the controller rejects it) and which do not (the controller retries them with backoff); its signature
step at every load and its re-check of a version being served (on small versions of random bytes:
a signature is refused before any network is opened)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from server.governance.signing import sign_directory
from server.governance.trust import key_id
from server.governance.verify import SignatureChecker
from server.lifecycle.evaluation import Evaluator
from server.lifecycle.loader import LoadedModel, LoadFailure, LoadRequest
from server.lifecycle.pipeline_loader import PipelineLoader
from server.lifecycle.source import VerifyCache, fingerprint, scan_repository
from server.lifecycle.states import VersionState
from server.lifecycle.verdicts import VerdictStore
from server.quality.gate import GatePolicy
from server.repository.layout import ModelRepository
from server.repository.manifest import read_manifest
from server.repository.publish import publish
from server.runtime import RuntimeOptions
from tests.governance_support import KeyPair, new_key, published, trust_entry
from tests.support.lifecycle import write_golden_set
from tests.support.server import PADDLE_VERSION

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


def _signed_loader(tmp_path: Path, require: bool) -> tuple[ModelRepository, PipelineLoader, KeyPair]:
    """A repository, and a loader whose trust store holds one release key (returned)."""
    key = new_key(tmp_path / "keys", "release")
    (tmp_path / "trusted.pem").write_text(trust_entry(key))
    (tmp_path / "revoked.yaml").write_text("keys: []\n")
    repo = ModelRepository(tmp_path / "models")
    checker = SignatureChecker(tmp_path / "trusted.pem", tmp_path / "revoked.yaml", reload_interval_s=0)
    loader = PipelineLoader(repo, OPTIONS, Evaluator(GatePolicy(0.01, 0.3), repo.root),
                            VerdictStore(tmp_path / "verdicts"), signatures=checker, require_signature=require)
    return repo, loader, key


def _flip_in_place(path: Path, offset: int = 10) -> None:
    """Change one byte keeping the size, the inode and the mtime: invisible to the scan's fingerprint."""
    info = path.stat()
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ 0xFF]))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


@pytest.mark.parametrize("require", [True, False])
def test_the_signature_is_checked_first_and_refused_as_the_policy_says(tmp_path: Path, require: bool) -> None:
    repo, loader, key = _signed_loader(tmp_path, require)
    published(tmp_path, "1.0.0", repo)  # unsigned
    tampered = published(tmp_path, "2.0.0", repo)
    sign_directory(tampered, key.private_key)
    changed = tampered / "det" / "inference.pdmodel"
    changed.write_bytes(b"\0" + changed.read_bytes()[1:])  # changed after signing, with the manifest made to match
    manifest = json.loads((tampered / "manifest.json").read_text())
    manifest["files"]["det/inference.pdmodel"] = hashlib.sha256(changed.read_bytes()).hexdigest()
    (tampered / "manifest.json").write_text(json.dumps(manifest))
    scan = scan_repository(repo, 0.0, VerifyCache())
    assert {v.state for v in scan.versions.values()} == {VersionState.NEW}  # checksums alone see nothing wrong

    with pytest.raises(LoadFailure) as failure:
        loader.load(LoadRequest(scan.versions["2.0.0"], approval=None, live=None))
    assert (failure.value.code, failure.value.sticky, failure.value.withdraws) == ("tampered", True, True)
    assert failure.value.signature is not None and failure.value.signature["key_id"] == key_id(
        key.private_key.public_key())
    with pytest.raises(LoadFailure) as failure:
        loader.load(LoadRequest(scan.versions["1.0.0"], approval=None, live=None))
    if require:
        assert failure.value.code == "unsigned" and "models sign" in failure.value.reason
    else:  # unsigned passes the signature step and fails later, at the probe (its networks are random bytes)
        assert failure.value.code in {"crashed", "load_error"} and failure.value.signature is None


@pytest.mark.parametrize("signed", [True, False])
def test_the_recheck_finds_a_change_the_fingerprint_cannot_see(tmp_path: Path, signed: bool) -> None:
    repo, loader, key = _signed_loader(tmp_path, require=signed)
    version = published(tmp_path, "1.0.0", repo)
    if signed:
        sign_directory(version, key.private_key)
    model = LoadedModel("ppocr", "1.0.0", version, read_manifest(version), pipeline=None)  # type: ignore[arg-type]
    assert loader.recheck(model) is None

    before = fingerprint(version)[0]
    _flip_in_place(version / "rec" / "inference.pdiparams")
    assert fingerprint(version)[0] == before  # the scan cannot tell
    failure = loader.recheck(model)
    assert failure is not None and (failure.code, failure.withdraws) == ("tampered", True)
    assert failure.signature is not None and failure.signature["version_digest"] == hashlib.sha256(
        (version / "manifest.json").read_bytes()).hexdigest()
    if signed:  # the signature names the file
        assert "rec/inference.pdiparams changed after signing" in failure.reason
    else:  # the checksums the version was approved with do
        assert "rec/inference.pdiparams: sha256 mismatch" in failure.reason


def test_the_recheck_applies_a_revocation_made_while_serving(tmp_path: Path) -> None:
    repo, loader, key = _signed_loader(tmp_path, require=False)  # revoked is refused even when not required

    other = published(tmp_path, "2.0.0", repo)
    kid = sign_directory(other, key.private_key).key_id
    model = LoadedModel("ppocr", "2.0.0", other, read_manifest(other), pipeline=None)  # type: ignore[arg-type]
    assert loader.recheck(model) is None
    (tmp_path / "revoked.yaml").write_text(f"keys: [{kid}]\n")  # the key leaked: revoked while serving
    failure = loader.recheck(model)
    assert failure is not None and failure.code == "revoked_key" and failure.withdraws
    assert failure.signature is not None and failure.signature["key_id"] == kid
