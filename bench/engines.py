"""The OCR engines a benchmark compares: this project's pipeline and the installed anchors.

Every engine takes the same decoded BGR image (decoding is not timed: the anchors decode differently and
the server's decode is measured by bench/server.py) and returns `PredictedLine`s in its reading order.
Anchors are optional (`make bench-setup` installs them); `available_anchors` lists those that import.

Settings presets make "same weights, same settings" comparisons possible (bench/parity.py):
`rapidocr` is RapidOCR 1.4's config.yaml (recognition batching included), `rapidocr-det` only its
detection settings and text score; `paddleocr` is PaddleOCR 3.x's PP-OCRv4 mobile defaults (text score
0), `paddleocr-det` only its detection settings.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from bench.scoring import PredictedLine
from server.pipeline.types import DetSettings, PipelineSettings

# RapidOCR 1.4.x config.yaml (Det section and Global.text_score).
RAPIDOCR_DET = DetSettings(
    limit_side_len=736, limit_type="min", max_side_limit=4000, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    thresh=0.3, box_thresh=0.5, unclip_ratio=1.6, max_candidates=1000, use_dilation=True,
)
# PaddleOCR 3.x, PP-OCRv4_mobile_det's inference.yml and TextDetection defaults.
PADDLEOCR_DET = DetSettings(
    limit_side_len=64, limit_type="min", max_side_limit=4000, mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225), thresh=0.3, box_thresh=0.6, unclip_ratio=1.5, max_candidates=1000,
    use_dilation=False,
)
PRESETS: dict[str, Callable[[PipelineSettings], PipelineSettings]] = {
    "default": lambda s: s,
    "rapidocr": lambda s: replace(s, det=RAPIDOCR_DET, rec=replace(s.rec, drop_score=0.5, width_buckets=())),
    # RapidOCR's detection settings and text score with this project's recognition batching: compares
    # detection settings alone (the default-settings measurement of issue 2).
    "rapidocr-det": lambda s: replace(s, det=RAPIDOCR_DET, rec=replace(s.rec, drop_score=0.5)),
    "paddleocr-det": lambda s: replace(s, det=PADDLEOCR_DET),
    "paddleocr": lambda s: replace(s, det=PADDLEOCR_DET, rec=replace(s.rec, drop_score=0.0)),
}


class Engine(Protocol):
    name: str

    def __call__(self, image: np.ndarray) -> list[PredictedLine]: ...

    def close(self) -> None: ...


class OurPipeline:
    """This project's pipeline, loaded exactly as a server worker loads it (verify, build, warm up)."""

    def __init__(self, model_repo: Path, version: str | None, preset: str = "default",
                 cpu_threads: int | None = None, name: str = "ours", workers: int = 1, threads: int = 1,
                 slot: int = 0) -> None:
        """Runtime options are derived as a server worker derives them for `workers` x `threads`
        (one worker with all cores by default); `cpu_threads` overrides the math-library threads."""
        from server.config import Settings
        from server.context import runtime_options
        from server.lifecycle.loader import load_version
        from server.repository.layout import ModelRepository

        settings = Settings.from_env({**os.environ, "OCR_WORKERS": str(workers), "OCR_THREADS": str(threads)})
        if cpu_threads:
            settings = replace(settings, cpu_threads=cpu_threads)
        repo = ModelRepository(model_repo, settings.pipeline_name)
        version = version or repo.version_names()[-1]
        self.model = load_version(repo, version, runtime_options(settings, slot))
        pipeline = self.model.pipeline
        self.pipeline = replace(pipeline, settings=PRESETS[preset](pipeline.settings))
        self.name = name
        self.version = version

    def __call__(self, image: np.ndarray) -> list[PredictedLine]:
        result = self.pipeline.run(image)
        return [PredictedLine(line.box, line.text) for line in result.lines]

    def close(self) -> None:
        self.model.close()


class RapidOcr:
    """RapidOCR 1.4 (`rapidocr_onnxruntime` or `rapidocr_paddle`) with its own config.yaml defaults.

    `max_side_len` is RapidOCR's pre-resize of large images (2000 by default); parity runs lift it so
    that both pipelines see the same pixels. `threads` sets its math-library threads (ONNX Runtime's
    intra-op threads, Paddle's CPU math threads); by default it keeps its own choice.
    """

    def __init__(self, module: str, name: str, max_side_len: int | None = None, threads: int | None = None) -> None:
        engine_cls = __import__(module, fromlist=["RapidOCR"]).RapidOCR
        thread_option = "intra_op_num_threads" if module == "rapidocr_onnxruntime" else "cpu_math_library_num_threads"
        self.engine = engine_cls(**({thread_option: threads} if threads else {}))
        if max_side_len is not None:
            self.engine.max_side_len = max_side_len
        self.name = name

    def __call__(self, image: np.ndarray) -> list[PredictedLine]:
        result, _ = self.engine(image)
        return [PredictedLine(np.asarray(box, dtype=np.float32), text) for box, text, _score in result or []]

    def close(self) -> None:
        self.engine = None


ANCHORS = {
    "rapidocr-onnx": "rapidocr_onnxruntime",
    "rapidocr-paddle": "rapidocr_paddle",
}


def available_anchors() -> list[str]:
    return [name for name, module in ANCHORS.items() if importlib.util.find_spec(module) is not None]


def build_anchor(name: str, threads: int | None = None) -> Engine:
    if name in ANCHORS:
        return RapidOcr(ANCHORS[name], name, threads=threads)
    raise ValueError(f"unknown engine {name!r}; known: ours, {', '.join(ANCHORS)}")
