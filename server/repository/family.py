"""Model-family settings: what a version's networks expect, carried with the version, not in code.

PP-OCR generations differ in how detection resizes and thresholds (PP-OCRv6's DB head is trained for
`thresh 0.2 / box_thresh 0.45 / unclip 1.4`, PP-OCRv4's for `0.3 / 0.6 / 1.5`), in their recognition
dictionaries (6,623 to 18,708 characters) and input shapes. A version says what it needs in three
layers, each overriding the one before:

1. the PP-OCR defaults (`PipelineSettings()`),
2. the `inference.yml` a PaddleX / PaddleOCR 3.x export writes beside each network, where present,
3. the `settings` section of the version's `manifest.json`.

`ocr-server models install` resolves all three and writes the result into the manifest, so an
installed version is fully described by its manifest; `resolve_settings` does the same at load time
for a version that was published with an `inference.yml` and only partial settings.

Only what the pipeline implements is accepted: an `inference.yml` asking for something else (a
non-CTC recogniser, a classifier with another resize or normalisation, DB's "slow" scoring) is
refused with a reason instead of being served with the wrong pre-processing, which would not fail but
read garbage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

from server.pipeline.types import PipelineSettings
from server.repository.manifest import Manifest, StageSpec

INFERENCE_YML = "inference.yml"
_DEFAULT_SCALE = 1.0 / 255.0
_HALF = [0.5, 0.5, 0.5]
# Transform ops that only decode, label or pick keys for training: nothing for inference to follow.
_IGNORED_OPS = {
    "DecodeImage", "DetLabelEncode", "KeepKeys", "ToCHWImage", "MultiLabelEncode", "CTCLabelEncode",
    "ClsLabelEncode", "RecAug", "ClsAug",
}
_DB_KEYS = {"thresh", "box_thresh", "unclip_ratio", "max_candidates", "use_dilation"}


class FamilyError(ValueError):
    """A model's own description asks for processing this pipeline does not implement."""


def read_inference_yml(stage_dir: Path) -> dict[str, Any] | None:
    """The parsed `inference.yml` of a stage directory, or None when it has none."""
    path = stage_dir / INFERENCE_YML
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise FamilyError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise FamilyError(f"{path} is not a YAML mapping")
    return data


def model_name(config: Mapping[str, Any]) -> str | None:
    """`Global.model_name`, e.g. `PP-OCRv6_small_det`."""
    name = (config.get("Global") or {}).get("model_name")
    return str(name) if name else None


def _ops(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`PreProcess.transform_ops` as {op name: its arguments}."""
    ops: dict[str, dict[str, Any]] = {}
    for entry in (config.get("PreProcess") or {}).get("transform_ops") or []:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise FamilyError(f"malformed transform op {entry!r}")
        (name, args), = entry.items()
        ops[name] = dict(args or {})
    return ops


def _scale(value: Any) -> float:
    """PaddleX writes the scale as a string expression such as `1./255.`."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).replace(" ", "")
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den)
    return float(text)


def _normalisation(args: Mapping[str, Any], where: str) -> tuple[list[float], list[float]]:
    if abs(_scale(args.get("scale", _DEFAULT_SCALE)) - _DEFAULT_SCALE) > 1e-9:
        raise FamilyError(f"{where}: NormalizeImage scale {args.get('scale')!r} (only 1/255 is implemented)")
    if str(args.get("order", "hwc")).lower() != "hwc":
        raise FamilyError(f"{where}: NormalizeImage order {args.get('order')!r} (only hwc is implemented)")
    mean = [float(v) for v in args.get("mean", [0.485, 0.456, 0.406])]
    std = [float(v) for v in args.get("std", [0.229, 0.224, 0.225])]
    if len(mean) != 3 or len(std) != 3:
        raise FamilyError(f"{where}: NormalizeImage needs three means and three deviations")
    return mean, std


def _shape(value: Any, where: str) -> list[int]:
    """A [channels, height, width] input shape."""
    if not isinstance(value, list) or len(value) != 3:
        raise FamilyError(f"{where}: image_shape must be [channels, height, width], got {value!r}")
    return [int(v) for v in value]


