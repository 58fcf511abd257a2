"""SROIE-layout receipts and how an OCR result is scored against them.

A dataset directory holds `img/NNN.jpg`, `box/NNN.csv` (one line per row: eight quad coordinates, then the
text, which may contain commas) and `key/NNN.json` (company, date, address, total). Every benchmark of this
project scores the same way, so that numbers from bench/pipeline.py, bench/parity.py and the issue notes
can be compared:

- CER: character error rate of the whole receipt: the predicted lines and the ground-truth lines, each
  put in the same geometric reading order (`reading_order`: rows top to bottom, left to right within a
  row) and joined, compared by `server.quality.textmetrics` (case-folded, whitespace removed: PP-OCR drops
  spaces between Latin words). Ordering both sides by one rule keeps the measure about reading, not
  about which of two equally valid orders an engine or an annotator chose for a row. Reported as total edits / total reference
  characters over the dataset (a micro average: long receipts weigh more, as they do for a reader).
- Line recall: a ground-truth line is found when one predicted line covers at least half of its box and
  contains its text (normalised). "Contains" rather than "equals" because the ground truth splits a row
  where a wide gap separates two columns, while the detector may keep them as one line.
- Key-field hit rate: company, date and total each count as found when the normalised field value occurs
  in the receipt's normalised full text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from server.quality.textmetrics import edit_distance, normalize_text

KEY_FIELDS = ("company", "date", "total")
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sroie-dev"


@dataclass(frozen=True)
class GroundTruthLine:
    box: np.ndarray  # (4, 2) float32
    text: str


@dataclass(frozen=True)
class Receipt:
    id: str
    image_path: Path
    lines: tuple[GroundTruthLine, ...]
    keys: dict[str, str]

    def load_image(self) -> np.ndarray:
        image = cv2.imread(str(self.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot decode {self.image_path}")
        return image

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


@dataclass(frozen=True)
class PredictedLine:
    """What every engine's output is reduced to: a quadrilateral and its text."""

    box: np.ndarray  # (4, 2)
    text: str


def _parse_box_row(row: str) -> GroundTruthLine | None:
    parts = row.rstrip("\r\n").split(",", 8)
    if len(parts) < 9:
        return None
    coords = np.asarray([float(p) for p in parts[:8]], dtype=np.float32).reshape(4, 2)
    return GroundTruthLine(box=coords, text=parts[8])


def load_dataset(directory: Path, limit: int | None = None) -> list[Receipt]:
    """Receipts of `directory` sorted by id; `limit` keeps the first ones."""
    directory = Path(directory)
    images = sorted((directory / "img").glob("*.jpg"))
    if not images:
        raise FileNotFoundError(f"{directory}/img holds no .jpg receipts (is this an SROIE-layout directory?)")
    receipts = []
    for image_path in images[:limit]:
        rid = image_path.stem
        rows = (directory / "box" / f"{rid}.csv").read_text(encoding="utf-8", errors="replace").splitlines()
        lines = tuple(line for line in map(_parse_box_row, rows) if line is not None)
        key_path = directory / "key" / f"{rid}.json"
        keys = json.loads(key_path.read_text(encoding="utf-8")) if key_path.is_file() else {}
        receipts.append(Receipt(rid, image_path, lines, keys))
    return receipts


def _bbox(box: np.ndarray) -> tuple[float, float, float, float]:
    return float(box[:, 0].min()), float(box[:, 1].min()), float(box[:, 0].max()), float(box[:, 1].max())


def _covered_fraction(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Share of the ground-truth box's bounding rectangle inside the predicted one's."""
    tx0, ty0, tx1, ty1 = _bbox(truth)
    px0, py0, px1, py1 = _bbox(predicted)
    inter = max(0.0, min(tx1, px1) - max(tx0, px0)) * max(0.0, min(ty1, py1) - max(ty0, py0))
    area = max(1e-6, (tx1 - tx0) * (ty1 - ty0))
    return inter / area


@dataclass(frozen=True)
class ReceiptScore:
    edits: int
    ref_chars: int
    lines_found: int
    lines_total: int
    keys_found: int
    keys_total: int

    @property
    def cer(self) -> float:
        return self.edits / max(1, self.ref_chars)


def reading_order(boxes: list[np.ndarray]) -> list[int]:
    """Indices of `boxes` in reading order: rows top to bottom, each row left to right.

    A box joins the current row when its vertical centre lies within half the median line height of
    the row's first box; rows are then read left to right by their left edges.
    """
    if not boxes:
        return []
    heights = [float(b[:, 1].max() - b[:, 1].min()) for b in boxes]
    tolerance = max(1.0, float(np.median(heights)) / 2)
    centres = [float(b[:, 1].mean()) for b in boxes]
    order = sorted(range(len(boxes)), key=centres.__getitem__)
    rows: list[list[int]] = []
    for i in order:
        if rows and abs(centres[i] - centres[rows[-1][0]]) <= tolerance:
            rows[-1].append(i)
        else:
            rows.append([i])
    return [i for row in rows for i in sorted(row, key=lambda k: float(boxes[k][:, 0].min()))]


def score(predicted: list[PredictedLine], receipt: Receipt) -> ReceiptScore:
    hyp_text = "\n".join(predicted[i].text for i in reading_order([line.box for line in predicted]))
    truth = receipt.lines
    ref_text = "\n".join(truth[i].text for i in reading_order([line.box for line in truth]))
    norm_pred = [normalize_text(line.text) for line in predicted]
    found = 0
    for truth in receipt.lines:
        wanted = normalize_text(truth.text)
        if not wanted:
            continue
        found += any(
            wanted in text and _covered_fraction(truth.box, line.box) >= 0.5
            for line, text in zip(predicted, norm_pred)
        )
    full = normalize_text(hyp_text)
    wanted_keys = [normalize_text(receipt.keys[k]) for k in KEY_FIELDS if receipt.keys.get(k)]
    return ReceiptScore(
        edits=edit_distance(hyp_text, ref_text),
        ref_chars=len(normalize_text(ref_text)),
        lines_found=found,
        lines_total=sum(1 for t in receipt.lines if normalize_text(t.text)),
        keys_found=sum(1 for k in wanted_keys if k in full),
        keys_total=len(wanted_keys),
    )


@dataclass(frozen=True)
class Accuracy:
    cer: float
    line_recall: float
    key_hit_rate: float

    @classmethod
    def total(cls, scores: list[ReceiptScore]) -> "Accuracy":
        return cls(
            cer=sum(s.edits for s in scores) / max(1, sum(s.ref_chars for s in scores)),
            line_recall=sum(s.lines_found for s in scores) / max(1, sum(s.lines_total for s in scores)),
            key_hit_rate=sum(s.keys_found for s in scores) / max(1, sum(s.keys_total for s in scores)),
        )
