"""The OCR pipeline of one model version: detect -> crop -> classify angle -> recognise.

An `OcrPipeline` is immutable once built and safe to call from many threads (its sessions pool their
predictors), which is what lets the lifecycle manager hand the same object to concurrent requests and
swap versions by swapping a reference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from server.pipeline.cls import AngleClassifier
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

        angles = [0] * len(crops)
        if crops and options.use_cls and self.classifier is not None:
            start = time.perf_counter()
            crops, angles = self.classifier.classify(crops, settings.cls)
            timings.cls = time.perf_counter() - start

        start = time.perf_counter()
        read = self.recognizer.recognize(crops, settings.rec) if crops else []
        timings.rec = time.perf_counter() - start

        lines = [
            TextLine(text=text, score=score, box=box, angle=angle)
            for (text, score), box, angle in zip(read, boxes, angles)
            if text and score >= settings.rec.drop_score
        ]
        return ImageResult(lines=lines, timings=timings, width=w, height=h)

    def close(self) -> None:
        sessions = [self.detector.session, self.recognizer.session]
        if self.classifier is not None:
            sessions.append(self.classifier.session)
        for session in sessions:
            session.close()
