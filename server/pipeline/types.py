"""Plain data that flows through the OCR pipeline: stage settings, per-request options and results.

Settings come from a model version's manifest (they belong to the model family, not to the server);
options come from a request and may override a few of them within validated bounds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class DetSettings:
    """DB text detection: how the image is resized for the network and how the map becomes boxes.

    The defaults are RapidOCR 1.4's for PP-OCRv4 mobile (mean/std 0.5, box threshold 0.5, unclip 1.6,
    dilation), which read the receipts better than PaddleOCR 3.x's, with PaddleOCR 3.x's resize (the
    short side only brought up to 64 px, never upscaled to 736). `max_side_limit` is also a worker's
    memory bound (Paddle keeps the activations of the largest input a predictor has run), and
    `pad_multiple` trades detection time for fewer distinct input shapes. The measurements behind each
    choice, and the trials not kept, are in bench/RESULTS.md ("Detection settings"). A version's
    manifest stores its settings at install time: versions installed before a change of these defaults
    keep the old ones until reinstalled.
    """

    limit_side_len: int = 64
    limit_type: str = "min"  # "min": upscale until the short side reaches the limit; "max": downscale
    max_side_limit: int = 4000
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    thresh: float = 0.3
    box_thresh: float = 0.5
    unclip_ratio: float = 1.6
    max_candidates: int = 1000
    use_dilation: bool = True
    # The network input is padded to multiples of this (a multiple of 32, the network's stride).
    pad_multiple: int = 32

    def __post_init__(self) -> None:
        if self.limit_type not in ("min", "max"):
            raise ValueError(f"limit_type must be 'min' or 'max', got {self.limit_type!r}")
        if self.pad_multiple <= 0 or self.pad_multiple % 32:
            raise ValueError(f"pad_multiple must be a positive multiple of 32, got {self.pad_multiple}")
        if self.max_side_limit < 32:
            raise ValueError(f"max_side_limit must be at least 32, got {self.max_side_limit}")


ORIENTATIONS = ("page", "line")


@dataclass(frozen=True)
class ClsSettings:
    """Text-line angle classifier (0 or 180 degrees), and how its answers turn lines over.

    `orientation="page"` (see `server.pipeline.cls.decide`): the page is turned by its lines' vote,
    weighted by confidence and length, and a line the classifier puts the other way is read both ways up, the
    recogniser's reading the other way kept only when it is confident and clearly more confident
    (`reread_min_score`, `reread_margin`). The mobile v2 classifier's
    confidence is no safe ground for turning one line on its own: it turns upright lines over above 0.9
    on receipts, and glyphs that are each other's rotation (p/d, u/n, b/q) fool it outright (an upright
    rendered "pump" scores 0.9995 for 180 degrees; bench/RESULTS.md, "Orientation"). So by default no
    line is turned against the page without the recogniser's check, which costs one more recognition
    of those lines only; `line_flip_thresh` (opt-in) turns the lines the classifier is at least that
    sure of without it.
    `orientation="line"`: PaddleOCR's and RapidOCR's rule, each line turned by itself when the classifier
    says 180 with more than `thresh` (kept for parity checks with them).
    """

    image_shape: tuple[int, int, int] = (3, 48, 192)
    labels: tuple[str, ...] = ("0", "180")
    thresh: float = 0.9
    batch_size: int = 6
    orientation: str = "page"
    line_flip_thresh: float | None = None
    # A line read both ways is turned against the page only when its other reading is at least this
    # much more confident (mean character probability): the page's vote is the prior, and two plausible
    # readings differ by a few thousandths ("9.00" / "006" on a receipt, "pupu" / "ndnd" rendered),
    # where a wrong way up reads tenths lower. A round margin between the two, not a fitted value.
    reread_margin: float = 0.05
    # ... and only when that reading is itself confident: the other way up, junk marks and single
    # glyphs ("6" / "9", "S") read at 0.5-0.9 either way, and a reading under the drop score the
    # page's way must not come back as one over it the other way. 0.9 is the confidence PaddleOCR
    # asks of its classifier; a round principle, not a value fitted to a dataset.
    reread_min_score: float = 0.9

    def __post_init__(self) -> None:
        if self.orientation not in ORIENTATIONS:
            raise ValueError(f"orientation must be one of {', '.join(ORIENTATIONS)}, got {self.orientation!r}")
        if not {"0", "180"} <= set(self.labels):
            raise ValueError(f"the angle classifier's labels must include '0' and '180', got {self.labels!r}")
        if self.line_flip_thresh is not None and not 0.5 < self.line_flip_thresh <= 1.0:
            raise ValueError(f"line_flip_thresh must be in (0.5, 1] or null, got {self.line_flip_thresh}")
        if not 0.0 <= self.reread_margin < 1.0:
            raise ValueError(f"reread_margin must be in [0, 1), got {self.reread_margin}")
        if not 0.0 <= self.reread_min_score <= 1.0:
            raise ValueError(f"reread_min_score must be in [0, 1], got {self.reread_min_score}")


@dataclass(frozen=True)
class RecSettings:
    """CTC text recognition.

    Crops are padded to a few fixed `width_buckets` rather than to the widest crop of their batch, so a
    per-shape kernel cache (oneDNN) keeps hitting (measured: bench/RESULTS.md, "Recognition batching by
    width bucket").
    """

    image_shape: tuple[int, int, int] = (3, 48, 320)
    batch_size: int = 6
    # Input widths crops are padded to (see server.pipeline.rec.plan_batches); () pads each batch to
    # its widest crop and at least to the nominal width, as PaddleOCR and RapidOCR do.
    width_buckets: tuple[int, ...] = (96, 160, 224, 320, 480, 640, 960, 1280)
    # With buckets, a batch holds at most this many pixels of width in all (but always one crop): fewer
    # crops per batch as the bucket widens (6 up to 320 px, 4 at 480, 3 at 640, 2 at 960, 1 at 1280).
    # Paddle keeps the activation memory of the largest batch it has run (+0.87 GB for six 960 px
    # crops), so this bounds a worker's memory; each crop's input is the same whatever its batch.
    max_batch_width: int = 1920
    use_space_char: bool = True
    # Lines whose mean character confidence is below this are dropped from the result.
    drop_score: float = 0.5


@dataclass(frozen=True)
class PipelineSettings:
    det: DetSettings = field(default_factory=DetSettings)
    cls: ClsSettings = field(default_factory=ClsSettings)
    rec: RecSettings = field(default_factory=RecSettings)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Mapping[str, Any]] | None) -> "PipelineSettings":
        """Build from a manifest's `settings` section, keeping defaults for what it leaves out.

        Unknown keys are an error: a misspelt threshold silently ignored would serve the wrong model.
        """
        data = data or {}
        unknown = set(data) - {"det", "cls", "rec"}
        if unknown:
            raise ValueError(f"unknown settings sections: {sorted(unknown)}")
        built = {}
        for name, kind in (("det", DetSettings), ("cls", ClsSettings), ("rec", RecSettings)):
            section = dict(data.get(name) or {})
            allowed = set(kind.__dataclass_fields__)
            bad = set(section) - allowed
            if bad:
                raise ValueError(f"unknown {name} settings: {sorted(bad)}")
            for key, value in section.items():
                if isinstance(value, list):
                    section[key] = tuple(value)
            built[name] = kind(**section)
        return cls(**built)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RequestOptions:
    """What one request may tune. `None` means "the model's setting"."""

    use_cls: bool = True
    det_limit_side_len: int | None = None
    det_limit_type: str | None = None
    det_thresh: float | None = None
    det_box_thresh: float | None = None
    det_unclip_ratio: float | None = None
    drop_score: float | None = None

    def apply(self, settings: PipelineSettings) -> PipelineSettings:
        """The model's settings with this request's overrides laid on top."""
        det_changes = {
            key: value
            for key, value in (
                ("limit_side_len", self.det_limit_side_len),
                ("limit_type", self.det_limit_type),
                ("thresh", self.det_thresh),
                ("box_thresh", self.det_box_thresh),
                ("unclip_ratio", self.det_unclip_ratio),
            )
            if value is not None
        }
        det = replace(settings.det, **det_changes) if det_changes else settings.det
        rec = replace(settings.rec, drop_score=self.drop_score) if self.drop_score is not None else settings.rec
        if det is settings.det and rec is settings.rec:
            return settings
        return replace(settings, det=det, rec=rec)


@dataclass
class TextLine:
    text: str
    score: float
    box: np.ndarray  # (4, 2) float32, clockwise from top-left, original image coordinates
    angle: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "score": round(float(self.score), 4),
            "box": [[int(round(float(x))), int(round(float(y)))] for x, y in self.box],
            "angle": self.angle,
        }


@dataclass
class StageTimings:
    """Seconds spent in each stage of one image; `cls` is 0 when the classifier is skipped."""

    det: float = 0.0
    cls: float = 0.0
    rec: float = 0.0


@dataclass
class ImageResult:
    lines: list[TextLine]
    timings: StageTimings
    width: int
    height: int

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)
