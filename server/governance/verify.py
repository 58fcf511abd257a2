"""Is this version the one its release team signed? One typed answer, for the loader, the periodic
re-check, the listing and the audit log.

`verify_version` checks, cheapest first, and stops at the first problem:

    revoked_version  the version digest is on the revocation list (whoever signed it, signed or not)
    unsigned         no model.sig
    bad_signature    model.sig is not a model-signing bundle we can read, or its signature is not
                     genuine for the key it names, or its statement is inconsistent
    revoked_key      signed by a key on the revocation list
    untrusted_key    signed by a key that is not in the trust store
    wrong_pipeline   signed by a trusted key that may not sign for this pipeline
    incomplete       the signature leaves out manifest.json or a file the manifest lists
    tampered         a file differs from what was signed, is missing, or was added (`file` names it).
                     A signature copied from another version lands here too: the manifest names the
                     version, so its digest differs (the reason then says which version was signed)

**Version digest**: the sha256 (hex) of the version's `manifest.json` bytes. The manifest holds the
version name, the card, the settings and every other file's sha256, so the digest names one exact
release; it is what the revocation list and the audit log use.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from server.config import Settings
from server.governance.reloading import Reloading
from server.governance.signing import SignatureFormatError, hash_directory, read_bundle
from server.governance.trust import Revocations, TrustedKey, TrustStore, load_revocations, load_trust_store
from server.repository.manifest import MANIFEST_NAME, SIGNATURE_NAME, ManifestError, read_manifest


class SignatureProblem(str, Enum):
    REVOKED_VERSION = "revoked_version"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    REVOKED_KEY = "revoked_key"
    UNTRUSTED_KEY = "untrusted_key"
    WRONG_PIPELINE = "wrong_pipeline"
    INCOMPLETE = "incomplete"
    TAMPERED = "tampered"


@dataclass(frozen=True)
class SignatureStatus:
    """The outcome of one check. `verified` means signed by a trusted, unrevoked key for this pipeline,
    with every file as signed; otherwise `problem` and `reason` say why not."""

    signed: bool  # a model.sig is present (says nothing about whether it is good)
    verified_at: str  # UTC, ISO 8601: when this check ran
    problem: SignatureProblem | None = None
    reason: str = ""
    key_id: str | None = None  # the key the signature names (trusted or not)
    key_name: str | None = None  # its name in the trust store, when it is trusted
    version_digest: str | None = None  # sha256 of manifest.json (None when it cannot be read)
    file: str | None = None  # for `tampered`: the first file found changed, missing or added

    @property
    def verified(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        return {"signed": self.signed, "verified": self.verified,
                "problem": self.problem.value if self.problem else None, "reason": self.reason, "key_id": self.key_id, "key_name": self.key_name,
                "version_digest": self.version_digest, "file": self.file, "verified_at": self.verified_at}


def version_digest(version_dir: Path) -> str:
    """sha256 of the version's manifest.json bytes (raises OSError when it cannot be read)."""
    return hashlib.sha256((version_dir / MANIFEST_NAME).read_bytes()).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _find_key(trust: TrustStore, hint: str | None, bundle_check: Any) -> TrustedKey | None:
    if hint is not None:
        return trust.get(hint)
    # Bundles from before model_signing 1.0 name no key: try each trusted key.
    return next((key for key in trust.keys.values() if bundle_check(key.public_key)), None)


