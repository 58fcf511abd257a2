"""`manifest.json`: what a model version is, where it came from, and the checksum of every file.

The manifest is the publishing contract. A version directory without one, or whose files do not match
their checksums, is never loaded: that is how a half-copied version (TF Serving #1086) is told apart
from a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from server.repository.card import CardError, ModelCard
from server.runtime.base import RUNTIMES

MANIFEST_NAME = "manifest.json"
# The version's signature (OpenSSF model-signing bundle, `server.governance.signing`). It covers every
# file of the version, the manifest included, so the manifest cannot list it: it is written after.
SIGNATURE_NAME = "model.sig"
SCHEMA_VERSION = 1
STAGES = ("det", "cls", "rec")
_CHUNK = 1 << 20


class ManifestError(ValueError):
    """The manifest is missing, unreadable or malformed."""


@dataclass(frozen=True)
class StageSpec:
    """One network of the pipeline: its directory (relative to the version) and, for rec, its dictionary.

    `runtime` ("paddle", "onnxruntime", "openvino" or "openvino:bf16") picks the runtime (and for
    OpenVINO its precision); left out, the files decide (see `server.runtime.base.detect_runtime`).
    """

    dir: str
    dict: str | None = None
    runtime: str | None = None


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    created_at: str
    created_by: str
    source: dict[str, Any]
    framework: dict[str, str]
    stages: dict[str, StageSpec]
    files: dict[str, str]  # path relative to the version directory -> sha256 hex
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    quality_gate: dict[str, Any] = field(default_factory=dict)
    card: ModelCard | None = None  # provenance (server.repository.card); left out of the JSON when unset
    # How the version asks to enter service (README, "Canary releases"): canary_percent, shadow_percent,
    # min_requests, max_minutes; left out of the JSON when unset.
    rollout: dict[str, float] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["stages"] = {
            name: {k: v for k, v in asdict(spec).items() if v is not None} for name, spec in self.stages.items()
        }
        if self.card is None:
            del data["card"]
        else:
            data["card"] = self.card.to_json()
        if not self.rollout:
            del data["rollout"]
        return data

    @classmethod
    def from_json(cls, data: Any) -> "Manifest":
        if not isinstance(data, dict):
            raise ManifestError("manifest must be a JSON object")
        required = ("name", "version", "stages", "files")
        missing = [key for key in required if key not in data]
        if missing:
            raise ManifestError(f"manifest lacks {', '.join(missing)}")
        stages_raw = data["stages"]
        if not isinstance(stages_raw, dict) or not {"det", "rec"} <= set(stages_raw):
            raise ManifestError("manifest stages must include det and rec")
        unknown = set(stages_raw) - set(STAGES)
        if unknown:
            raise ManifestError(f"unknown stages: {sorted(unknown)}")
        try:
            stages = {name: StageSpec(**spec) for name, spec in stages_raw.items()}
        except TypeError as exc:
            raise ManifestError(f"bad stage entry: {exc}") from exc
        bad_runtime = [name for name, spec in stages.items() if spec.runtime not in (None, *RUNTIMES)]
        if bad_runtime:
            raise ManifestError(f"stage runtime must be one of {', '.join(RUNTIMES)} ({', '.join(bad_runtime)})")
        if stages["rec"].dict is None:
            raise ManifestError("the rec stage must name its character dictionary ('dict')")
        files = data["files"]
        if not isinstance(files, dict) or not all(isinstance(v, str) and len(v) == 64 for v in files.values()):
            raise ManifestError("files must map relative paths to sha256 hex digests")
        if SIGNATURE_NAME in files:
            raise ManifestError(f"files must not list {SIGNATURE_NAME}: the signature covers the manifest, not "
                                "the other way round")
        try:
            card = None if data.get("card") is None else ModelCard.from_json(data["card"])
        except CardError as exc:
            raise ManifestError(f"card: {exc}") from exc
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            created_at=str(data.get("created_at", "")),
            created_by=str(data.get("created_by", "")),
            source=dict(data.get("source") or {}),
            framework=dict(data.get("framework") or {}),
            stages=stages,
            files=dict(files),
            settings=dict(data.get("settings") or {}),
            quality_gate=dict(data.get("quality_gate") or {}),
            card=card,
            rollout=_rollout(data.get("rollout")),
            schema=int(data.get("schema", SCHEMA_VERSION)),
        )


# A manifest's `rollout` keys and their bounds.
ROLLOUT_KEYS = {"canary_percent": (0.0, 100.0), "shadow_percent": (0.0, 100.0), "min_requests": (0.0, 1e9),
                "max_minutes": (0.0, 1e6)}


def _rollout(raw: Any) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ManifestError("rollout must be an object")
    unknown = sorted(set(raw) - set(ROLLOUT_KEYS))
    if unknown:
        raise ManifestError(f"unknown rollout keys {unknown} (known: {', '.join(ROLLOUT_KEYS)})")
    for key, value in raw.items():
        low, high = ROLLOUT_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ManifestError(f"rollout.{key} must be a number within {low:g}..{high:g}, got {value!r}")
    if raw and not raw.get("canary_percent") and not raw.get("shadow_percent"):
        raise ManifestError("rollout needs canary_percent or shadow_percent above 0")
    return {key: float(value) for key, value in raw.items()}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(version_dir: Path) -> Manifest:
    path = version_dir / MANIFEST_NAME
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ManifestError(f"{MANIFEST_NAME} not found") from exc
    except OSError as exc:
        raise ManifestError(f"cannot read {MANIFEST_NAME}: {exc}") from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{MANIFEST_NAME} is not valid JSON: {exc}") from exc
    return Manifest.from_json(data)


def write_manifest(version_dir: Path, manifest: Manifest) -> None:
    """Write atomically (temp file + rename): a reader sees the old manifest or the new, never half."""
    tmp = version_dir / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, version_dir / MANIFEST_NAME)


def hash_tree(version_dir: Path) -> dict[str, str]:
    """sha256 of every regular file under `version_dir` except the manifest and the signature."""
    hashes = {}
    for path in sorted(version_dir.rglob("*")):
        if path.is_file() and path.name != MANIFEST_NAME and not path.name.startswith("."):
            rel = path.relative_to(version_dir).as_posix()
            if rel != SIGNATURE_NAME:
                hashes[rel] = sha256_file(path)
    return hashes


def verify_files(version_dir: Path, manifest: Manifest) -> list[str]:
    """Problems found checking every listed file against its checksum; empty when the version is whole.

    A listed path that escapes the version directory (`..`, absolute, or through a symlink) is a problem
    too: a manifest must not make the server read files outside the repository.
    """
    problems = []
    root = version_dir.resolve()
    for rel, expected in sorted(manifest.files.items()):
        path = (version_dir / rel).resolve()
        if root not in path.parents:
            problems.append(f"{rel}: outside the version directory")
            continue
        try:
            actual = sha256_file(path)
        except FileNotFoundError:
            problems.append(f"{rel}: missing")
            continue
        except OSError as exc:
            problems.append(f"{rel}: unreadable ({exc.strerror})")
            continue
        if actual != expected:
            problems.append(f"{rel}: sha256 mismatch")
    for name, spec in manifest.stages.items():
        needed = [spec.dir] + ([spec.dict] if spec.dict else [])
        for rel in needed:
            if not any(f == rel or f.startswith(rel.rstrip("/") + "/") for f in manifest.files):
                problems.append(f"{name}: {rel} is not covered by the manifest's files")
    return problems


def unlisted_files(version_dir: Path, manifest: Manifest) -> list[str]:
    """Files under `version_dir` that are neither its manifest, its signature nor listed in the manifest:
    not part of the version (a copy that must match a version exactly has none)."""
    listed = {MANIFEST_NAME, SIGNATURE_NAME, *manifest.files}
    return sorted(rel for rel in (p.relative_to(version_dir).as_posix() for p in version_dir.rglob("*")
                                  if not p.is_dir()) if rel not in listed)


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
