"""The OCR pipeline of one model version: detect -> crop -> classify angle -> recognise.

Doubtful lines (server.pipeline.cls.decide) are recognised both ways up in the same batches as the rest.
With a `batcher` (OCR_REC_BATCH_WAIT_MS), the crops of concurrent requests share recognition batches
(server.pipeline.batching); without one, each request's crops are batched on their own.

An `OcrPipeline` is immutable once built and safe to call from many threads (its sessions pool their
predictors), which is what lets the lifecycle manager hand the same object to concurrent requests and
swap versions by swapping a reference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from server.pipeline.batching import RecognitionBatcher
from server.pipeline.cls import AngleClassifier, Orientation
from server.pipeline.det import TextDetector
from server.pipeline.imageops import crop_line
from server.pipeline.rec import TextRecognizer
from server.pipeline.types import ImageResult, PipelineSettings, RequestOptions, StageTimings, TextLine


@dataclass(frozen=True)
class OcrPipeline:
    detector: TextDetector
    classifier: AngleClassifier | None  # a version may ship without an angle classifier
    recognizer: TextRecognizer
    settings: PipelineSettings
    batcher: RecognitionBatcher | None = None  # cross-request recognition batches; None: per request

    def run(self, image: np.ndarray, options: RequestOptions | None = None) -> ImageResult:
        """OCR one BGR uint8 image (H, W, 3)."""
        options = options or RequestOptions()
        settings = options.apply(self.settings)
        timings = StageTimings()
        h, w = image.shape[:2]

        start = time.perf_counter()
        boxes = self.detector.detect(image, settings.det)
        crops = [crop_line(image, box) for box in boxes]
        timings.det = time.perf_counter() - start

        orientation = Orientation(angles=[0] * len(crops), doubtful=[])
        if crops and options.use_cls and self.classifier is not None:
            start = time.perf_counter()
            orientation = self.classifier.orient(crops, settings.cls)
            timings.cls = time.perf_counter() - start

        start = time.perf_counter()
        read, angles = self._read(crops, orientation, settings) if crops else ([], [])
        timings.rec = time.perf_counter() - start

        lines = [
            TextLine(text=text, score=score, box=box, angle=angle)
            for (text, score), box, angle in zip(read, boxes, angles)
            if text and score >= settings.rec.drop_score
        ]
        return ImageResult(lines=lines, timings=timings, width=w, height=h)

    def _read(self, crops: list[np.ndarray], orientation: Orientation,
              settings: PipelineSettings) -> tuple[list[tuple[str, float]], list[int]]:
        """Read each crop at its angle, and each doubtful one the other way too (in the same batches);
        the other reading replaces the first when it is confident (`reread_min_score`) and
        `reread_margin` more confident than the first."""
        turned = [cv2.rotate(c, cv2.ROTATE_180) if a == 180 else c for c, a in zip(crops, orientation.angles)]
        extra = [cv2.rotate(turned[i], cv2.ROTATE_180) for i in orientation.doubtful]
        read = (self.batcher or self.recognizer).recognize(turned + extra, settings.rec)
        angles = list(orientation.angles)
        for k, i in enumerate(orientation.doubtful):
            other = read[len(crops) + k]
            cls = settings.cls
            if other[0] and other[1] >= max(cls.reread_min_score, read[i][1] + cls.reread_margin):
                read[i], angles[i] = other, 180 - angles[i]
        return read[: len(crops)], angles

    def close(self) -> None:
        """Close the batcher first: once it returns, none of its runners can run a session again."""
        if self.batcher is not None:
            self.batcher.close()
        sessions = [self.detector.session, self.recognizer.session]
        if self.classifier is not None:
            sessions.append(self.classifier.session)
        for session in sessions:
            session.close()
