"""`ocr-server models push VERSION`: register a local version in the MLflow registry.

The version's files - every one its manifest lists, the manifest itself and its model.sig if signed -
are logged byte for byte as the artifacts of a new MLflow run (artifact path `model`) and registered
as a new version of the registered model, tagged as `server.registry.tags` describes: our version
name, pipeline, manifest digest, whether it is signed, and its model card. What the pods sync is then
exactly what was pushed, and they can check it is.

Pushing is idempotent: a version the registry already holds with the same manifest digest is not
registered twice (its existing MLflow version is returned). The same name with other files is
refused: versions are immutable here as in the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from server.governance.signing import SignatureFormatError, read_bundle
from server.governance.verify import version_digest
from server.registry.client import MlflowRegistry, RegistryVersion
from server.registry.tags import TAG_DIGEST, TAG_KEY_ID, TAG_PIPELINE, TAG_SIGNED, TAG_VERSION, card_tags
from server.repository.manifest import SIGNATURE_NAME, ManifestError, read_manifest, unlisted_files, verify_files


class PushError(RuntimeError):
    """The version cannot be pushed as it is; the message says why."""


@dataclass(frozen=True)
class Pushed:
    version: str
    registered: RegistryVersion
    digest: str
    created: bool  # False when the registry already held this exact version


def version_tags(version_dir: Path) -> tuple[str, dict[str, str]]:
    """(version digest, the model version's tags) for a whole, verified version directory."""
    try:
        manifest = read_manifest(version_dir)
    except ManifestError as exc:
        raise PushError(f"{version_dir}: {exc}") from exc
    if manifest.version != version_dir.name:
        raise PushError(f"{version_dir}: its manifest names version {manifest.version}")
    problems = verify_files(version_dir, manifest)
    problems += [f"{rel}: not listed in the manifest" for rel in unlisted_files(version_dir, manifest)]
    if problems:
        raise PushError(f"{version_dir} does not verify: " + "; ".join(problems[:5]))
    digest = version_digest(version_dir)
    tags = {TAG_VERSION: manifest.version, TAG_PIPELINE: manifest.name, TAG_DIGEST: digest, TAG_SIGNED: "false"}
    signature = version_dir / SIGNATURE_NAME
    if signature.is_file():
        tags[TAG_SIGNED] = "true"
        try:
            hint = read_bundle(signature).key_hint
        except SignatureFormatError as exc:
            raise PushError(f"{signature} is not a readable signature: {exc}") from exc
        if hint:
            tags[TAG_KEY_ID] = hint
    tags.update(card_tags(manifest.card))
    return digest, tags


def push(version_dir: Path, registry: MlflowRegistry, experiment: str) -> Pushed:
    """Register `version_dir` (a version of the local repository) in `registry`."""
    digest, tags = version_tags(version_dir)
    version = tags[TAG_VERSION]
    same_name = [v for v in registry.versions() if v.name == version]
    for existing in same_name:
        if existing.tags.get(TAG_DIGEST) == digest:
            return Pushed(version, existing, digest, created=False)
    if same_name:
        numbers = ", ".join(v.number for v in same_name)
        raise PushError(f"the registry already holds {version} (MLflow version {numbers}) with other files; "
                        "versions are immutable: publish and push a new version name")
    registered = registry.register(version_dir, tags, experiment, run_name=version)
    return Pushed(version, registered, digest, created=True)
