"""CTC text recognition: line crops -> text and confidence, decoded greedily against the dictionary."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from server.pipeline.imageops import aspect_ratio, normalize, resize_to_height
from server.pipeline.types import RecSettings
from server.runtime.base import InferenceSession

_HALF = (0.5, 0.5, 0.5)
BLANK = 0  # CTC's blank symbol is class 0; the dictionary's characters follow it


def load_charset(path: Path, use_space_char: bool) -> list[str]:
    """Class index -> character: blank, one dictionary line per class, then (optionally) a space.

    Lines are stripped of their line ending only: a dictionary may map a class to a space.
    """
    chars = [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8").splitlines()]
    if chars and chars[-1] == "":
        chars.pop()
    if not chars:
        raise ValueError(f"{path} is an empty character dictionary")
    return ["<blank>", *chars, *([" "] if use_space_char else [])]


def ctc_greedy_decode(probs: np.ndarray, charset: list[str]) -> list[tuple[str, float]]:
    """(N, T, C) class probabilities -> (text, mean probability of the kept characters) per row.

    Greedy CTC: take the best class per time step, collapse repeats, drop blanks.
    """
    best = probs.argmax(axis=2)
    best_prob = probs.max(axis=2)
    decoded = []
    for row, row_prob in zip(best, best_prob):
        keep = row != BLANK
        keep[1:] &= row[1:] != row[:-1]
        text = "".join(charset[i] for i in row[keep])
        score = float(row_prob[keep].mean()) if keep.any() else 0.0
        decoded.append((text, score))
    return decoded


class TextRecognizer:
    def __init__(self, session: InferenceSession, charset: list[str]) -> None:
        self.session = session
        self.charset = charset

    @staticmethod
    def _batch(crops: list[np.ndarray], settings: RecSettings) -> np.ndarray:
        """Resize every crop to the model height and pad to the widest of the batch (at least the
        model's nominal width), so one batch is one tensor."""
        _, height, nominal_width = settings.image_shape
        ratio = max(nominal_width / height, max(aspect_ratio(c) for c in crops))
        width = int(height * ratio)
        batch = np.zeros((len(crops), 3, height, width), dtype=np.float32)
        for k, crop in enumerate(crops):
            resized = resize_to_height(crop, height, width)
            batch[k, :, :, : resized.shape[1]] = normalize(resized, _HALF, _HALF)
        return batch

    def recognize(self, crops: list[np.ndarray], settings: RecSettings) -> list[tuple[str, float]]:
        """Read each crop. Crops are batched in order of aspect ratio so that padding stays small."""
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        order = np.argsort([aspect_ratio(c) for c in crops], kind="stable")
        for start in range(0, len(order), settings.batch_size):
            chosen = order[start : start + settings.batch_size]
            probs = self.session.run(self._batch([crops[i] for i in chosen], settings))
            for i, decoded in zip(chosen, ctc_greedy_decode(probs, self.charset)):
                results[i] = decoded
        return results
