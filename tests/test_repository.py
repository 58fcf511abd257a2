"""The model repository: version names, the publishing protocol (what is a candidate, pending or rejected)
and publishing. These tests use small stand-in files: nothing here loads a network, so the checks on
names, checksums, symlinks and atomicity are exercised directly and quickly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.lifecycle.states import VersionState
from server.lifecycle.source import VerifyCache, fingerprint, inspect_version, scan_repository
from server.repository.layout import ModelRepository, VersionNameError, parse_version
from server.repository.manifest import read_manifest
from server.repository.publish import PublishError, publish
from tests.support.lifecycle import audit_lines
from tests.support.server import ROOT


def make_src(path: Path, with_cls: bool = True) -> Path:
    """A source folder shaped like a version: det/, cls/, rec/ with a dictionary."""
    for stage in ("det", "rec") + (("cls",) if with_cls else ()):
        (path / stage).mkdir(parents=True)
        (path / stage / "inference.pdmodel").write_bytes(os.urandom(64))
        (path / stage / "inference.pdiparams").write_bytes(os.urandom(256))
    (path / "rec" / "keys.txt").write_text("a\nb\nc\n", encoding="utf-8")
    return path


@pytest.fixture()
def repo(tmp_path: Path) -> ModelRepository:
    repository = ModelRepository(tmp_path / "models")
    repository.pipeline_dir.mkdir(parents=True)
    return repository


def backdate(path: Path, seconds: float = 60.0) -> None:
    """Move mtimes into the past, so that a rewrite is seen even within the filesystem's timestamp tick."""
    old = time.time() - seconds
    for item in [path, *path.rglob("*")]:
        os.utime(item, (old, old), follow_symlinks=False)


@pytest.mark.parametrize("name", ["1", "1.2", "1.2.3", "1.0.0-ppocrv4", "2.0.0-rc.1", "10.20.30-v5_small"])
def test_valid_version_names(name: str) -> None:
    parse_version(name)


@pytest.mark.parametrize("name", ["", "..", "../1.0.0", "1.0.0/..", "/etc", "1.0.0/x", "v1", "latest", "1..2",
                                  "1.0.0-", "1.0.0-../x", ".staging-1.0.0", "1.0.0 ", "1.0.0\n", "-1.0.0"])
def test_invalid_version_names_are_refused(name: str, repo: ModelRepository) -> None:
    with pytest.raises(VersionNameError):
        repo.version_dir(name)


def test_versions_order_numerically_then_by_label() -> None:
    names = ["1.10.0", "1.9.0", "1.2", "1.2.0-b", "1.2.0-a", "2", "0.9.9"]
    assert sorted(names, key=parse_version) == ["0.9.9", "1.2", "1.2.0-a", "1.2.0-b", "1.9.0", "1.10.0", "2"]


def test_listing_hides_staging_and_reports_what_it_ignores(repo: ModelRepository, tmp_path: Path) -> None:
    for name in ("1.0.0", "1.10.0", "1.2.0", ".staging-3.0.0-x", "latest"):
        (repo.pipeline_dir / name).mkdir()
    (repo.pipeline_dir / "2.0.0").write_text("not a directory")
    names, ignored = repo.list_entries()
    assert names == ["1.0.0", "1.2.0", "1.10.0"]
    assert dict(ignored) == {"2.0.0": "not a directory",
                             "latest": "not a version name (MAJOR[.MINOR[.PATCH]][-label])"}


def test_published_version_is_a_candidate(repo: ModelRepository, tmp_path: Path) -> None:
    target = publish(make_src(tmp_path / "src"), repo, "1.0.0", created_by="tester")
    assert target == repo.pipeline_dir / "1.0.0"
    manifest = read_manifest(target)
    assert manifest.version == "1.0.0" and manifest.created_by == "tester"
    assert set(manifest.stages) == {"det", "cls", "rec"} and manifest.stages["rec"].dict == "rec/keys.txt"
    assert manifest.source["published_from"] == str((tmp_path / "src").resolve())
    assert len(manifest.files) == 7
    inspection = inspect_version(repo, "1.0.0", settle_s=3600, cache=VerifyCache())
    assert inspection.state is VersionState.NEW, inspection.reason
    assert [p.name for p in repo.pipeline_dir.iterdir() if p.name.startswith(".staging")] == []


def test_publish_carries_a_template_manifest_over(repo: ModelRepository, tmp_path: Path) -> None:
    first = publish(make_src(tmp_path / "src", with_cls=False), repo, "1.0.0")
    manifest = json.loads((first / "manifest.json").read_text())
    manifest["settings"] = {"rec": {"drop_score": 0.7}}
    manifest["quality_gate"] = {"tolerance": 0.02}
    (first / "manifest.json").write_text(json.dumps(manifest))
    second = read_manifest(publish(first, repo, "1.1.0"))
    assert second.settings == {"rec": {"drop_score": 0.7}} and second.quality_gate == {"tolerance": 0.02}
    assert set(second.stages) == {"det", "rec"} and second.version == "1.1.0"


def test_publish_refuses_existing_versions_bad_names_and_incomplete_sources(
    repo: ModelRepository, tmp_path: Path
) -> None:
    src = make_src(tmp_path / "src")
    publish(src, repo, "1.0.0")
    with pytest.raises(PublishError, match="already exists"):
        publish(src, repo, "1.0.0")
    with pytest.raises(VersionNameError):
        publish(src, repo, "../escape")
    (src / "rec" / "keys.txt").unlink()
    with pytest.raises(PublishError, match="exactly one .txt"):
        publish(src, repo, "1.1.0")
    assert repo.list_entries()[0] == ["1.0.0"]
    assert not [p for p in repo.pipeline_dir.iterdir() if p.name.startswith(".staging")]


