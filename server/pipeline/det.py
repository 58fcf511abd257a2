"""DB (differentiable binarisation) text detection: image -> network input, probability map -> boxes.

The network outputs, per pixel, the probability that it lies inside a shrunk text region. Boxes are the
minimum-area rectangles of the thresholded regions, scored by their mean probability and grown back
("unclipped") by a distance proportional to area / perimeter, which undoes the shrinking done in training.
"""

from __future__ import annotations

import cv2
import numpy as np
import pyclipper

from server.pipeline.imageops import normalize, round_up
from server.pipeline.types import DetSettings
from server.runtime.base import InferenceSession

MIN_BOX_SIDE = 3  # pixels on the probability map; smaller regions are noise
_DILATE_KERNEL = np.ones((2, 2), dtype=np.uint8)


def resize_for_det(image: np.ndarray, settings: DetSettings) -> np.ndarray:
    """Resize so both sides are multiples of 32 (the network's stride) within the side limits."""
    h, w = image.shape[:2]
    limit = settings.limit_side_len
    if settings.limit_type == "max":
        ratio = limit / max(h, w) if max(h, w) > limit else 1.0
    else:  # "min", as DetSettings validates
        ratio = limit / min(h, w) if min(h, w) < limit else 1.0
    if max(h, w) * ratio > settings.max_side_limit:
        ratio = settings.max_side_limit / max(h, w)
    new_h = max(int(round(int(h * ratio) / 32)) * 32, 32)
    new_w = max(int(round(int(w * ratio) / 32)) * 32, 32)
    if (new_h, new_w) == (h, w):
        return image
    return cv2.resize(image, (new_w, new_h))


def preprocess(image: np.ndarray, settings: DetSettings) -> tuple[np.ndarray, tuple[int, int]]:
    """BGR uint8 image -> ((1, 3, H', W') network input, (h, w) of the image inside it).

    The resized image is padded at the bottom and right up to multiples of `settings.pad_multiple`
    (the default, 32, is the stride the resize already keeps: no padding), which lets a version trade
    detection time for fewer distinct input shapes (see `DetSettings`). The padding is zero after
    normalisation; the part of the map it produces is cut off before post-processing.
    """
    resized = resize_for_det(image, settings)
    h, w = resized.shape[:2]
    step = settings.pad_multiple
    batch = np.zeros((1, 3, round_up(h, step), round_up(w, step)), dtype=np.float32)
    normalize(resized, settings.mean, settings.std, out=batch[0, :, :h, :w])
    return batch, (h, w)


def _min_area_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """The minimum-area rectangle around `points`, ordered TL, TR, BR, BL, and its short side."""
    rect = cv2.minAreaRect(points)
    corners = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    left = sorted(corners[:2], key=lambda p: p[1])
    right = sorted(corners[2:], key=lambda p: p[1])
    box = np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)
    return box, min(rect[1])


def _mean_score(prob: np.ndarray, box: np.ndarray) -> float:
    """Mean probability inside the box (over its bounding window, masked to the polygon)."""
    h, w = prob.shape
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    shifted = (box - np.array([xmin, ymin], dtype=np.float32)).astype(np.int32)
    cv2.fillPoly(mask, shifted[np.newaxis], 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def _unclip(box: np.ndarray, ratio: float) -> np.ndarray | None:
    """Grow the polygon outwards by area * ratio / perimeter; None if that does not give one polygon."""
    area = abs(cv2.contourArea(box))
    perimeter = cv2.arcLength(box, closed=True)
    if perimeter == 0:
        return None
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    expanded = offset.Execute(area * ratio / perimeter)
    if len(expanded) != 1:
        return None
    return np.asarray(expanded[0], dtype=np.float32)


def boxes_from_map(prob: np.ndarray, src_h: int, src_w: int, settings: DetSettings) -> list[np.ndarray]:
    """Probability map (H', W') -> boxes (4, 2) in source-image coordinates."""
    h, w = prob.shape
    bitmap = (prob > settings.thresh).astype(np.uint8)
    if settings.use_dilation:
        bitmap = cv2.dilate(bitmap, _DILATE_KERNEL)
    contours, _ = cv2.findContours(bitmap * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    map_size = np.array([w, h], dtype=np.float32)
    src_size = np.array([src_w, src_h], dtype=np.float32)
    boxes = []
    for contour in contours[: settings.max_candidates]:
        box, short_side = _min_area_box(contour)
        if short_side < MIN_BOX_SIDE:
            continue
        if _mean_score(prob, box) < settings.box_thresh:
            continue
        expanded = _unclip(box, settings.unclip_ratio)
        if expanded is None:
            continue
        box, short_side = _min_area_box(expanded)
        if short_side < MIN_BOX_SIDE + 2:
            continue
        boxes.append(np.clip(np.round(box / map_size * src_size), 0, src_size))
    return boxes


def _order_clockwise(box: np.ndarray) -> np.ndarray:
    """TL, TR, BR, BL by position (left pair and right pair each sorted by y)."""
    by_x = box[np.argsort(box[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def clean_boxes(boxes: list[np.ndarray], src_h: int, src_w: int) -> list[np.ndarray]:
    """Order corners, clip into the image and drop slivers of 3 pixels or less."""
    kept = []
    for box in boxes:
        box = _order_clockwise(box)
        box[:, 0] = np.clip(box[:, 0], 0, src_w - 1)
        box[:, 1] = np.clip(box[:, 1], 0, src_h - 1)
        width = int(np.linalg.norm(box[0] - box[1]))
        height = int(np.linalg.norm(box[0] - box[3]))
        if width <= 3 or height <= 3:
            continue
        kept.append(box)
    return kept


def reading_order(boxes: list[np.ndarray], same_line_px: float = 10.0) -> list[np.ndarray]:
    """Top-to-bottom, then left-to-right for boxes whose tops lie within `same_line_px` of each other."""
    ordered = sorted(boxes, key=lambda b: (b[0][1], b[0][0]))
    for i in range(len(ordered) - 1):
        for j in range(i, -1, -1):
            upper, lower = ordered[j], ordered[j + 1]
            if abs(lower[0][1] - upper[0][1]) < same_line_px and lower[0][0] < upper[0][0]:
                ordered[j], ordered[j + 1] = lower, upper
            else:
                break
    return ordered


def postprocess(prob_map: np.ndarray, src_h: int, src_w: int, settings: DetSettings) -> list[np.ndarray]:
    """Network output (1, 1, H', W') -> cleaned boxes in reading order."""
    boxes = boxes_from_map(prob_map[0, 0], src_h, src_w, settings)
    return reading_order(clean_boxes(boxes, src_h, src_w))


class TextDetector:
    def __init__(self, session: InferenceSession) -> None:
        self.session = session

    def detect(self, image: np.ndarray, settings: DetSettings) -> list[np.ndarray]:
        """Text-line quadrilaterals of `image`, in reading order, in its own coordinates."""
        h, w = image.shape[:2]
        batch, (valid_h, valid_w) = preprocess(image, settings)
        prob_map = self.session.run(batch)
        return postprocess(prob_map[:, :, :valid_h, :valid_w], h, w, settings)