def _det_settings(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ops = _ops(config)
    for name, args in ops.items():
        if name in _IGNORED_OPS:
            continue
        if name == "DetResizeForTest":
            unknown = set(args) - {"limit_side_len", "limit_type", "max_side_limit"}
            if unknown:
                raise FamilyError(f"{where}: DetResizeForTest {sorted(unknown)} (only side limits are implemented)")
            out.update({k: v for k, v in args.items() if v is not None})
        elif name == "NormalizeImage":
            out["mean"], out["std"] = _normalisation(args, where)
        else:
            raise FamilyError(f"{where}: pre-processing op {name} is not implemented for detection")
    post = dict(config.get("PostProcess") or {})
    if post and post.pop("name", "DBPostProcess") != "DBPostProcess":
        raise FamilyError(f"{where}: only DB detection (DBPostProcess) is implemented")
    if post.pop("score_mode", "fast") != "fast":
        raise FamilyError(f"{where}: only DB's 'fast' box scoring is implemented")
    if post.pop("box_type", "quad") != "quad":
        raise FamilyError(f"{where}: only quadrilateral boxes are implemented")
    unknown = set(post) - _DB_KEYS
    if unknown:
        raise FamilyError(f"{where}: unknown DB post-processing settings {sorted(unknown)}")
    out.update(post)
    return out


def _rec_settings(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, args in _ops(config).items():
        if name in _IGNORED_OPS:
            continue
        if name == "RecResizeImg":
            out["image_shape"] = _shape(args["image_shape"], where)
        elif name == "NormalizeImage":
            if _normalisation(args, where) != (_HALF, _HALF):
                raise FamilyError(f"{where}: recognition normalisation other than (x/255 - 0.5) / 0.5")
        else:
            raise FamilyError(f"{where}: pre-processing op {name} is not implemented for recognition")
    post = config.get("PostProcess") or {}
    if post and post.get("name", "CTCLabelDecode") != "CTCLabelDecode":
        raise FamilyError(f"{where}: only CTC recognition (CTCLabelDecode) is implemented")
    return out


def _cls_settings(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, args in _ops(config).items():
        if name in _IGNORED_OPS:
            continue
        if name == "ClsResizeImg":
            out["image_shape"] = _shape(args["image_shape"], where)
        elif name == "NormalizeImage":
            if _normalisation(args, where) != (_HALF, _HALF):
                raise FamilyError(f"{where}: classifier normalisation other than (x/255 - 0.5) / 0.5 "
                                  "(e.g. PP-LCNet text-line orientation) is not implemented")
        else:
            raise FamilyError(f"{where}: pre-processing op {name} is not implemented for the angle classifier")
    labels = (config.get("PostProcess") or {}).get("label_list")
    if labels:
        # PaddleX names classes "0_degree" / "180_degree"; the pipeline's labels are the angles.
        out["labels"] = [str(label).removesuffix("_degree") for label in labels]
    return out


_STAGE_READERS = {"det": _det_settings, "rec": _rec_settings, "cls": _cls_settings}


def settings_from_yml(stage: str, config: Mapping[str, Any], where: str = INFERENCE_YML) -> dict[str, Any]:
    """The settings section (`det`, `rec` or `cls`) that an `inference.yml` implies."""
    try:
        return _STAGE_READERS[stage](config, where)
    except FamilyError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # a value of the wrong shape
        raise FamilyError(f"{where}: malformed {stage} settings ({type(exc).__name__}: {exc})") from exc


def charset_from_yml(config: Mapping[str, Any], where: str = INFERENCE_YML) -> list[str] | None:
    """The recogniser's dictionary embedded as `PostProcess.character_dict`, if any, in class order."""
    chars = (config.get("PostProcess") or {}).get("character_dict")
    if chars is None:
        return None
    if not isinstance(chars, list) or not all(isinstance(c, str) for c in chars):
        # YAML reads an unquoted `- no` as False and `- 1` as 1: a dictionary that is not all strings
        # was written without quoting and its classes cannot be trusted.
        raise FamilyError(f"{where}: character_dict must be a list of strings")
    return chars


def derive_settings(
    version_dir: Path, stages: Mapping[str, StageSpec], overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> PipelineSettings:
    """Defaults, then each stage's `inference.yml`, then `overrides` (a manifest's `settings`)."""
    layered: dict[str, dict[str, Any]] = {name: {} for name in ("det", "cls", "rec")}
    for name, spec in stages.items():
        stage_dir = version_dir / spec.dir
        config = read_inference_yml(stage_dir)
        if config is not None:
            layered[name].update(settings_from_yml(name, config, str(stage_dir / INFERENCE_YML)))
    for name, section in (overrides or {}).items():
        if name not in layered:
            raise FamilyError(f"unknown settings section {name!r}")
        layered[name].update(section)
    try:
        return PipelineSettings.from_mapping(layered)
    except (TypeError, ValueError) as exc:
        raise FamilyError(str(exc)) from exc


def resolve_settings(version_dir: Path, manifest: Manifest) -> PipelineSettings:
    """The settings a loaded version runs with: `derive_settings` over the manifest's stages and settings."""
    return derive_settings(version_dir, manifest.stages, manifest.settings)


def stage_model_names(version_dir: Path, stages: Mapping[str, StageSpec]) -> dict[str, str]:
    """`Global.model_name` of each stage that has an `inference.yml` naming one."""
    names = {}
    for name, spec in stages.items():
        config = read_inference_yml(version_dir / spec.dir)
        found = model_name(config) if config else None
        if found:
            names[name] = found
    return names
