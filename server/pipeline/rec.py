"""CTC text recognition: line crops -> text and confidence, decoded greedily against the dictionary."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from server.pipeline.imageops import aspect_ratio, normalize, resize_to_height, round_up
from server.pipeline.types import RecSettings
from server.runtime.base import InferenceSession

_HALF = (0.5, 0.5, 0.5)
BLANK = 0  # CTC's blank symbol is class 0; the dictionary's characters follow it
Reading = tuple[str, float]  # a line's text and its mean character confidence


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


def ctc_greedy_decode(probs: np.ndarray, charset: list[str]) -> list[Reading]:
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


def padded_width(width: int, settings: RecSettings) -> int:
    """The input width a crop `width` pixels wide (at model height) is padded to.

    The narrowest bucket that holds it; past the widest bucket, the next multiple of the model's nominal
    width. Few distinct widths keep the runtime's per-shape cache (oneDNN primitives) hitting: a shape
    it has not seen costs about one extra inference.
    """
    for bucket in settings.width_buckets:
        if width <= bucket:
            return bucket
    return round_up(width, settings.image_shape[2])


def plan_batches(ratios: list[float], settings: RecSettings) -> list[tuple[int, list[int]]]:
    """Group crops (given by their width / height ratios) into batches of (input width, indices).

    With `width_buckets`, each crop is padded only up to its bucket; a bucket's crops go in full batches
    of `batch_size` (fewer for wide buckets, within `max_batch_width` pixels) and what is left over
    goes one crop at a time, so that a bucket only ever produces two input shapes (the runtime builds
    and caches kernels per shape: a new shape costs about one extra inference). With no buckets
    (PaddleOCR's and RapidOCR's batching, kept for parity checks), crops are batched in order of ratio
    and padded to the widest of their batch, and at least to the nominal width.
    """
    _, height, nominal = settings.image_shape
    order = sorted(range(len(ratios)), key=ratios.__getitem__)
    size = settings.batch_size
    if not settings.width_buckets:
        chunks = [order[i : i + size] for i in range(0, len(order), size)]
        return [(max(nominal, int(height * max(ratios[i] for i in chunk))), chunk) for chunk in chunks]
    groups: dict[int, list[int]] = {}
    for i in order:
        groups.setdefault(padded_width(math.ceil(height * ratios[i]), settings), []).append(i)
    batches: list[tuple[int, list[int]]] = []
    for width, members in groups.items():
        per_batch = max(1, min(size, settings.max_batch_width // width))
        full = len(members) - len(members) % per_batch
        batches += [(width, members[i : i + per_batch]) for i in range(0, full, per_batch)]
        batches += [(width, [i]) for i in members[full:]]
    return batches


class TextRecognizer:
    def __init__(self, session: InferenceSession, charset: list[str]) -> None:
        self.session = session
        self.charset = charset

    @staticmethod
    def _batch(crops: list[np.ndarray], width: int, height: int) -> np.ndarray:
        """Resize each crop to `height` (at most `width` wide) and normalise it into a zero-padded batch."""
        batch = np.zeros((len(crops), 3, height, width), dtype=np.float32)
        for k, crop in enumerate(crops):
            resized = resize_to_height(crop, height, width)
            normalize(resized, _HALF, _HALF, out=batch[k, :, :, : resized.shape[1]])
        return batch

    def read_batch(self, crops: list[np.ndarray], width: int, settings: RecSettings) -> list[Reading]:
        """Read one batch of crops padded to `width` (one network run)."""
        probs = self.session.run(self._batch(crops, width, settings.image_shape[1]))
        return ctc_greedy_decode(probs, self.charset)

    def recognize(self, crops: list[np.ndarray], settings: RecSettings) -> list[Reading]:
        """Read each crop, in batches of similar width (see `plan_batches`)."""
        results: list[Reading] = [("", 0.0)] * len(crops)
        for width, chosen in plan_batches([aspect_ratio(crop) for crop in crops], settings):
            for i, decoded in zip(chosen, self.read_batch([crops[i] for i in chosen], width, settings)):
                results[i] = decoded
        return results
