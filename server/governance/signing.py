"""Signing a version directory in the OpenSSF model-signing format (key mode), with `cryptography` only.

The format, as `model_signing` 1.1.1 writes and reads it (its `sign key` / `verify key`), so that a
release signed by either tool verifies with the other:

- `model.sig` at the version's root is a Sigstore bundle (JSON, media type
  `application/vnd.dev.sigstore.bundle.v0.3+json`) with `verificationMaterial.publicKey.hint` = the
  key id (`trust.key_id`), no transparency-log entries, and a DSSE envelope;
- the envelope's payload (type `application/vnd.in-toto+json`) is an in-toto Statement v1 whose
  predicate (`https://model_signing/signature/v1.0`) lists every file (`resources`: path, `sha256`,
  digest) and how they were found (`serialization`: method `files`, sha256, symlinks, ignored paths);
  its one subject is the model (the directory's name) with the sha256 over the concatenated raw file
  digests, in the order the resources are listed;
- the signature is ECDSA (DER) over the DSSE pre-authentication encoding of the payload, with the
  hash that goes with the curve (P-256: SHA-256).

Every file under the directory is covered, dot-files and `manifest.json` included (so the card, the
settings and the version name are signed), except the signature itself and git's files, which
`model_signing` leaves out by default. Files are hashed following symlinks, as the loader reads them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from server.governance.trust import CURVE_HASHES, TrustConfigError, check_curve, key_id
from server.repository.manifest import SIGNATURE_NAME, sha256_file

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
# What `model_signing` leaves out by default besides the signature; recorded in the statement, so its
# verifier leaves out the same.
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")


class SignatureFormatError(ValueError):
    """The signature file is not a bundle this module can check; the message says what is wrong."""


@dataclass(frozen=True)
class Statement:
    """What a signature says about a model: its name and every covered file's sha256."""

    name: str
    resources: dict[str, str]  # relative posix path -> sha256 hex, in the signed order
    ignore_paths: tuple[str, ...]

    def ignores(self, rel: str) -> bool:
        return is_ignored(rel, self.ignore_paths)


@dataclass(frozen=True)
class Bundle:
    """A parsed `model.sig`; `check(public_key)` tells whether its signature is genuine."""

    key_hint: str | None
    payload: bytes
    signature: bytes

    def check(self, public_key: ec.EllipticCurvePublicKey) -> bool:
        algorithm = ec.ECDSA(CURVE_HASHES[public_key.curve.name]())
        try:
            public_key.verify(self.signature, pae(self.payload), algorithm)
        except InvalidSignature:
            return False
        return True

    def statement(self) -> Statement:
        """The signed statement; call only after `check` passed (until then it is anyone's text)."""
        return parse_statement(self.payload)


def pae(payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed (type and length bind the payload)."""
    return b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(payload), payload)


def is_ignored(rel: str, ignore_paths: Iterable[str]) -> bool:
    return any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in ignore_paths)


def hash_directory(root: Path, ignore_paths: Iterable[str]) -> dict[str, str]:
    """sha256 of every regular file under `root` (following symlinks), by relative posix path."""
    ignored = tuple(ignore_paths)
    hashes: dict[str, str] = {}
    visited: set[tuple[int, int]] = set()
    for current, dirs, files in os.walk(root, followlinks=True):
        info = os.stat(current)
        if (info.st_dev, info.st_ino) in visited:  # a symlink loop
            dirs.clear()
            continue
        visited.add((info.st_dev, info.st_ino))
        for name in files:
            path = Path(current) / name
            rel = path.relative_to(root).as_posix()
            if not is_ignored(rel, ignored) and path.is_file():
                hashes[rel] = sha256_file(path)
    return hashes


def _order(paths: Iterable[str]) -> list[str]:
    """Resources in `model_signing`'s order (by path components), so both tools write the same list."""
    return sorted(paths, key=lambda p: PurePosixPath(p).parts)


def root_digest(digests: Iterable[str]) -> str:
    hasher = hashlib.sha256()
    for digest in digests:
        hasher.update(bytes.fromhex(digest))
    return hasher.hexdigest()


def _has_symlinks(root: Path) -> bool:
    return any(os.path.islink(os.path.join(current, name))
               for current, dirs, files in os.walk(root, followlinks=True) for name in dirs + files)


def statement_payload(root: Path, name: str) -> bytes:
    ignore = [*GIT_PATHS, SIGNATURE_NAME]
    hashes = hash_directory(root, ignore)
    order = _order(hashes)
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": root_digest(hashes[p] for p in order)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "resources": [{"name": p, "algorithm": "sha256", "digest": hashes[p]} for p in order],
            "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": _has_symlinks(root),
                              "ignore_paths": ignore},
        },
    }
    return json.dumps(statement, indent=2).encode("utf-8")


