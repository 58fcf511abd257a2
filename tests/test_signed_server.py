"""Signed versions on a real server that requires them (OCR_REQUIRE_SIGNATURE=1): 2 Gunicorn workers x 4
threads under load from 8 clients for the whole module, every response checked (HTTP 200, a version we
published, the text that version reads: tests/support/lifecycle.py).

- every way a signature can fail to verify is rejected with its reason, while the live version serves;
- a version signed with the OpenSSF `model_signing` CLI is accepted and served, and one we signed
  verifies with that CLI;
- a file of the serving version changed on disk, in place and without changing its size or mtime (the
  scan cannot see it), is caught by the periodic re-check: the version is rejected as tampered and the
  workers move to the best other version, the one a restart would serve.

The server starts on 1.0.0, published and signed by `ocr-server models publish --sign-key`. Each test
publishes versions above everything on disk and reads the state it starts from through the API.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from server.governance.signing import sign_directory
from server.governance.trust import key_id
from server.repository.manifest import SIGNATURE_NAME
from tests.governance_support import (KeyPair, new_key, require_model_signing_cli, their_sign, their_verify,
                                      trust_entry)
from tests.support.lifecycle import (ADMIN_TOKEN, Admin, expect_versions, expected_text, load_image, wait_for,
                                     write_golden_set)
from tests.support.load import LoadGenerator
from tests.support.metrics import scrape
from tests.support.server import ROOT, gunicorn_server
from tests.support.swaplab import SwapLab

RECHECK_S = 2.0


@dataclass
class SignedLab(SwapLab):
    keys: dict[str, KeyPair] = field(default_factory=dict)

    def signed(self, version: str, k: int, key: str = "release") -> Path:
        """Variant `k` staged as `version` and signed with one of the lab's keys."""
        staged = self.stage(version, k)
        sign_directory(staged, self.keys[key].private_key)
        return staged

    def place(self, staged: Path, k: int | None = None) -> None:
        """Rename a staged version into the served repository; with `k`, it may serve (and reads as variant k)."""
        if k is not None:
            self.expected[staged.name] = expected_text(k)
        os.rename(staged, self.pipeline / staged.name)

    def describe(self, version: str) -> dict:
        return self.admin.get(f"/v1/models/{version}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, default_version_dir: Path) -> Iterator[SignedLab]:
    base = tmp_path_factory.mktemp("signed")
    repo_root, state_dir, work = base / "models", base / "state", base / "work"
    keys = {name: new_key(base / "keys", name) for name in ("release", "leaked", "rogue")}
    (base / "trusted.pem").write_text(trust_entry(keys["release"], "ppocr", "ml-release") + "\n"
                                      + trust_entry(keys["leaked"], "ppocr", "ml-2025"))
    (base / "revoked.yaml").write_text(f"keys: [{key_id(keys['leaked'].private_key.public_key())}]\n")
    env = {
        "OCR_ADMIN_TOKEN": ADMIN_TOKEN,
        "OCR_STATE_DIR": str(state_dir),
        "OCR_REQUIRE_SIGNATURE": "1",
        "OCR_TRUSTED_KEYS": str(base / "trusted.pem"),
        "OCR_REVOCATION_LIST": str(base / "revoked.yaml"),
        "OCR_SIGNATURE_RECHECK_S": str(RECHECK_S),
        "OCR_MODEL_POLL_S": "1",
        "OCR_MODEL_DEBOUNCE_S": "0.3",
        "OCR_MODEL_SETTLE_S": "2",
        "OCR_WARMUP_SHAPES": "320x320",
        "OCR_TIMEOUT": "600",  # a loaded 2-core machine can stall a worker; this is about signatures
    }
    published = subprocess.run(
        [sys.executable, "-m", "server.cli", "models", "publish", str(default_version_dir), "--version", "1.0.0",
         "--model-repo", str(repo_root), "--sign-key", str(keys["release"].private_path)],
        env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert published.returncode == 0, published.stderr
    write_golden_set(repo_root / "golden")
    with gunicorn_server(repo_root, base / "logs", workers=2, threads=4, env=env) as server:
        expected = {"1.0.0": expected_text(0)}
        load = LoadGenerator(server.url, [load_image()], expect_versions(expected), clients=8)
        load.start()
        try:
            yield SignedLab(server, Admin(server.url), load, expected, repo_root, state_dir, work,
                            default_version_dir, keys=keys)
        finally:
            load.stop()


def _change_weights_and_manifest(version_dir: Path) -> None:
    """What someone who can write the repository does: change a weights file and recompute its sha256 in
    the manifest, so that the checksums agree and only the signature tells."""
    params = version_dir / "det" / "inference.pdiparams"
    data = bytearray(params.read_bytes())
    data[len(data) // 2] ^= 0xFF
    params.write_bytes(bytes(data))
    manifest = json.loads((version_dir / "manifest.json").read_text())
    manifest["files"]["det/inference.pdiparams"] = hashlib.sha256(data).hexdigest()
    (version_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))


def test_versions_whose_signature_does_not_verify_are_rejected_under_load(lab: SignedLab) -> None:
    current, m = lab.current(), lab.next_major()
    leaked = key_id(lab.keys["leaked"].private_key.public_key())
    cases = {  # version -> (the verdict's result, words of its reason)
        f"{m}.1.0": ("unsigned", "no model.sig"),
        f"{m}.2.0": ("untrusted_key", "not in the trust store"),
        f"{m}.3.0": ("revoked_key", f"key {leaked}, which is revoked"),
        f"{m}.4.0": ("tampered", "det/inference.pdiparams changed after signing"),
        f"{m}.5.0": ("tampered", "the signature was made for version 1.0.0"),
    }
    staged = [lab.stage(f"{m}.1.0"), lab.signed(f"{m}.2.0", 2, "rogue"), lab.signed(f"{m}.3.0", 3, "leaked"),
              lab.signed(f"{m}.4.0", 4)]
    _change_weights_and_manifest(staged[-1])
    borrowed = lab.stage(f"{m}.5.0", 5)
    shutil.copyfile(lab.pipeline / "1.0.0" / SIGNATURE_NAME, borrowed / SIGNATURE_NAME)  # a genuine signature
    staged.append(borrowed)
    with lab.load.window() as window:
        for path in staged:
            lab.place(path)
        verdicts = {version: lab.wait_verdict(version) for version in cases}
        lab.hold(current, seconds=2)
    window.assert_clean(minimum=8)
    assert window.versions() == {current}

    for version, (result, words) in cases.items():
        listed = verdicts[version]
        assert listed["state"] == "rejected" and listed["verdict"]["result"] == result, listed
        assert words in listed["reason"], listed["reason"]
        rejections = lab.events("reject", version)
        assert [e["result"] for e in rejections] == [result]  # decided once, machine-wide
        assert rejections[0]["version_digest"] == hashlib.sha256(
            (lab.pipeline / version / "manifest.json").read_bytes()).hexdigest()
    detail = lab.describe(f"{m}.3.0")
    assert detail["signature"]["problem"] == "revoked_key" and detail["signature"]["key_id"] == leaked
    assert detail["verdict"]["signature"]["problem"] == "revoked_key"
    assert scrape(f"{lab.server.url}/metrics").total("ocr_model_unverified_serving") == 0


def test_a_model_signing_signature_is_accepted_and_ours_verifies_with_model_signing(lab: SignedLab) -> None:
    require_model_signing_cli()
    ours = lab.pipeline / "1.0.0"  # signed by `ocr-server models publish --sign-key`
    verified = their_verify(ours, lab.keys["release"])
    assert verified.returncode == 0 and "Verification succeeded" in verified.stdout, verified.stdout + verified.stderr

    version = f"{lab.next_major()}.0.0"
    staged = lab.stage(version, 6)
    signed = their_sign(staged, lab.keys["release"])
    assert signed.returncode == 0, signed.stdout + signed.stderr
    with lab.load.window() as window:
        lab.place(staged, k=6)
        lab.converge(version)
    window.assert_clean()
    detail = lab.describe(version)
    release = key_id(lab.keys["release"].private_key.public_key())
    assert detail["state"] == "serving" and detail["signature"]["verified"], detail["signature"]
    assert detail["signature"]["key_id"] == release and detail["signature"]["key_name"] == "ml-release"
    assert detail["verdict"]["signature"]["verified"] and detail["verdict"]["signature"]["verified_at"]
    assert [e["signature"] for e in lab.events("load", version) if e["result"] == "success"] == ["verified"] * 2


def _flip_in_place(path: Path) -> None:
    """Change one byte keeping the size, the inode and the mtime: the scan's fingerprint stays the same."""
    info = path.stat()
    with path.open("r+b") as handle:
        handle.seek(info.st_size // 2)
        byte = handle.read(1)[0]
        handle.seek(info.st_size // 2)
        handle.write(bytes([byte ^ 0xFF]))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def test_a_serving_version_changed_on_disk_is_caught_by_the_recheck(lab: SignedLab) -> None:
    version = f"{lab.next_major()}.0.0"
    lab.place(lab.signed(version, 7), k=7)
    lab.converge(version)
    failures_before = scrape(f"{lab.server.url}/metrics").total("ocr_model_recheck_failures_total", result="tampered")
    with lab.load.window() as window:
        _flip_in_place(lab.pipeline / version / "rec" / "inference.pdiparams")
        rejected = wait_for(lambda: (v := lab.admin.version(version)) and v["verdict"]
                            and v["verdict"]["result"] == "tampered" and v, 60 + 4 * RECHECK_S,
                            f"the re-check to reject {version}")
        fallback = lab.admin.models()["desired"]  # what a restart would serve now
        assert fallback is not None and fallback != version
        lab.converge(fallback)
    window.assert_clean()
    assert window.versions() <= {version, fallback}
    assert "rec/inference.pdiparams changed after signing" in rejected["verdict"]["reason"]
    assert lab.admin.version(version)["state"] == "rejected"  # type: ignore[index]
    rejections = lab.events("reject", version)
    assert [e["result"] for e in rejections] == ["tampered"] and rejections[0]["version_digest"]
    assert {e["result"] for e in lab.events("recheck", version)} == {"tampered"}
    after = scrape(f"{lab.server.url}/metrics").total("ocr_model_recheck_failures_total", result="tampered")
    assert after > failures_before
    rejected_at = lab.events("reject", version)[0]["seq"]
    assert not [e for e in lab.events("load", version) if e["seq"] > rejected_at]  # never loaded again
