"""Image operations shared by the pipeline stages: normalisation, line cropping, height resizing."""

from __future__ import annotations

import math

import cv2
import numpy as np


def round_up(value: int, step: int) -> int:
    """The smallest multiple of `step` that is at least `value` (network inputs come in such sizes)."""
    return -(-value // step) * step


def normalize(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...],
              out: np.ndarray | None = None) -> np.ndarray:
    """uint8 HWC -> float32 CHW, `(x/255 - mean) / std`, one fused multiply-subtract per channel.

    `out` (3, H, W) may be a view into a batch tensor: the result is written there, with no
    intermediate copy.
    """
    scale = np.asarray([1.0 / (255.0 * s) for s in std], dtype=np.float32)
    shift = np.asarray([m / s for m, s in zip(mean, std)], dtype=np.float32)
    chw = np.empty((3, *image.shape[:2]), dtype=np.float32) if out is None else out
    for c in range(3):
        np.multiply(image[:, :, c], scale[c], out=chw[c], casting="unsafe")
        chw[c] -= shift[c]
    return chw


def crop_line(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Perspective-rectify the quadrilateral `box`; tall results are turned to lie horizontally."""
    width = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
    height = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
    width, height = max(width, 1), max(height, 1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(box.astype(np.float32), target)
    crop = cv2.warpPerspective(
        image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if height / width >= 1.5:
        crop = np.rot90(crop)
    return crop


def aspect_ratio(image: np.ndarray) -> float:
    h, w = image.shape[:2]
    return w / max(h, 1)


def resize_to_height(image: np.ndarray, height: int, max_width: int) -> np.ndarray:
    """Scale to `height` keeping the aspect ratio, capped at `max_width` (shared by cls and rec)."""
    h, w = image.shape[:2]
    width = min(max_width, int(math.ceil(height * w / max(h, 1))))
    return cv2.resize(image, (max(width, 1), height))
