"""The model card: where a version came from, recorded in its manifest (and so signed with it).

A bank's model-risk review asks who trained a version, on which data, how it scored and on what, with
which framework and code, and what it replaced. The card answers in fixed, validated fields so that
tools (and `GET /v1/models/<version>`) can read them; `notes` is the free-text escape hatch. Every field
is optional - a card says what is known - but what is given must have the right shape, and unknown
fields are refused: a misspelt `trained-by` would otherwise vanish silently.

    trained_by: ml-team@example.com
    training_data: {id: receipts-2026-03, sha256: <64 hex>}
    evaluation: {dataset: sroie-dev, metrics: {cer: 0.066, line_recall: 0.78}}
    training_framework: {name: PaddleOCR, version: 3.3.0}
    parent_version: 1.0.0-ppocrv4
    code_commit: 3f2c9ab
    notes: fine-tuned on March receipts
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from server.repository.layout import VersionNameError, parse_version

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")  # abbreviated or full git SHA-1 / SHA-256 object names
_MAX_TEXT = 4096
_FIELDS = ("trained_by", "training_data", "evaluation", "training_framework", "parent_version", "code_commit",
           "notes")


class CardError(ValueError):
    """The card is malformed; the message names the field."""


def _text(data: dict[str, Any], key: str, where: str, limit: int = 256) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise CardError(f"{where}{key} must be a non-empty string")
    if len(value) > limit:
        raise CardError(f"{where}{key} is longer than {limit} characters")
    return value.strip()


def _mapping(data: dict[str, Any], key: str, allowed: tuple[str, ...]) -> dict[str, Any] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CardError(f"{key} must be a mapping with {', '.join(allowed)}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise CardError(f"{key} has unknown fields {unknown} (allowed: {', '.join(allowed)})")
    return value


@dataclass(frozen=True)
class DataRef:
    """A data set by name and, when known, the sha256 of its frozen form (an archive, a manifest)."""

    id: str
    sha256: str | None = None


@dataclass(frozen=True)
class Evaluation:
    """How the version scored, and on which evaluation set (metric name -> number)."""

    dataset: str
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Framework:
    name: str
    version: str | None = None


@dataclass(frozen=True)
class ModelCard:
    trained_by: str | None = None
    training_data: DataRef | None = None
    evaluation: Evaluation | None = None
    training_framework: Framework | None = None
    parent_version: str | None = None
    code_commit: str | None = None
    notes: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The card as the manifest stores it: fields that are not set are left out."""
        out: dict[str, Any] = {}
        for key in _FIELDS:
            value = getattr(self, key)
            if value is None:
                continue
            out[key] = {k: v for k, v in asdict(value).items() if v is not None} if is_dataclass(value) else value
        return out

    @classmethod
    def from_json(cls, data: Any) -> "ModelCard":
        if not isinstance(data, dict):
            raise CardError("the model card must be a mapping")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise CardError(f"unknown model card fields {unknown} (allowed: {', '.join(_FIELDS)})")

        training_data = None
        raw = _mapping(data, "training_data", ("id", "sha256"))
        if raw is not None:
            data_id = _text(raw, "id", "training_data.")
            if data_id is None:
                raise CardError("training_data.id is required")
            digest = raw.get("sha256")
            if digest is not None and (not isinstance(digest, str) or not _SHA256.fullmatch(digest)):
                raise CardError("training_data.sha256 must be 64 lowercase hex digits")
            training_data = DataRef(data_id, digest)

        evaluation = None
        raw = _mapping(data, "evaluation", ("dataset", "metrics"))
        if raw is not None:
            dataset = _text(raw, "dataset", "evaluation.")
            if dataset is None:
                raise CardError("evaluation.dataset is required: a metric means nothing without its data set")
            metrics = raw.get("metrics") or {}
            if not isinstance(metrics, dict):
                raise CardError("evaluation.metrics must map metric names to numbers")
            checked: dict[str, float] = {}
            for name, value in metrics.items():
                if not isinstance(name, str) or not name:
                    raise CardError("evaluation.metrics names must be strings")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise CardError(f"evaluation.metrics.{name} must be a finite number, got {value!r}")
                checked[name] = float(value)
            evaluation = Evaluation(dataset, checked)

        framework = None
        raw = _mapping(data, "training_framework", ("name", "version"))
        if raw is not None:
            name = _text(raw, "name", "training_framework.")
            if name is None:
                raise CardError("training_framework.name is required")
            version = raw.get("version")
            framework = Framework(name, None if version is None else _text(raw, "version", "training_framework."))

        parent = _text(data, "parent_version", "")
        if parent is not None:
            try:
                parse_version(parent)
            except VersionNameError as exc:
                raise CardError(f"parent_version: {exc}") from exc
        commit = _text(data, "code_commit", "")
        if commit is not None and not _COMMIT.fullmatch(commit):
            raise CardError("code_commit must be a git commit id (7 to 64 lowercase hex digits)")
        return cls(
            trained_by=_text(data, "trained_by", ""),
            training_data=training_data,
            evaluation=evaluation,
            training_framework=framework,
            parent_version=parent,
            code_commit=commit,
            notes=_text(data, "notes", "", limit=_MAX_TEXT),
        )


def load_card(path: Path) -> ModelCard:
    """Read a card from a YAML (or JSON) file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CardError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise CardError(f"{path} is not valid YAML: {exc}") from exc
    return ModelCard.from_json(data)