def verify_version(version_dir: Path, pipeline: str, trust: TrustStore, revocations: Revocations) -> SignatureStatus:
    """Check `version_dir` (a version of `pipeline`) against its model.sig; never raises for what is
    on disk (an unreadable file is a problem in the status)."""
    at = _now()
    try:
        digest: str | None = version_digest(version_dir)
    except OSError:
        digest = None
    signature_path = version_dir / SIGNATURE_NAME
    signed = signature_path.is_file()

    def status(problem: SignatureProblem | None, reason: str = "", key: TrustedKey | None = None,
               kid: str | None = None, file: str | None = None) -> SignatureStatus:
        return SignatureStatus(signed, at, problem, reason, key.key_id if key else kid, key.name if key else None,
                               digest, file)

    if digest is not None and digest in revocations.versions:
        return status(SignatureProblem.REVOKED_VERSION, f"version digest {digest} is on the revocation list")
    if not signed:
        return status(SignatureProblem.UNSIGNED, f"no {SIGNATURE_NAME}: sign with `ocr-server models sign`")
    try:
        bundle = read_bundle(signature_path)
    except SignatureFormatError as exc:
        return status(SignatureProblem.BAD_SIGNATURE, str(exc))
    except OSError as exc:
        return status(SignatureProblem.BAD_SIGNATURE, f"cannot read {SIGNATURE_NAME}: {exc.strerror or exc}")
    if bundle.key_hint is not None and bundle.key_hint in revocations.keys:
        return status(SignatureProblem.REVOKED_KEY, f"signed by key {bundle.key_hint}, which is revoked",
                      kid=bundle.key_hint)
    key = _find_key(trust, bundle.key_hint, bundle.check)
    if key is None:
        named = f"key {bundle.key_hint}" if bundle.key_hint else "a key that names no id and matches no trusted key"
        return status(SignatureProblem.UNTRUSTED_KEY, f"signed by {named}, which is not in the trust store",
                      kid=bundle.key_hint)
    if key.key_id in revocations.keys:  # reached for hint-less bundles
        return status(SignatureProblem.REVOKED_KEY, f"signed by key {key.key_id}, which is revoked", key)
    if not bundle.check(key.public_key):
        return status(SignatureProblem.BAD_SIGNATURE, f"the signature is not valid for key {key.key_id}", key)
    try:
        statement = bundle.statement()
    except SignatureFormatError as exc:
        return status(SignatureProblem.BAD_SIGNATURE, str(exc), key)
    if not key.allows(pipeline):
        return status(SignatureProblem.WRONG_PIPELINE,
                      f"key {key.name} may sign for {', '.join(sorted(key.pipelines))}, not {pipeline}", key)

    try:
        listed = sorted(read_manifest(version_dir).files)
    except ManifestError:
        listed = []  # the repository's own check reports the manifest; the signature still must cover it
    uncovered = [rel for rel in [MANIFEST_NAME, *listed] if statement.ignores(rel)]
    if uncovered:
        return status(SignatureProblem.INCOMPLETE, f"the signature leaves out {', '.join(uncovered[:3])}", key)

    try:
        actual = hash_directory(version_dir, (*statement.ignore_paths, SIGNATURE_NAME))
    except OSError as exc:
        return status(SignatureProblem.TAMPERED, f"cannot read the version's files: {exc.strerror or exc}", key,
                      file=exc.filename and str(exc.filename))
    for rel in sorted(set(actual) | set(statement.resources)):
        if rel not in actual:
            return status(SignatureProblem.TAMPERED, f"{rel} was signed but is missing", key, file=rel)
        if rel not in statement.resources:
            return status(SignatureProblem.TAMPERED, f"{rel} is not covered by the signature (added after signing)",
                          key, file=rel)
        if actual[rel] != statement.resources[rel]:
            reason = f"{rel} changed after signing"
            if rel == MANIFEST_NAME and statement.name and statement.name != version_dir.name:
                reason += f": the signature was made for version {statement.name}, not {version_dir.name}"
            return status(SignatureProblem.TAMPERED, reason, key, file=rel)
    return status(None, key=key)


class SignatureChecker:
    """`verify_version` with the trust store and revocation list of the settings, each re-read when
    its files change, so a revocation applies at the next check without a restart."""

    def __init__(self, trusted_keys: Path | None, revocation_list: Path | None, reload_interval_s: float = 1.0) -> None:
        empty_trust: tuple[TrustStore, list[Path]] = (TrustStore(), [])
        empty_revocations: tuple[Revocations, list[Path]] = (Revocations(), [])
        self._trust = Reloading(lambda: load_trust_store(trusted_keys) if trusted_keys else empty_trust,
                                min_interval_s=reload_interval_s)
        self._revocations = Reloading(lambda: load_revocations(revocation_list) if revocation_list
                                      else empty_revocations, min_interval_s=reload_interval_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> "SignatureChecker":
        """Raises TrustConfigError when a configured file cannot be used."""
        return cls(Path(settings.trusted_keys) if settings.trusted_keys else None,
                   Path(settings.revocation_list) if settings.revocation_list else None)

    @property
    def trust(self) -> TrustStore:
        return self._trust.get()

    @property
    def revocations(self) -> Revocations:
        return self._revocations.get()

    @property
    def errors(self) -> list[str]:
        """Why files on disk are not in force (their previous contents are)."""
        return [e for e in (self._trust.error, self._revocations.error) if e]

    def check(self, version_dir: Path, pipeline: str) -> SignatureStatus:
        return verify_version(version_dir, pipeline, self.trust, self.revocations)
