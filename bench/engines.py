"""The OCR engines a benchmark compares: this project's pipeline and the installed anchors.

Every engine takes the same decoded BGR image (decoding is not timed: the anchors decode differently and
the server's decode is measured by bench/server.py) and returns `PredictedLine`s in its reading order.
Anchors are optional (`make bench-setup` installs them); `available_anchors` lists those that import.

Settings presets make "same weights, same settings" comparisons possible (bench/parity.py):
`rapidocr` is RapidOCR 1.4's config.yaml (recognition batching included), `rapidocr-det` only its
detection settings and text score; `paddleocr` is PaddleOCR 3.x's PP-OCRv4 mobile defaults (text score
0), `paddleocr-det` only its detection settings.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from bench.scoring import PredictedLine
from server.pipeline.types import DetSettings, PipelineSettings, RequestOptions

# RapidOCR 1.4.x config.yaml (Det section and Global.text_score).
RAPIDOCR_DET = DetSettings(
    limit_side_len=736, limit_type="min", max_side_limit=4000, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    thresh=0.3, box_thresh=0.5, unclip_ratio=1.6, max_candidates=1000, use_dilation=True,
)
# PaddleOCR 3.x, PP-OCRv4_mobile_det's inference.yml and TextDetection defaults.
PADDLEOCR_DET = DetSettings(
    limit_side_len=64, limit_type="min", max_side_limit=4000, mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225), thresh=0.3, box_thresh=0.6, unclip_ratio=1.5, max_candidates=1000,
    use_dilation=False,
)
PRESETS: dict[str, Callable[[PipelineSettings], PipelineSettings]] = {
    "default": lambda s: s,
    "rapidocr": lambda s: replace(s, det=RAPIDOCR_DET, cls=replace(s.cls, orientation="line"),
                                  rec=replace(s.rec, drop_score=0.5, width_buckets=())),
    # PaddleOCR's and RapidOCR's per-line orientation rule (each line turned by itself above 0.9)
    # in place of the page vote: the before of bench/orientation.py.
    "line": lambda s: replace(s, cls=replace(s.cls, orientation="line")),
    # The page vote with lines the classifier is at least 0.999 sure of turned against the page without
    # the recogniser's check (a trial of bench/orientation.py).
    "sure999": lambda s: replace(s, cls=replace(s.cls, line_flip_thresh=0.999)),
    # No angle classifier at all (the request option use_cls=false).
    "nocls": lambda s: s,
    # RapidOCR's detection settings and text score with this project's recognition batching: compares
    # detection settings alone (the default-settings measurement of issue 2).
    "rapidocr-det": lambda s: replace(s, det=RAPIDOCR_DET, rec=replace(s.rec, drop_score=0.5)),
    "paddleocr-det": lambda s: replace(s, det=PADDLEOCR_DET),
    # RapidOCR's resize alone (short side brought up to 736; the default brings it up to 64).
    "det736": lambda s: replace(s, det=replace(s.det, limit_side_len=736, limit_type="min")),
    "paddleocr": lambda s: replace(s, det=PADDLEOCR_DET, cls=replace(s.cls, orientation="line"),
                                   rec=replace(s.rec, drop_score=0.0)),
}


class Engine(Protocol):
    name: str

    def __call__(self, image: np.ndarray) -> list[PredictedLine]: ...

    def close(self) -> None: ...


class OurPipeline:
    """This project's pipeline, loaded exactly as a server worker loads it (verify, build, warm up)."""

    def __init__(self, model_repo: Path, version: str | None, preset: str = "default",
                 cpu_threads: int | None = None, name: str = "ours", workers: int = 1, threads: int = 1,
                 slot: int = 0) -> None:
        """Runtime options are derived as a server worker derives them for `workers` x `threads`
        (one worker with all cores by default); `cpu_threads` overrides the math-library threads.
        The worker memory ceiling is off: this process holds every engine of the run, so its resident
        memory is not one worker's, and the ceiling would rebuild predictors for the anchors' memory."""
        from server.config import Settings
        from server.http.context import runtime_options
        from server.lifecycle.pipeline_loader import load_version
        from server.repository.layout import ModelRepository

        settings = Settings.from_env({**os.environ, "OCR_WORKERS": str(workers), "OCR_THREADS": str(threads)})
        settings = replace(settings, memory_ceiling_mb=0)
        if cpu_threads:
            settings = replace(settings, cpu_threads=cpu_threads)
        repo = ModelRepository(model_repo, settings.pipeline_name)
        version = version or repo.version_names()[-1]
        self.model = load_version(repo, version, runtime_options(settings, slot))
        pipeline = self.model.pipeline
        self.pipeline = replace(pipeline, settings=PRESETS[preset](pipeline.settings))
        self.options = RequestOptions(use_cls=preset != "nocls")
        self.name = name
        self.version = version

    def __call__(self, image: np.ndarray) -> list[PredictedLine]:
        result = self.pipeline.run(image, self.options)
        return [PredictedLine(line.box, line.text) for line in result.lines]

    def close(self) -> None:
        self.model.close()


