"""Signed versions: the bundle we write, every problem `verify_version` reports, the trust store and the
revocation list, reloading them, and the repository protocol with a model.sig in a version."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.governance import signing
from server.governance.signing import (BUNDLE_MEDIA_TYPE, PAYLOAD_TYPE, PREDICATE_TYPE, load_private_key,
                                       read_bundle, sign_directory)
from server.governance.audit import read_audit
from server.governance.trust import Revocations, TrustConfigError, key_id, load_revocations, load_trust_store
from server.governance.verify import SignatureChecker, SignatureProblem, verify_version, version_digest
from server.lifecycle.source import VerifyCache, fingerprint, inspect_version
from server.lifecycle.states import VersionState
from server.repository.layout import ModelRepository
from server.repository.manifest import SIGNATURE_NAME, hash_tree, read_manifest
from server.repository.publish import publish
from tests.governance_support import KeyPair, make_src, new_key, published, trust_entry
from tests.support.server import ROOT


@pytest.fixture()
def keys(tmp_path: Path) -> dict[str, KeyPair]:
    return {name: new_key(tmp_path / "keys", name) for name in ("release", "other", "invoices")}


@pytest.fixture()
def trust_file(tmp_path: Path, keys: dict[str, KeyPair]) -> Path:
    path = tmp_path / "trusted.pem"
    path.write_text(trust_entry(keys["release"], "ppocr", "ml-release") + "\n"
                    + trust_entry(keys["invoices"], "invoices"))
    return path


def check(version_dir: Path, trust_file: Path, revocations: Revocations | None = None, pipeline: str = "ppocr"):
    store, _ = load_trust_store(trust_file)
    return verify_version(version_dir, pipeline, store, revocations or Revocations())


def test_a_signed_version_verifies_and_names_its_key(tmp_path: Path, keys: dict[str, KeyPair],
                                                     trust_file: Path) -> None:
    version = published(tmp_path, "1.0.0")
    result = sign_directory(version, keys["release"].private_key)
    assert result.path == version / SIGNATURE_NAME and result.key_id == key_id(keys["release"].private_key.public_key())
    status = check(version, trust_file)
    assert status.verified and status.signed and status.problem is None
    assert status.key_id == result.key_id and status.key_name == "ml-release"
    assert status.version_digest == version_digest(version)
    assert status.to_json()["verified"] is True and status.verified_at.endswith("+00:00")


def test_the_bundle_is_a_model_signing_v1_bundle_over_every_file(tmp_path: Path, keys: dict[str, KeyPair]) -> None:
    version = published(tmp_path, "1.0.0")
    (version / ".notes").write_text("dot-files are covered too")
    sign_directory(version, keys["release"].private_key)
    raw = json.loads((version / SIGNATURE_NAME).read_text())
    assert raw["mediaType"] == BUNDLE_MEDIA_TYPE and raw["verificationMaterial"]["tlogEntries"] == []
    assert raw["dsseEnvelope"]["payloadType"] == PAYLOAD_TYPE
    # The key hint is the sha256 of the PEM public key, as `sha256sum key.pub` prints it.
    assert raw["verificationMaterial"]["publicKey"]["hint"] == hashlib.sha256(
        keys["release"].public_path.read_bytes()).hexdigest()
    statement = json.loads(base64.b64decode(raw["dsseEnvelope"]["payload"]))
    assert statement["predicateType"] == PREDICATE_TYPE and statement["subject"][0]["name"] == "1.0.0"
    names = [r["name"] for r in statement["predicate"]["resources"]]
    assert set(names) == set(read_manifest(version).files) | {"manifest.json", ".notes"}
    assert SIGNATURE_NAME in statement["predicate"]["serialization"]["ignore_paths"]
    bundle = read_bundle(version / SIGNATURE_NAME)
    assert bundle.check(keys["release"].private_key.public_key())
    assert not bundle.check(keys["other"].private_key.public_key())


def test_the_signature_is_not_part_of_the_manifest_and_a_signed_version_stays_a_candidate(
    tmp_path: Path, keys: dict[str, KeyPair],
) -> None:
    repo = ModelRepository(tmp_path / "models")
    version = published(tmp_path, "1.0.0", repo)
    before = fingerprint(version)[0]
    sign_directory(version, keys["release"].private_key)
    assert SIGNATURE_NAME not in hash_tree(version)
    assert fingerprint(version)[0] != before  # signing later makes the lifecycle look at the version again
    inspection = inspect_version(repo, "1.0.0", settle_s=0, cache=VerifyCache())
    assert inspection.state is VersionState.NEW, inspection.reason
    assert not list(repo.pipeline_dir.glob(".*.sig-*"))  # the temporary file went away


def test_unsigned(tmp_path: Path, trust_file: Path) -> None:
    status = check(published(tmp_path, "1.0.0"), trust_file)
    assert not status.signed and status.problem is SignatureProblem.UNSIGNED and not status.verified
    assert status.version_digest  # unsigned versions have a digest too (it can be revoked)


def test_untrusted_key(tmp_path: Path, keys: dict[str, KeyPair], trust_file: Path) -> None:
    version = published(tmp_path, "1.0.0")
    sign_directory(version, keys["other"].private_key)
    status = check(version, trust_file)
    assert status.problem is SignatureProblem.UNTRUSTED_KEY
    assert status.key_id == key_id(keys["other"].private_key.public_key()) and status.key_name is None


def test_revoked_key_and_revoked_version(tmp_path: Path, keys: dict[str, KeyPair], trust_file: Path) -> None:
    version = published(tmp_path, "1.0.0")
    sign_directory(version, keys["release"].private_key)
    kid = key_id(keys["release"].private_key.public_key())
    assert check(version, trust_file, Revocations(keys=frozenset({kid}))).problem is SignatureProblem.REVOKED_KEY
    digest = version_digest(version)
    status = check(version, trust_file, Revocations(versions=frozenset({digest})))
    assert status.problem is SignatureProblem.REVOKED_VERSION and digest in status.reason
    unsigned = published(tmp_path, "2.0.0")
    assert check(unsigned, trust_file, Revocations(versions=frozenset({version_digest(unsigned)}))).problem \
        is SignatureProblem.REVOKED_VERSION


def test_wrong_pipeline(tmp_path: Path, keys: dict[str, KeyPair], trust_file: Path) -> None:
    version = published(tmp_path, "1.0.0")
    sign_directory(version, keys["invoices"].private_key)
    status = check(version, trust_file)
    assert status.problem is SignatureProblem.WRONG_PIPELINE and "invoices" in status.reason
    assert check(version, trust_file, pipeline="invoices").verified


@pytest.mark.parametrize("change", ["modify", "delete", "add", "manifest"])
def test_tampered_files_are_named(tmp_path: Path, keys: dict[str, KeyPair], trust_file: Path, change: str) -> None:
    version = published(tmp_path, "1.0.0")
    sign_directory(version, keys["release"].private_key)
    if change == "modify":
        with (version / "det" / "inference.pdiparams").open("r+b") as handle:
            handle.write(b"\x00")
        expected = "det/inference.pdiparams"
    elif change == "delete":
        (version / "cls" / "inference.pdmodel").unlink()
        expected = "cls/inference.pdmodel"
    elif change == "add":
        (version / "rec" / "extra.txt").write_text("smuggled")
        expected = "rec/extra.txt"
    else:
        manifest = json.loads((version / "manifest.json").read_text())
        manifest["settings"] = {"rec": {"drop_score": 0.1}}
        (version / "manifest.json").write_text(json.dumps(manifest))
        expected = "manifest.json"
    status = check(version, trust_file)
    assert status.problem is SignatureProblem.TAMPERED and status.file == expected, status


def test_a_signature_copied_from_another_version_fails(tmp_path: Path, keys: dict[str, KeyPair],
                                                       trust_file: Path) -> None:
    """Same weights, other version: the manifest names the version, so the copied signature's digest
    of manifest.json does not match."""
    repo = ModelRepository(tmp_path / "models")
    first = published(tmp_path, "1.0.0", repo)
    second = publish(first, repo, "1.0.1")  # the same stage files under another name
    sign_directory(first, keys["release"].private_key)
    shutil.copy(first / SIGNATURE_NAME, second / SIGNATURE_NAME)
    status = check(second, trust_file)
    assert status.problem is SignatureProblem.TAMPERED and status.file == "manifest.json"
    assert "made for version 1.0.0, not 1.0.1" in status.reason


def test_bad_signatures(tmp_path: Path, keys: dict[str, KeyPair], trust_file: Path) -> None:
    version = published(tmp_path, "1.0.0")
    sign_directory(version, keys["release"].private_key)
    bundle = json.loads((version / SIGNATURE_NAME).read_text())

    def with_bundle(data: object) -> SignatureProblem | None:
        (version / SIGNATURE_NAME).write_text(json.dumps(data) if not isinstance(data, str) else data)
        return check(version, trust_file).problem

    forged = json.loads(json.dumps(bundle))
    statement = json.loads(base64.b64decode(forged["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "00" * 32
    forged["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    assert with_bundle(forged) is SignatureProblem.BAD_SIGNATURE  # payload changed, signature kept
    assert with_bundle("not json") is SignatureProblem.BAD_SIGNATURE
    assert with_bundle({**bundle, "mediaType": "application/x-other"}) is SignatureProblem.BAD_SIGNATURE
    no_key = json.loads(json.dumps(bundle))
    no_key["verificationMaterial"] = {"certificate": {"rawBytes": "AA=="}}
    assert with_bundle(no_key) is SignatureProblem.BAD_SIGNATURE
    # A hint-less bundle (as model_signing wrote before 1.0) is matched against each trusted key.
    hintless = json.loads(json.dumps(bundle))
    hintless["verificationMaterial"]["publicKey"] = {}
    assert with_bundle(hintless) is None


def test_a_signature_that_leaves_the_manifest_out_is_incomplete(
    tmp_path: Path, keys: dict[str, KeyPair], trust_file: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trusted signer who signs with manifest.json ignored (model_signing's --ignore-paths) has not
    signed the version's metadata."""
    version = published(tmp_path, "1.0.0")
    monkeypatch.setattr(signing, "GIT_PATHS", (*signing.GIT_PATHS, "manifest.json"))
    sign_directory(version, keys["release"].private_key)
    status = check(version, trust_file)
    assert status.problem is SignatureProblem.INCOMPLETE and "manifest.json" in status.reason


