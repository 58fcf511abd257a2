"""PP-OCR's pipeline (DB detection, angle classification, CTC recognition) on any `InferenceSession`."""

from server.pipeline.pipeline import OcrPipeline
from server.pipeline.types import ImageResult, PipelineSettings, RequestOptions, TextLine

__all__ = ["ImageResult", "OcrPipeline", "PipelineSettings", "RequestOptions", "TextLine"]