def test_no_manifest_is_pending_while_changing_then_rejected(repo: ModelRepository, tmp_path: Path) -> None:
    make_src(repo.pipeline_dir / "1.0.0")
    pending = inspect_version(repo, "1.0.0", settle_s=3600, cache=VerifyCache())
    assert pending.state is VersionState.PENDING and "copy in progress" in pending.reason
    settled = inspect_version(repo, "1.0.0", settle_s=0, cache=VerifyCache())
    assert settled.state is VersionState.REJECTED and settled.code == "no_manifest"


def test_checksum_mismatch_missing_file_and_wrong_version(repo: ModelRepository, tmp_path: Path) -> None:
    target = publish(make_src(tmp_path / "src"), repo, "1.0.0")
    (target / "det" / "inference.pdiparams").write_bytes(os.urandom(256))
    (target / "rec" / "keys.txt").unlink()
    inspection = inspect_version(repo, "1.0.0", settle_s=0, cache=VerifyCache())
    assert inspection.state is VersionState.REJECTED and inspection.code == "verify_failed"
    assert "det/inference.pdiparams: sha256 mismatch" in inspection.reason
    assert "rec/keys.txt: missing" in inspection.reason
    os.rename(target, repo.pipeline_dir / "2.0.0")
    renamed = inspect_version(repo, "2.0.0", settle_s=0, cache=VerifyCache())
    assert renamed.code == "version_mismatch" and "manifest says version '1.0.0'" in renamed.reason


def test_fingerprint_changes_with_any_file_and_only_then(repo: ModelRepository, tmp_path: Path) -> None:
    target = publish(make_src(tmp_path / "src"), repo, "1.0.0")
    first, _ = fingerprint(target)
    assert fingerprint(target)[0] == first
    backdate(target)
    (target / "cls" / "inference.pdiparams").write_bytes(b"x" * 256)
    assert fingerprint(target)[0] != first


def test_symlinks_inside_are_followed_outside_rejected(repo: ModelRepository, tmp_path: Path) -> None:
    real = publish(make_src(tmp_path / "src"), repo, "1.0.0")
    outside = publish(make_src(tmp_path / "src2"), ModelRepository(tmp_path / "elsewhere"), "2.0.0")
    (repo.pipeline_dir / "2.0.0").symlink_to(outside, target_is_directory=True)
    # A version kept under a dot directory of the repository and linked in (Kubernetes-style) is fine.
    os.rename(real, repo.pipeline_dir / ".data-1.0.0")
    (repo.pipeline_dir / "1.0.0").symlink_to(repo.pipeline_dir / ".data-1.0.0", target_is_directory=True)
    scan = scan_repository(repo, settle_s=3600, cache=VerifyCache())
    assert scan.versions["1.0.0"].state is VersionState.NEW
    escaped = scan.versions["2.0.0"]
    assert escaped.state is VersionState.REJECTED and escaped.code == "outside_repository"
    assert str(outside) in escaped.reason


def test_a_file_symlinked_outside_fails_verification(repo: ModelRepository, tmp_path: Path) -> None:
    target = publish(make_src(tmp_path / "src"), repo, "1.0.0")
    secret = tmp_path / "secret.txt"
    secret.write_text("a\nb\nc\n")
    (target / "rec" / "keys.txt").unlink()
    (target / "rec" / "keys.txt").symlink_to(secret)
    inspection = inspect_version(repo, "1.0.0", settle_s=0, cache=VerifyCache())
    assert inspection.state is VersionState.REJECTED
    assert "rec/keys.txt: outside the version directory" in inspection.reason


def test_unlistable_repository_gives_an_error_not_an_empty_repository(tmp_path: Path) -> None:
    scan = scan_repository(ModelRepository(tmp_path / "nowhere"), settle_s=0, cache=VerifyCache())
    assert scan.versions == {} and scan.error is not None and "cannot list" in scan.error


def test_cli_publish_writes_the_version_and_an_audit_line(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    env = {**os.environ, "OCR_MODEL_REPO": str(tmp_path / "models"), "OCR_STATE_DIR": str(tmp_path / "state")}
    command = [sys.executable, "-m", "server.cli", "models", "publish", str(src), "--version", "3.1.0"]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"version": "3.1.0", "path": str(tmp_path / "models" / "ppocr" / "3.1.0")}
    again = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "already exists" in again.stderr
    events = audit_lines(tmp_path / "state" / "audit.log")
    assert [(e["action"], e["version"], e["result"]) for e in events] == [
        ("publish", "3.1.0", "ok"), ("publish", "3.1.0", "failed")]
    assert events[0]["actor"].startswith("cli:") and events[1]["reason"]


def test_a_version_that_vanishes_while_inspected_is_not_judged(repo: ModelRepository, tmp_path: Path) -> None:
    """Walking a directory that is gone must fail, not look like an empty directory with no manifest
    (which, being 'settled', would be rejected for good)."""
    target = publish(make_src(tmp_path / "src"), repo, "1.0.0")
    shutil.rmtree(target)
    with pytest.raises(FileNotFoundError):
        fingerprint(target)