def test_trust_store_directory_and_its_errors(tmp_path: Path, keys: dict[str, KeyPair]) -> None:
    store_dir = tmp_path / "trust"
    store_dir.mkdir()
    (store_dir / "release.pem").write_text(trust_entry(keys["release"], "ppocr, invoices"))
    (store_dir / "all.pub").write_text(trust_entry(keys["other"], "*"))
    (store_dir / "README").write_text("not a key file: ignored")
    store, watched = load_trust_store(store_dir)
    release = store.get(key_id(keys["release"].private_key.public_key()))
    assert release is not None and release.pipelines == {"ppocr", "invoices"} and release.allows("invoices")
    assert store.get(key_id(keys["other"].private_key.public_key())).allows("anything")  # type: ignore[union-attr]
    assert len(store.digest) == 64 and store_dir in watched

    def refused(text: str, message: str) -> None:
        (tmp_path / "bad.pem").write_text(text)
        with pytest.raises(TrustConfigError, match=message):
            load_trust_store(tmp_path / "bad.pem")

    refused(keys["release"].public_pem, "no 'Pipelines:' line")
    refused("Pipelines: ,\n" + keys["release"].public_pem, "names no pipeline")
    refused("just text\n", "no '-----BEGIN PUBLIC KEY-----' block")
    refused(trust_entry(keys["release"]) + trust_entry(keys["release"], "x"), "listed|already trusted")
    refused("Pipelines: ppocr\n-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a valid PEM")
    rsa_pem = rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    refused("Pipelines: ppocr\n" + rsa_pem, "must be ECDSA P-256, P-384 or P-521")
    k1 = new_key(tmp_path / "k1", "k", ec.SECP256K1())
    refused(trust_entry(k1), "must be ECDSA P-256, P-384 or P-521")
    with pytest.raises(TrustConfigError, match="no such file"):
        load_trust_store(tmp_path / "missing")


