"""Text-line angle classification: finds lines that are upside down and turns them the right way up."""

from __future__ import annotations

import cv2
import numpy as np

from server.pipeline.imageops import aspect_ratio, normalize, resize_to_height
from server.pipeline.types import ClsSettings
from server.runtime.base import InferenceSession

_HALF = (0.5, 0.5, 0.5)


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

    def classify(self, crops: list[np.ndarray], settings: ClsSettings) -> tuple[list[np.ndarray], list[int]]:
        """Return the crops (those read as 180 degrees with enough confidence rotated) and their angles."""
        crops = list(crops)
        angles = [0] * len(crops)
        order = np.argsort([aspect_ratio(c) for c in crops], kind="stable")
        for start in range(0, len(order), settings.batch_size):
            chosen = order[start : start + settings.batch_size]
            probs = self.session.run(self._batch([crops[i] for i in chosen], settings))
            for k, i in enumerate(chosen):
                label = int(np.argmax(probs[k]))
                if settings.labels[label] == "180" and probs[k, label] > settings.thresh:
                    crops[i] = cv2.rotate(crops[i], cv2.ROTATE_180)
                    angles[i] = 180
        return crops, angles