class RapidOcr:
    """RapidOCR 1.4 (`rapidocr_onnxruntime` or `rapidocr_paddle`) with its own config.yaml defaults.

    `max_side_len` is RapidOCR's pre-resize of large images (2000 by default); parity runs lift it so
    that both pipelines see the same pixels. `threads` sets its math-library threads (ONNX Runtime's
    intra-op threads, Paddle's CPU math threads); by default it keeps its own choice.
    """

    def __init__(self, module: str, name: str, max_side_len: int | None = None, threads: int | None = None) -> None:
        engine_cls = __import__(module, fromlist=["RapidOCR"]).RapidOCR
        thread_option = "intra_op_num_threads" if module == "rapidocr_onnxruntime" else "cpu_math_library_num_threads"
        self.engine = engine_cls(**({thread_option: threads} if threads else {}))
        if max_side_len is not None:
            self.engine.max_side_len = max_side_len
        self.name = name

    def __call__(self, image: np.ndarray) -> list[PredictedLine]:
        result, _ = self.engine(image)
        return [PredictedLine(np.asarray(box, dtype=np.float32), text) for box, text, _score in result or []]

    def close(self) -> None:
        self.engine = None


ROOT = Path(__file__).resolve().parent.parent
# PaddleOCR 3.x lives in a venv of its own (bench/README.md); $OCR_BENCH_PADDLEOCR_PYTHON overrides.
PADDLEOCR_PYTHON = Path(os.environ.get("OCR_BENCH_PADDLEOCR_PYTHON") or ROOT / ".venv-paddleocr" / "bin" / "python")
PADDLEOCR_CLS_NAME = "PP-LCNet_x0_25_textline_ori"
_SCALE = 1 / 255


def paddlex_model_configs(dictionary: list[str]) -> dict[str, dict]:
    """The `inference.yml` PaddleX needs beside each local model, for this project's PP-OCRv4 weights.

    PaddleX loads a local model only when its directory names the model (`Global.model_name`, checked
    against the name passed in) and describes its pre- and post-processing. Our installed weights come
    without one, so the benchmark writes them: PP-OCRv4 mobile det/rec as PaddleX ships them (BGR input,
    ImageNet normalisation for det, 3x48x320 CTC for rec, with this version's dictionary). The legacy
    mobile v2 angle classifier has no PaddleX name of its own; it runs under the text-line orientation
    name (the same 0/180 degree task) with its own input: 48x192, normalised to [-1, 1]. PaddleX
    stretches crops to that size and reads them as RGB, where PaddleOCR 2.x padded BGR crops: that
    difference is PaddleOCR 3.x's, and is part of what is measured.
    """
    return {
        "det": {
            "Global": {"model_name": "PP-OCRv4_mobile_det"},
            "PreProcess": {"transform_ops": [
                {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                {"DetResizeForTest": {"resize_long": 960}},
                {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                    "scale": _SCALE, "order": "hwc"}},
                {"ToCHWImage": None},
            ]},
            "PostProcess": {"name": "DBPostProcess", "thresh": 0.3, "box_thresh": 0.6,
                            "max_candidates": 1000, "unclip_ratio": 1.5},
        },
        "rec": {
            "Global": {"model_name": "PP-OCRv4_mobile_rec"},
            "PreProcess": {"transform_ops": [
                {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                {"RecResizeImg": {"image_shape": [3, 48, 320]}},
            ]},
            "PostProcess": {"name": "CTCLabelDecode", "character_dict": dictionary},
        },
        "cls": {
            "Global": {"model_name": PADDLEOCR_CLS_NAME},
            "PreProcess": {"transform_ops": [
                {"ResizeImage": {"size": [192, 48]}},
                {"NormalizeImage": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "scale": _SCALE,
                                    "order": ""}},
                {"ToCHWImage": None},
            ]},
            "PostProcess": {"Topk": {"topk": 1, "label_list": ["0_degree", "180_degree"]}},
        },
    }


