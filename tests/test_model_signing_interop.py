"""Our signatures and the OpenSSF `model_signing` CLI's (model-signing 1.1.1, key mode) are one format:
each side accepts what the other signs, and each side rejects a version changed after signing.

The CLI runs from its own venv (`make interop-setup`, which `make test` runs), on a copy of the real
default version. Outside CI a missing venv skips these tests; in CI it fails them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.repository.manifest import SIGNATURE_NAME
from tests.governance_support import KeyPair, new_key, require_model_signing_cli, their_sign, their_verify, trust_entry
from tests.support.server import PADDLE_VERSION, ROOT, copy_version

@pytest.fixture(scope="module", autouse=True)
def model_signing_cli() -> None:
    require_model_signing_cli()


@pytest.fixture()
def setup(tmp_path: Path, default_version_dir: Path) -> tuple[Path, KeyPair, dict[str, str]]:
    version = copy_version(default_version_dir, tmp_path / "models", PADDLE_VERSION)
    key = new_key(tmp_path / "keys", "release")
    (tmp_path / "trusted.pem").write_text(trust_entry(key, "ppocr"))
    env = {**os.environ, "OCR_TRUSTED_KEYS": str(tmp_path / "trusted.pem"), "OCR_STATE_DIR": str(tmp_path / "state")}
    return version, key, env


def ours(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_model_signing_accepts_our_signature(setup: tuple[Path, KeyPair, dict[str, str]]) -> None:
    version, key, env = setup
    signed = ours(env, "models", "sign", str(version), "--key", str(key.private_path))
    assert signed.returncode == 0, signed.stderr
    verified = their_verify(version, key)
    assert verified.returncode == 0 and "Verification succeeded" in verified.stdout, verified.stdout + verified.stderr

    with (version / "rec" / "inference.pdiparams").open("r+b") as handle:  # one byte of the weights
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    tampered = their_verify(version, key)
    assert tampered.returncode != 0 and "rec/inference.pdiparams" in tampered.stdout + tampered.stderr


def test_we_accept_a_model_signing_signature(setup: tuple[Path, KeyPair, dict[str, str]]) -> None:
    version, key, env = setup
    signed = their_sign(version, key)
    assert signed.returncode == 0, signed.stdout + signed.stderr
    verified = ours(env, "models", "verify", str(version))
    status = json.loads(verified.stdout)
    assert verified.returncode == 0 and status["verified"], status
    assert status["key_id"] == json.loads(
        (version / SIGNATURE_NAME).read_text())["verificationMaterial"]["publicKey"]["hint"]

    manifest = json.loads((version / "manifest.json").read_text())
    manifest["settings"] = {"rec": {"drop_score": 0.01}}  # the metadata is signed too
    (version / "manifest.json").write_text(json.dumps(manifest))
    tampered = ours(env, "models", "verify", str(version))
    assert tampered.returncode == 1
    report = json.loads(tampered.stdout)
    assert report["problem"] == "tampered" and report["file"] == "manifest.json"
