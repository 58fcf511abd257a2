"""PaddleOCR 3.x behind a pipe: run by the separate venv's Python (bench/README.md, "PaddleOCR 3.x").

PaddleOCR 3.x cannot share the project's venv (paddlex pulls a non-headless OpenCV that shadows
`opencv-python-headless`), so `bench.engines.PaddleOcr3` starts this script in its own venv and talks to
it over stdin/stdout. It imports nothing from this repository, since the project's packages are not
installed in that venv.

Protocol, one request at a time: the parent writes a JSON line `{"shape": [h, w, 3]}` followed by
h*w*3 bytes of a BGR uint8 image; the worker answers one JSON line
`{"lines": [[[[x, y] x4], text], ...], "cpu_s": float}` (or `{"error": "..."}`). `cpu_s` is the
worker's own CPU time for the call: the parent's process time does not include a child's. The first
line the worker writes is `{"ready": true}` once the pipeline is loaded. EOF on stdin ends it.

    python bench/paddleocr_worker.py --det DIR --rec DIR [--cls DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import BinaryIO

import numpy as np


def build_pipeline(args: argparse.Namespace):  # noqa: ANN201 - paddleocr is untyped
    """PaddleOCR 3.x's general OCR pipeline on local PP-OCRv4 mobile weights, offline.

    oneDNN is off: PaddleX's PIR + oneDNN path crashes on these legacy weights
    (`ConvertPirAttribute2RuntimeAttribute`). Document orientation and unwarping are off: our pipeline
    has neither, and their models would have to be downloaded.
    """
    os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
    from paddleocr import PaddleOCR

    options = dict(
        text_detection_model_name="PP-OCRv4_mobile_det",
        text_detection_model_dir=args.det,
        text_recognition_model_name="PP-OCRv4_mobile_rec",
        text_recognition_model_dir=args.rec,
        use_doc_orientation_classify=False,
        use_doc_unwarping=False,
        use_textline_orientation=bool(args.cls),
        device="cpu",
        enable_mkldnn=False,
        cpu_threads=args.threads,
    )
    if args.cls:
        options.update(textline_orientation_model_name=args.cls_name, textline_orientation_model_dir=args.cls)
    return PaddleOCR(**options)


def read_request(stream: BinaryIO) -> np.ndarray | None:
    header = stream.readline()
    if not header:
        return None
    shape = tuple(json.loads(header)["shape"])
    size = int(np.prod(shape))
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"expected {size} image bytes, got {len(data)}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def recognise(pipeline, image: np.ndarray) -> list:  # noqa: ANN001
    lines = []
    for result in pipeline.predict(image):
        for poly, text in zip(result["rec_polys"], result["rec_texts"]):
            lines.append([np.asarray(poly, dtype=float).reshape(4, 2).tolist(), text])
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--det", required=True)
    parser.add_argument("--rec", required=True)
    parser.add_argument("--cls", default=None, help="text-line orientation model dir (off when absent)")
    parser.add_argument("--cls-name", default="PP-LCNet_x0_25_textline_ori")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    # Paddle and PaddleX log to stdout; keep the protocol on a private copy of it.
    reply = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    pipeline = build_pipeline(args)
    reply.write(json.dumps({"ready": True}) + "\n")
    stdin = sys.stdin.buffer
    while (image := read_request(stdin)) is not None:
        start = time.process_time()
        try:
            answer = {"lines": recognise(pipeline, image)}
        except Exception as exc:  # reported to the parent, which raises it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answer["cpu_s"] = time.process_time() - start
        reply.write(json.dumps(answer, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