def prepare_paddlex_models(version_dir: Path, target: Path) -> dict[str, Path]:
    """Copies det/cls/rec of an installed version under `target`, each with its `inference.yml`.

    JSON is written: it is valid YAML, and the project's venv needs no YAML library for it.
    """
    dictionary = (version_dir / "rec" / "ppocr_keys_v1.txt").read_text(encoding="utf-8").splitlines()
    dirs = {}
    for stage, config in paddlex_model_configs(dictionary).items():
        stage_dir = target / stage
        stage_dir.mkdir(parents=True)
        for suffix in (".pdmodel", ".pdiparams"):
            shutil.copy2(version_dir / stage / f"inference{suffix}", stage_dir)
        (stage_dir / "inference.yml").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
        dirs[stage] = stage_dir
    return dirs


class PipeWorker:
    """An engine in another venv, behind a pipe (bench/paddleocr_worker.py's protocol: raw BGR image in,
    JSON lines out). The image crosses the pipe raw (a 1-2 MB copy, small against a receipt's OCR, and
    timed with the engine). `last_child_cpu_s` is the worker's CPU time for the last call, which the
    parent's process time cannot see; bench.pipeline adds it."""

    def __init__(self, command: list[str], name: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        env={**os.environ, **(env or {})})
        ready = self.process.stdout.readline()
        if not ready:
            raise RuntimeError(f"{name} worker exited with {self.process.wait()} before loading")
        self.name = name
        self.last_child_cpu_s = 0.0

    def __call__(self, image: np.ndarray) -> list[PredictedLine]:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        self.process.stdin.write(json.dumps({"shape": list(image.shape)}).encode() + b"\n")
        self.process.stdin.write(image.tobytes())
        self.process.stdin.flush()
        reply = self.process.stdout.readline()
        if not reply:
            raise RuntimeError(f"{self.name} worker died (exit {self.process.wait()})")
        answer = json.loads(reply)
        self.last_child_cpu_s = answer["cpu_s"]
        if "error" in answer:
            raise RuntimeError(f"{self.name} worker: {answer['error']}")
        return [PredictedLine(np.asarray(box, dtype=np.float32), text) for box, text in answer["lines"]]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


class PaddleOcr3(PipeWorker):
    """PaddleOCR 3.x's general OCR pipeline, run by `bench/paddleocr_worker.py` in its own venv.

    Same weights as ours (the installed PP-OCRv4 version), PaddleOCR 3.x's own pipeline settings,
    oneDNN off (it crashes on these weights), `threads` CPU math threads (1 unless given).
    """

    def __init__(self, model_repo: Path, version: str | None, threads: int | None = None,
                 use_cls: bool = True, name: str = "paddleocr3") -> None:
        if not PADDLEOCR_PYTHON.exists():
            raise FileNotFoundError(f"{PADDLEOCR_PYTHON} missing: make bench-paddleocr-setup (bench/README.md)")
        pipeline_dir = Path(model_repo) / "ppocr"
        version = version or sorted(p.name for p in pipeline_dir.iterdir() if (p / "manifest.json").is_file())[-1]
        self._tmp = tempfile.TemporaryDirectory(prefix="paddleocr3-models-")
        dirs = prepare_paddlex_models(pipeline_dir / version, Path(self._tmp.name))
        command = [str(PADDLEOCR_PYTHON), str(Path(__file__).with_name("paddleocr_worker.py")),
                   "--det", str(dirs["det"]), "--rec", str(dirs["rec"]), "--threads", str(threads or 1)]
        if use_cls:
            command += ["--cls", str(dirs["cls"]), "--cls-name", PADDLEOCR_CLS_NAME]
        super().__init__(command, name, env={"OMP_NUM_THREADS": str(threads or 1)})
        self.version = version

    def close(self) -> None:
        super().close()
        self._tmp.cleanup()


class RapidOcr3:
    """RapidOCR 3.10 (`rapidocr`), its bundled PP-OCRv6 small det/rec and mobile v2 classifier on ONNX
    Runtime, its config.yaml defaults otherwise; `use_cls=False` turns the classifier off."""

    def __init__(self, name: str, threads: int | None = None, use_cls: bool = True) -> None:
        from rapidocr import RapidOCR as RapidOcrEngine

        params: dict[str, object] = {"Global.log_level": "error", "Global.use_cls": use_cls}
        if threads:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
        self.engine = RapidOcrEngine(params=params)
        self.name = name

    def __call__(self, image: np.ndarray) -> list[PredictedLine]:
        result = self.engine(image)
        if result.boxes is None:
            return []
        return [PredictedLine(np.asarray(box, dtype=np.float32), text) for box, text in zip(result.boxes, result.txts)]

    def close(self) -> None:
        self.engine = None