def test_p384_keys_sign_and_verify(tmp_path: Path) -> None:
    key = new_key(tmp_path / "keys", "p384", ec.SECP384R1())
    version = published(tmp_path, "1.0.0")
    sign_directory(version, key.private_key)
    (tmp_path / "t.pem").write_text(trust_entry(key))
    assert check(version, tmp_path / "t.pem").verified


def test_revocation_list_parsing(tmp_path: Path) -> None:
    path = tmp_path / "revoked.yaml"
    path.write_text(f"keys:\n  - {'A' * 64}   # upper case is accepted\nversions: ['{'b' * 64}']\n")
    revocations, _ = load_revocations(path)
    assert revocations.keys == {"a" * 64} and revocations.versions == {"b" * 64}
    for text, message in [("keys: abc\n", "must be a list"), ("keys: [abc]\n", "not sha256 hex"),
                          ("revoked: []\n", "expected a mapping"), ("keys: [\n", "not valid YAML")]:
        path.write_text(text)
        with pytest.raises(TrustConfigError, match=message):
            load_revocations(path)


def test_the_checker_follows_the_revocation_list_and_keeps_the_last_good_one(
    tmp_path: Path, keys: dict[str, KeyPair], trust_file: Path,
) -> None:
    version = published(tmp_path, "1.0.0")
    sign_directory(version, keys["release"].private_key)
    revoked = tmp_path / "revoked.yaml"
    revoked.write_text("keys: []\n")
    checker = SignatureChecker(trust_file, revoked, reload_interval_s=0)
    assert checker.check(version, "ppocr").verified
    revoked.write_text(f"versions: [{version_digest(version)}]\n")
    assert checker.check(version, "ppocr").problem is SignatureProblem.REVOKED_VERSION
    revoked.write_text("versions: [not-a-digest]\n")  # a broken edit: the previous list stays in force
    assert checker.check(version, "ppocr").problem is SignatureProblem.REVOKED_VERSION
    assert checker.errors and "not sha256 hex" in checker.errors[0]
    with pytest.raises(TrustConfigError):
        SignatureChecker(trust_file, tmp_path / "nowhere.yaml")  # at start, a broken file is fatal


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_sign_verify_and_publish_with_a_key(tmp_path: Path, keys: dict[str, KeyPair], trust_file: Path) -> None:
    env = {"OCR_MODEL_REPO": str(tmp_path / "models"), "OCR_STATE_DIR": str(tmp_path / "state"),
           "OCR_TRUSTED_KEYS": str(trust_file)}
    version = published(tmp_path, "1.0.0")
    unsigned = _cli(["models", "verify", str(version)], env)
    assert unsigned.returncode == 1 and json.loads(unsigned.stdout)["problem"] == "unsigned"
    signed = _cli(["models", "sign", str(version), "--key", str(keys["release"].private_path)], env)
    assert signed.returncode == 0, signed.stderr
    assert json.loads(signed.stdout)["key_id"] == key_id(keys["release"].private_key.public_key())
    verified = _cli(["models", "verify", str(version)], env)
    assert verified.returncode == 0 and json.loads(verified.stdout)["key_name"] == "ml-release"

    published_signed = _cli(["models", "publish", str(make_src(tmp_path / "src2")), "--version", "1.1.0",
                             "--sign-key", str(keys["release"].private_path)], env)
    assert published_signed.returncode == 0, published_signed.stderr
    target = tmp_path / "models" / "ppocr" / "1.1.0"
    assert _cli(["models", "verify", str(target)], env).returncode == 0
    assert json.loads((target / SIGNATURE_NAME).read_text())  # signed before it appeared, not after
    assert json.loads(base64.b64decode(json.loads((target / SIGNATURE_NAME).read_text())["dsseEnvelope"]["payload"])
                      )["subject"][0]["name"] == "1.1.0"

    bad_key = tmp_path / "not-a-key.pem"
    bad_key.write_text("nothing")
    failed = _cli(["models", "publish", str(make_src(tmp_path / "src3")), "--version", "1.2.0",
                   "--sign-key", str(bad_key)], env)
    assert failed.returncode == 1 and "not a usable PEM private key" in failed.stderr
    assert not (tmp_path / "models" / "ppocr" / "1.2.0").exists()
    events = [(e["action"], e["version"], e["result"], e.get("key_id"))
              for e in read_audit(tmp_path / "state" / "audit.log")]
    kid = key_id(keys["release"].private_key.public_key())
    assert events == [("sign", "1.0.0", "ok", kid), ("publish", "1.1.0", "ok", kid),
                      ("publish", "1.2.0", "failed", None)]


