"""An anchor that cannot share the project's venv, behind a pipe (bench/README.md, "Anchors").

rapidocr-openvino 1.4.4 imports `openvino.runtime`, which the OpenVINO release the server pins no
longer has, so `bench.engines.rapidocr_openvino` starts this script with `.venv-anchors`' Python (its
own OpenVINO 2024.0) and speaks bench/paddleocr_worker.py's protocol with it. The script imports
nothing from the project but that protocol's reader (beside it, on the script's path).

    .venv-anchors/bin/python bench/anchor_worker.py --engine rapidocr_openvino [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from paddleocr_worker import read_request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["rapidocr_openvino"], required=True)
    parser.add_argument("--threads", type=int, default=None, help="OpenVINO inference threads (default: its own)")
    args = parser.parse_args()

    reply = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    from rapidocr_openvino import RapidOCR

    engine = RapidOCR(**({"inference_num_threads": args.threads} if args.threads else {}))
    reply.write(json.dumps({"ready": True}) + "\n")
    stdin = sys.stdin.buffer
    while (image := read_request(stdin)) is not None:
        start = time.process_time()
        try:
            result, _ = engine(image)
            answer = {"lines": [[np.asarray(box, dtype=float).reshape(4, 2).tolist(), text]
                                for box, text, _score in result or []]}
        except Exception as exc:  # reported to the parent, which raises it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answer["cpu_s"] = time.process_time() - start
        reply.write(json.dumps(answer, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