def load_private_key(path: Path, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password)
    except OSError as exc:
        raise TrustConfigError(f"cannot read the signing key {path}: {exc.strerror or exc}") from exc
    except (ValueError, TypeError) as exc:  # TypeError: encrypted without a password, or vice versa
        raise TrustConfigError(f"{path}: not a usable PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TrustConfigError(f"{path}: signing keys must be ECDSA P-256, P-384 or P-521")
    check_curve(key.public_key())
    return key


@dataclass(frozen=True)
class SignResult:
    path: Path
    key_id: str


def sign_directory(root: Path, private_key: ec.EllipticCurvePrivateKey, *, name: str | None = None) -> SignResult:
    """Write `root/model.sig` over every file of `root`; `name` is the model's name in the statement
    (default: the directory's name, as `model_signing` does). The file appears atomically: it is
    written next to the directory, outside what is hashed, and renamed into place."""
    public_key = check_curve(private_key.public_key())
    payload = statement_payload(root, name or root.name)
    signature = private_key.sign(pae(payload), ec.ECDSA(CURVE_HASHES[public_key.curve.name]()))
    kid = key_id(public_key)
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": kid}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{root.name}.sig-", dir=root.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(bundle, handle, indent=2)
        os.chmod(tmp, 0o644)
        os.replace(tmp, root / SIGNATURE_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return SignResult(root / SIGNATURE_NAME, kid)


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise SignatureFormatError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise SignatureFormatError(f"{what} is not valid base64") from exc


def read_bundle(path: Path) -> Bundle:
    """Parse `model.sig` (no signature check yet). Raises SignatureFormatError, or OSError."""
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SignatureFormatError(f"{path.name} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SignatureFormatError(f"{path.name} is not a Sigstore bundle")
    if data.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise SignatureFormatError(f"unsupported bundle media type {data.get('mediaType')!r} (expected "
                                   f"{BUNDLE_MEDIA_TYPE}: key-mode signatures)")
    material = data.get("verificationMaterial")
    if not isinstance(material, dict) or not isinstance(material.get("publicKey"), dict):
        raise SignatureFormatError("the bundle names no public key: only key-mode signatures are supported "
                                   "(not Sigstore certificates)")
    hint = material["publicKey"].get("hint") or None
    if hint is not None and not isinstance(hint, str):
        raise SignatureFormatError("verificationMaterial.publicKey.hint must be a string")
    envelope = data.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        raise SignatureFormatError("the bundle holds no DSSE envelope")
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise SignatureFormatError(f"unexpected DSSE payload type {envelope.get('payloadType')!r}")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or len(signatures) != 1 or not isinstance(signatures[0], dict):
        raise SignatureFormatError("the DSSE envelope must hold exactly one signature")
    return Bundle(hint.lower() if hint else None, _b64(envelope.get("payload"), "dsseEnvelope.payload"),
                  _b64(signatures[0].get("sig"), "the signature"))


def parse_statement(payload: bytes) -> Statement:
    try:
        data = json.loads(payload)
        if data["_type"] != STATEMENT_TYPE:
            raise SignatureFormatError(f"not an in-toto {STATEMENT_TYPE} statement")
        if data["predicateType"] != PREDICATE_TYPE:
            raise SignatureFormatError(f"unsupported predicate type {data['predicateType']!r} (expected "
                                       f"{PREDICATE_TYPE}, model_signing 1.x)")
        subjects = data["subject"]
        if not isinstance(subjects, list) or len(subjects) != 1:
            raise SignatureFormatError("the statement must have exactly one subject")
        predicate = data["predicate"]
        serialization_ = predicate["serialization"]
        if serialization_.get("method") != "files" or serialization_.get("hash_type") != "sha256":
            raise SignatureFormatError("only per-file sha256 signatures are supported (model_signing's default), "
                                       f"got {serialization_.get('method')}/{serialization_.get('hash_type')}")
        resources: dict[str, str] = {}
        for resource in predicate["resources"]:
            if resource["algorithm"] != "sha256":
                raise SignatureFormatError(f"resource {resource['name']} is not hashed with sha256")
            rel = str(resource["name"])
            if rel in resources or rel.startswith("/") or ".." in PurePosixPath(rel).parts:
                raise SignatureFormatError(f"resource name {rel!r} is duplicated or escapes the directory")
            resources[rel] = str(resource["digest"]).lower()
        expected = str(subjects[0]["digest"]["sha256"]).lower()
        ignore = serialization_.get("ignore_paths") or []
        name = str(subjects[0].get("name", ""))
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SignatureFormatError(f"malformed model-signing statement ({type(exc).__name__}: {exc})") from exc
    try:
        computed = root_digest(resources.values())
    except ValueError as exc:
        raise SignatureFormatError("a resource digest is not hex") from exc
    if computed != expected:
        raise SignatureFormatError("the statement is inconsistent: its subject digest does not match its files")
    return Statement(name, resources, tuple(str(p).strip("/") for p in ignore))
