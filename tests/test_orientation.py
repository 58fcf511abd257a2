"""Orientation on real weights with the mobile v2 angle classifier (PP-OCRv4 on Paddle, and the default
PP-OCRv6 small on ONNX Runtime), in process: upside-down pages and lines still read, and upright lines the
classifier alone would turn over stay upright (server.pipeline.cls.decide, ClsSettings)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest
from PIL import Image

from server.lifecycle.loader import LoadedModel
from server.lifecycle.pipeline_loader import load_version
from server.pipeline.pipeline import OcrPipeline
from server.pipeline.types import ImageResult
from server.repository.layout import ModelRepository
from server.runtime import RuntimeOptions
from tests.support.images import encode, expected_text, render_text, squash
from tests.support.server import PADDLE_VERSION, ONNX_MODELS

LINES = ["INVOICE NO: 2026-1187", "DATE 25/12/2018 14:32", "TOTAL DUE RM 1,234.56"]
# Words made of glyphs that are each other's rotation (p/d, u/n, b/q): upright, the classifier scores
# each of them 180 degrees with more than its 0.9 threshold (0.99-0.9995 for these renderings).
AMBIGUOUS = ["pump", "bud", "pupu", "pound"]


@pytest.fixture(scope="module", params=[PADDLE_VERSION, ONNX_MODELS["ppocrv6_small_cls"]])
def model(request: pytest.FixtureRequest, default_version_dir: Path) -> Iterator[LoadedModel]:
    root = default_version_dir.parent.parent if request.param == PADDLE_VERSION else request.getfixturevalue("onnx_repo")
    loaded = load_version(ModelRepository(root), request.param, RuntimeOptions(cpu_threads=2, concurrency=1))
    yield loaded
    loaded.close()


def _bgr(image: Image.Image) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(encode(image), np.uint8), cv2.IMREAD_COLOR)


def _stack(*images: Image.Image) -> Image.Image:
    """Pages one under the other, on white."""
    page = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    top = 0
    for image in images:
        page.paste(image, (0, top))
        top += image.height
    return page


def _text(result: ImageResult) -> str:
    return squash("".join(line.text for line in result.lines))


def _line_rule(pipeline: OcrPipeline) -> OcrPipeline:
    settings = pipeline.settings
    return replace(pipeline, settings=replace(settings, cls=replace(settings.cls, orientation="line")))


def test_an_upside_down_page_reads_with_every_line_turned(model: LoadedModel) -> None:
    result = model.pipeline.run(_bgr(render_text(LINES).transpose(Image.Transpose.ROTATE_180)))
    # The page is upside down, so its last line comes first.
    assert _text(result) == expected_text(LINES[::-1])
    assert [line.angle for line in result.lines] == [180] * len(LINES)


def test_upright_lines_the_classifier_calls_upside_down_stay_upright(model: LoadedModel) -> None:
    lines = [LINES[0], LINES[1], *AMBIGUOUS, LINES[2]]
    page = _bgr(render_text(lines))
    result = model.pipeline.run(page)
    assert _text(result) == expected_text(lines)
    assert all(line.angle == 0 for line in result.lines)
    # PaddleOCR's per-line rule turns some of them over and misreads them: what the page rule prevents.
    by_line = _line_rule(model.pipeline).run(page)
    assert any(line.angle == 180 for line in by_line.lines)
    assert _text(by_line) != _text(result)


def test_one_line_turned_over_on_an_upright_page_is_turned_back(model: LoadedModel) -> None:
    flipped = "CASH PAID 42.50"
    page = _stack(render_text(LINES), render_text([flipped]).transpose(Image.Transpose.ROTATE_180))
    result = model.pipeline.run(_bgr(page))
    assert _text(result) == expected_text([*LINES, flipped])
    assert [line.angle for line in result.lines] == [0] * len(LINES) + [180]


def test_one_upright_line_on_an_upside_down_page_is_left_upright(model: LoadedModel) -> None:
    upright = "CASH PAID 42.50"
    page = _stack(render_text(LINES).transpose(Image.Transpose.ROTATE_180), render_text([upright]))
    result = model.pipeline.run(_bgr(page))
    assert _text(result) == expected_text([*LINES[::-1], upright])
    assert [line.angle for line in result.lines] == [180] * len(LINES) + [0]