def test_with_signatures_required_publish_refuses_what_the_server_would_refuse(
        tmp_path: Path, keys: dict[str, KeyPair], trust_file: Path) -> None:
    env = {"OCR_MODEL_REPO": str(tmp_path / "models"), "OCR_STATE_DIR": str(tmp_path / "state"),
           "OCR_TRUSTED_KEYS": str(trust_file), "OCR_REQUIRE_SIGNATURE": "1"}
    unsigned = _cli(["models", "publish", str(make_src(tmp_path / "src1")), "--version", "1.0.0"], env)
    assert unsigned.returncode == 1 and "OCR_REQUIRE_SIGNATURE is on" in unsigned.stderr and "unsigned" in unsigned.stderr
    untrusted = _cli(["models", "publish", str(make_src(tmp_path / "src2")), "--version", "1.1.0",
                      "--sign-key", str(keys["other"].private_path)], env)
    assert untrusted.returncode == 1 and "untrusted_key" in untrusted.stderr
    wrong_pipeline = _cli(["models", "publish", str(make_src(tmp_path / "src3")), "--version", "1.2.0",
                           "--sign-key", str(keys["invoices"].private_path)], env)
    assert wrong_pipeline.returncode == 1 and "wrong_pipeline" in wrong_pipeline.stderr
    assert not (tmp_path / "models" / "ppocr").exists() or not [
        p for p in (tmp_path / "models" / "ppocr").iterdir() if not p.name.startswith(".")]  # nothing appeared
    trusted = _cli(["models", "publish", str(make_src(tmp_path / "src4")), "--version", "1.3.0",
                    "--sign-key", str(keys["release"].private_path)], env)
    assert trusted.returncode == 0, trusted.stderr
    results = [(e["version"], e["result"]) for e in read_audit(tmp_path / "state" / "audit.log")]
    assert results == [("1.0.0", "failed"), ("1.1.0", "failed"), ("1.2.0", "failed"), ("1.3.0", "ok")]


