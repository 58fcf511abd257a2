"""Who may sign versions: the trust store of public keys, and the revocation list.

**Trust store** (`OCR_TRUSTED_KEYS`): a PEM file, or a directory whose `*.pem` / `*.pub` files are read,
each holding one or more public keys (ECDSA P-256, P-384 or P-521, the curves OpenSSF model signing
accepts). Every key says which pipelines it may sign for in a `Pipelines:` line before its PEM block
(`*` for every pipeline); an optional `Name:` line names it for people. Text outside PEM blocks is
ignored by other tools (RFC 7468), so the file stays usable with openssl and `model_signing`:

    Name: ml-release-2026
    Pipelines: ppocr, invoices
    -----BEGIN PUBLIC KEY-----
    MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE...
    -----END PUBLIC KEY-----

A key without a `Pipelines:` line is an error, not "all pipelines": who may sign for production is
a decision to write down, not a default.

**Key id**: the sha256 (hex) of the key's SubjectPublicKeyInfo in PEM, as `cryptography` and openssl
write it - the same value `model_signing` puts in a bundle's `verificationMaterial.publicKey.hint`, so
the id in a signature names the key without trying each one. `sha256sum key.pub` gives it for a key
file openssl wrote.

**Revocation list** (`OCR_REVOCATION_LIST`, YAML): key ids whose signatures are no longer accepted,
and version digests (`server.governance.verify.version_digest`: sha256 of the version's manifest.json)
of versions that must not serve whoever signed them:

    keys: [7e136e93...]      # a leaked or retired signing key
    versions: [4b1c0d2e...]  # a version withdrawn after release
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from server.governance.configfile import read_yaml

ALL_PIPELINES = "*"
KEY_FILE_SUFFIXES = (".pem", ".pub")
CURVE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384, "secp521r1": hashes.SHA512,
}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----\r?\n.*?-----END PUBLIC KEY-----", re.DOTALL)
_HEADER = re.compile(r"^\s*([A-Za-z-]+)\s*:\s*(.*?)\s*$")


class TrustConfigError(ValueError):
    """The trust store or the revocation list cannot be used; the message names the file."""


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def check_curve(public_key: object) -> ec.EllipticCurvePublicKey:
    """The key, if it is one OpenSSF model signing can use in key mode; TrustConfigError otherwise."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name not in CURVE_HASHES:
        kind = getattr(getattr(public_key, "curve", None), "name", type(public_key).__name__)
        raise TrustConfigError(f"unsupported key {kind}: signing keys must be ECDSA P-256, P-384 or P-521")
    return public_key


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    name: str
    pipelines: frozenset[str]
    public_key: ec.EllipticCurvePublicKey = field(repr=False, compare=False)
    source: str = ""  # file it was read from, for messages

    def allows(self, pipeline: str) -> bool:
        return ALL_PIPELINES in self.pipelines or pipeline in self.pipelines

    def describe(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "name": self.name, "pipelines": sorted(self.pipelines), "source": self.source}


@dataclass(frozen=True)
class TrustStore:
    keys: dict[str, TrustedKey] = field(default_factory=dict)
    digest: str = ""  # sha256 of the files read, for the audit log ("" when empty)

    def get(self, key_id: str) -> TrustedKey | None:
        return self.keys.get(key_id)


def _parse_key_file(path: Path, text: str) -> list[TrustedKey]:
    found: list[TrustedKey] = []
    position = 0
    for number, match in enumerate(_PEM_BLOCK.finditer(text), start=1):
        headers: dict[str, str] = {}
        for line in text[position:match.start()].splitlines():
            header = _HEADER.match(line)
            if header:
                headers[header.group(1).lower()] = header.group(2)
        position = match.end()
        where = f"{path}, key {number}"
        try:
            public_key = serialization.load_pem_public_key(match.group(0).encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise TrustConfigError(f"{where}: not a valid PEM public key ({exc})") from exc
        try:
            check_curve(public_key)
        except TrustConfigError as exc:
            raise TrustConfigError(f"{where}: {exc}") from exc
        if "pipelines" not in headers:
            raise TrustConfigError(f"{where}: no 'Pipelines:' line before the key (e.g. 'Pipelines: ppocr', or "
                                   f"'Pipelines: {ALL_PIPELINES}' for every pipeline)")
        pipelines = frozenset(p.strip() for p in headers["pipelines"].split(",") if p.strip())
        if not pipelines:
            raise TrustConfigError(f"{where}: 'Pipelines:' names no pipeline")
        kid = key_id(public_key)  # type: ignore[arg-type]
        found.append(TrustedKey(kid, headers.get("name") or kid[:12], pipelines, public_key,  # type: ignore[arg-type]
                                str(path)))
    if not found:
        raise TrustConfigError(f"{path}: no '-----BEGIN PUBLIC KEY-----' block")
    return found


def load_trust_store(path: Path) -> tuple[TrustStore, list[Path]]:
    """Read a trust store file or directory; returns the store and the paths read (for reloading)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in KEY_FILE_SUFFIXES and p.is_file())
        if not files:
            raise TrustConfigError(f"{path}: no {' or '.join('*' + s for s in KEY_FILE_SUFFIXES)} key files")
        watched = [path, *files]
    elif path.is_file():
        files = [path]
        watched = files
    else:
        raise TrustConfigError(f"{path}: no such file or directory")
    keys: dict[str, TrustedKey] = {}
    digest = hashlib.sha256()
    for file in files:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise TrustConfigError(f"cannot read {file}: {exc.strerror or exc}") from exc
        digest.update(file.name.encode() + b"\0" + raw + b"\0")
        for key in _parse_key_file(file, raw.decode("utf-8", errors="replace")):
            if key.key_id in keys:
                raise TrustConfigError(f"{file}: key {key.key_id[:12]}... is already trusted by "
                                       f"{keys[key.key_id].source}; list each key once")
            keys[key.key_id] = key
    return TrustStore(keys, digest.hexdigest()), watched


@dataclass(frozen=True)
class Revocations:
    keys: frozenset[str] = frozenset()
    versions: frozenset[str] = frozenset()
    digest: str = ""


def _hex_list(data: dict[str, Any], name: str, path: Path) -> frozenset[str]:
    values = data.get(name) or []
    if not isinstance(values, list):
        raise TrustConfigError(f"{path}: '{name}' must be a list of sha256 hex digests")
    bad = [v for v in values if not isinstance(v, str) or not _HEX64.fullmatch(v.strip().lower())]
    if bad:
        raise TrustConfigError(f"{path}: '{name}' holds entries that are not sha256 hex digests: {bad[:3]}")
    return frozenset(v.strip().lower() for v in values)


def load_revocations(path: Path) -> tuple[Revocations, list[Path]]:
    data, digest = read_yaml(path, "the revocation list", TrustConfigError)
    if not isinstance(data, dict) or set(data) - {"keys", "versions"}:
        raise TrustConfigError(f"{path}: expected a mapping with 'keys' and/or 'versions' lists")
    return (Revocations(_hex_list(data, "keys", path), _hex_list(data, "versions", path), digest), [path])
