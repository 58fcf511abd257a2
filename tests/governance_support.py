"""Support for the governance tests: real ECDSA keys on disk, trust-store files, small published versions.

Versions here are small real publishes (random bytes as network files): signing and verification
only read files, so they do not need real weights; the server-level tests use real ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from server.repository.layout import ModelRepository
from server.repository.publish import publish


def make_src(path: Path) -> Path:
    """A source folder shaped like a version: det/, cls/, rec/ with a dictionary."""
    for stage in ("det", "cls", "rec"):
        (path / stage).mkdir(parents=True)
        (path / stage / "inference.pdmodel").write_bytes(os.urandom(64))
        (path / stage / "inference.pdiparams").write_bytes(os.urandom(256))
    (path / "rec" / "keys.txt").write_text("a\nb\nc\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_path: Path
    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_pem(self) -> str:
        return self.public_path.read_text()


def new_key(directory: Path, name: str, curve: ec.EllipticCurve | None = None) -> KeyPair:
    """An EC key pair written as PEM files (`NAME.key`, `NAME.pub`), as openssl would."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(curve or ec.SECP256R1())
    private_path = directory / f"{name}.key"
    private_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    public_path = directory / f"{name}.pub"
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return KeyPair(private_path, public_path, key)


def trust_entry(key: KeyPair, pipelines: str = "ppocr", name: str | None = None) -> str:
    """One trust-store entry: the headers, then the PEM block."""
    return (f"Name: {name}\n" if name else "") + f"Pipelines: {pipelines}\n" + key.public_pem


def published(tmp_path: Path, version: str, repo: ModelRepository | None = None) -> Path:
    """A version published into `repo` (default: tmp_path/models) from fresh random stage files."""
    repo = repo or ModelRepository(tmp_path / "models")
    return publish(make_src(tmp_path / f"src-{version}"), repo, version)