def test_serve_refuses_to_start_with_a_broken_policy_or_trust_store(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("anonymus: [viewer]\n")
    broken_policy = _cli(["serve", "--model-repo", str(tmp_path)], {"OCR_AUTH_CONFIG": str(tmp_path / "policy.yaml")})
    assert broken_policy.returncode == 2 and "unknown fields ['anonymus']" in broken_policy.stderr
    missing_keys = _cli(["serve"], {"OCR_TRUSTED_KEYS": str(tmp_path / "no-such-keys")})
    assert missing_keys.returncode == 2 and "no such file or directory" in missing_keys.stderr


def test_an_encrypted_signing_key_needs_its_password(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "enc.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"s3cret")))
    with pytest.raises(TrustConfigError, match="not a usable PEM private key"):
        load_private_key(path)
    assert key_id(load_private_key(path, b"s3cret").public_key()) == key_id(key.public_key())


def test_sign_refuses_a_directory_whose_manifest_names_another_version(tmp_path: Path,
                                                                       keys: dict[str, KeyPair]) -> None:
    version = published(tmp_path, "1.0.0")
    renamed = version.with_name("9.9.9")
    version.rename(renamed)
    done = _cli(["models", "sign", str(renamed), "--key", str(keys["release"].private_path)],
                {"OCR_STATE_DIR": str(tmp_path / "state")})
    assert done.returncode == 1 and "names version 1.0.0" in done.stderr
    assert not (renamed / SIGNATURE_NAME).exists()


def test_a_key_added_to_the_trust_directory_is_trusted_at_the_next_check(tmp_path: Path,
                                                                        keys: dict[str, KeyPair]) -> None:
    store_dir = tmp_path / "trust"
    store_dir.mkdir()
    (store_dir / "release.pem").write_text(trust_entry(keys["release"]))
    version = published(tmp_path, "1.0.0")
    sign_directory(version, keys["other"].private_key)
    checker = SignatureChecker(store_dir, None, reload_interval_s=0)
    assert checker.check(version, "ppocr").problem is SignatureProblem.UNTRUSTED_KEY
    (store_dir / "other.pem").write_text(trust_entry(keys["other"], "ppocr", "other-team"))
    status = checker.check(version, "ppocr")
    assert status.verified and status.key_name == "other-team"
    (store_dir / "other.pem").unlink()
    assert checker.check(version, "ppocr").problem is SignatureProblem.UNTRUSTED_KEY
