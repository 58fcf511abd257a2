"""Text-line angle classification, and the orientation each line is read at.

The classifier's answer for one line is not trusted on its own (see `ClsSettings`): `decide` turns the
classifier's probabilities into a page orientation, the lines turned against it, and the doubtful lines
the pipeline reads both ways.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from server.pipeline.imageops import aspect_ratio, normalize, resize_to_height
from server.pipeline.types import ClsSettings
from server.runtime.base import InferenceSession

_HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Orientation:
    """What to read: `angles[i]` (0 or 180) is how crop i is turned before it is read; each crop in
    `doubtful` is also read the other way, and the more confident of its two readings is kept."""

    angles: list[int]
    doubtful: list[int]
    page_angle: int = 0


def decide(p0: np.ndarray, p180: np.ndarray, lengths: np.ndarray, settings: ClsSettings) -> Orientation:
    """Orientation of each line from the classifier's probabilities of 0 and 180 degrees per line.

    "page": the page is upside down when its lines' votes, each weighted by the classifier's confidence
    (p180 - p0) and by the line's length (`lengths`, its width over its height: a long line shows the
    classifier more glyphs than a short word, and short words of p/d/u/n fool it), sum above zero; a tie keeps it upright, how scans nearly always arrive. Lines the
    classifier agrees with the page on follow the page; one it puts the other way is doubtful (read
    both ways by the pipeline), unless `line_flip_thresh` is set and the classifier is at least that
    sure, when it is turned against the page directly.
    "line": each line is turned when p180 is the larger and above `thresh` (PaddleOCR's rule).
    """
    flips = p180 > p0
    if settings.orientation == "line":
        return Orientation(angles=[180 if f and p > settings.thresh else 0 for f, p in zip(flips, p180)],
                           doubtful=[])
    page_angle = 180 if float(np.sum((p180 - p0) * lengths)) > 0 else 0
    against = flips if page_angle == 0 else ~flips
    if settings.line_flip_thresh is None:
        sure = np.zeros(len(p0), dtype=bool)
    else:
        sure = np.maximum(p0, p180) >= settings.line_flip_thresh
    other = 180 - page_angle
    angles = [other if a and s else page_angle for a, s in zip(against, sure)]
    doubtful = [i for i, (a, s) in enumerate(zip(against, sure)) if a and not s]
    return Orientation(angles=angles, doubtful=doubtful, page_angle=page_angle)


class AngleClassifier:
    def __init__(self, session: InferenceSession) -> None:
        self.session = session

    @staticmethod
    def _batch(crops: list[np.ndarray], settings: ClsSettings) -> np.ndarray:
        _, height, width = settings.image_shape
        batch = np.zeros((len(crops), 3, height, width), dtype=np.float32)
        for k, crop in enumerate(crops):
            resized = resize_to_height(crop, height, width)
            normalize(resized, _HALF, _HALF, out=batch[k, :, :, : resized.shape[1]])
        return batch

    def probabilities(self, crops: list[np.ndarray], settings: ClsSettings) -> np.ndarray:
        """(N, classes) class probabilities per crop, in the order of `settings.labels`."""
        probs = np.zeros((len(crops), len(settings.labels)), dtype=np.float32)
        order = np.argsort([aspect_ratio(c) for c in crops], kind="stable")
        for start in range(0, len(order), settings.batch_size):
            chosen = order[start : start + settings.batch_size]
            probs[chosen] = self.session.run(self._batch([crops[i] for i in chosen], settings))
        return probs

    def orient(self, crops: list[np.ndarray], settings: ClsSettings) -> Orientation:
        probs = self.probabilities(crops, settings)
        labels = list(settings.labels)
        lengths = np.asarray([aspect_ratio(c) for c in crops], dtype=np.float32)
        return decide(probs[:, labels.index("0")], probs[:, labels.index("180")], lengths, settings)