class FasterPaddle:
    """faster-paddle 1.0.4 (Rust + its own ONNX Runtime 1.28), PP-OCRv6 `size` bundled, its defaults.

    It takes encoded bytes: the image is handed over as BMP (encoding it is inside the timed call, a few
    ms; decoding BMP is a copy) and its axis-aligned boxes come back as rectangles.
    """

    def __init__(self, size: str, name: str, threads: int | None = None) -> None:
        import faster_paddle

        self.engine = faster_paddle.OcrEngine(model_size=size, threads=threads)
        self.name = name

    def __call__(self, image: np.ndarray) -> list[PredictedLine]:
        ok, encoded = cv2.imencode(".bmp", image)
        assert ok
        result = self.engine.ocr(encoded.tobytes())
        lines = []
        for bound in result["bounds"].values():
            (x0, y0), (x1, y1) = bound["topLeftCoord"], bound["bottomRightCoord"]
            box = np.asarray([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)
            lines.append(PredictedLine(box, bound["text"]))
        return lines

    def close(self) -> None:
        self.engine = None


# rapidocr-openvino 1.4.4 imports `openvino.runtime`, gone from the OpenVINO the server pins: it lives in a
# venv of its own (bench/README.md, "Anchors"), behind bench/anchor_worker.py.
ANCHORS_PYTHON = Path(os.environ.get("OCR_BENCH_ANCHORS_PYTHON") or ROOT / ".venv-anchors" / "bin" / "python")


def rapidocr_openvino(name: str, threads: int | None = None) -> PipeWorker:
    if not ANCHORS_PYTHON.exists():
        raise FileNotFoundError(f"{ANCHORS_PYTHON} missing: make bench-anchors-venv (bench/README.md)")
    command = [str(ANCHORS_PYTHON), str(Path(__file__).with_name("anchor_worker.py")), "--engine", "rapidocr_openvino"]
    return PipeWorker(command + (["--threads", str(threads)] if threads else []), name)


ANCHORS = {
    "rapidocr-onnx": "rapidocr_onnxruntime",
    "rapidocr-paddle": "rapidocr_paddle",
}
# Engines built by name: RapidOCR 3 (cls on / off), faster-paddle tiny / small, rapidocr-openvino.
OTHER_ANCHORS: dict[str, tuple[str, Callable[[str, int | None], Engine]]] = {
    "rapidocr3": ("rapidocr", lambda name, threads: RapidOcr3(name, threads)),
    "rapidocr3:nocls": ("rapidocr", lambda name, threads: RapidOcr3(name, threads, use_cls=False)),
    "faster-paddle:tiny": ("faster_paddle", lambda name, threads: FasterPaddle("tiny", name, threads)),
    "faster-paddle:small": ("faster_paddle", lambda name, threads: FasterPaddle("small", name, threads)),
    "rapidocr-openvino": ("", rapidocr_openvino),
}


def available_anchors() -> list[str]:
    """Anchors importable here (rapidocr-openvino: when its venv exists). PaddleOCR 3.x (`paddleocr3`) is
    never picked by default: it runs only when named, since it needs its own venv and is several times
    slower."""
    found = [name for name, module in ANCHORS.items() if importlib.util.find_spec(module) is not None]
    for name, (module, _) in OTHER_ANCHORS.items():
        if importlib.util.find_spec(module) is not None if module else ANCHORS_PYTHON.exists():
            found.append(name)
    return found


def build_anchor(name: str, threads: int | None = None, model_repo: Path | None = None,
                 version: str | None = None) -> Engine:
    if name in ANCHORS:
        return RapidOcr(ANCHORS[name], name, threads=threads)
    if name in OTHER_ANCHORS:
        return OTHER_ANCHORS[name][1](name, threads)
    if name in ("paddleocr3", "paddleocr3:nocls"):
        return PaddleOcr3(model_repo or ROOT / "models", version, threads=threads,
                          use_cls=not name.endswith(":nocls"), name=name)
    known = ", ".join([*ANCHORS, *OTHER_ANCHORS, "paddleocr3", "paddleocr3:nocls"])
    raise ValueError(f"unknown engine {name!r}; known: ours, {known}")
