"""server.config and the CLI's serve flags: environment parsing, validation errors, flags over env."""

from __future__ import annotations

import os
import re
from dataclasses import fields
from pathlib import Path

import pytest

from server import cli
from server.cli.settings import settings_with
from server.config import ConfigError, Settings
from tests.support.server import ROOT


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.bind == "0.0.0.0:8000" and settings.workers == 2 and settings.threads == 4
    assert settings.model_repo == Path("models") and settings.device == "cpu"


def test_every_kind_of_value_is_parsed() -> None:
    settings = Settings.from_env({
        "OCR_WORKERS": "3",
        "OCR_THREADS": " 8 ",
        "OCR_MODEL_REPO": "/srv/models",
        "OCR_INSTALL_DEFAULT": "no",
        "OCR_ONEDNN": "OFF",
        "OCR_DEVICE": "gpu",
        "OCR_GPU_IDS": "0, 2,3",
        "OCR_MAX_BODY_BYTES": "1048576",
        "OCR_LOG_LEVEL": " debug ",
    })
    assert settings.workers == 3 and settings.threads == 8
    assert settings.model_repo == Path("/srv/models")
    assert settings.install_default is False and settings.onednn is False
    assert settings.device == "gpu" and settings.gpu_ids == (0, 2, 3)
    assert settings.max_body_bytes == 1_048_576 and settings.log_level == "debug"


def test_empty_values_mean_default() -> None:
    assert Settings.from_env({"OCR_WORKERS": "", "OCR_DEVICE": ""}) == Settings()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OCR_WORKERS": "two"}, "OCR_WORKERS must be an integer"),
        ({"OCR_WORKERS": "0"}, "OCR_WORKERS must be >= 1"),
        ({"OCR_MAX_IMAGES": "-1"}, "OCR_MAX_IMAGES must be >= 1"),
        ({"OCR_ONEDNN": "maybe"}, "OCR_ONEDNN must be a boolean"),
        ({"OCR_DEVICE": "tpu"}, "OCR_DEVICE must be 'cpu' or 'gpu'"),
        ({"OCR_DEVICE": "gpu", "OCR_GPU_IDS": ","}, "OCR_GPU_IDS must name at least one GPU"),
        ({"OCR_GPU_IDS": "0,one"}, "OCR_GPU_IDS must be comma-separated integers"),
        ({"OCR_BIND": "localhost"}, "OCR_BIND must be HOST:PORT"),
        ({"OCR_BIND": "localhost:http"}, "OCR_BIND must be HOST:PORT"),
        ({"OCR_PIPELINE": "../etc"}, "OCR_PIPELINE must be a plain name"),
        ({"OCR_MODEL_SOURCE": "s3"}, "OCR_MODEL_SOURCE must be 'directory' or 'mlflow'"),
        ({"OCR_MODEL_SOURCE": "mlflow"}, "OCR_MODEL_SOURCE=mlflow needs OCR_MLFLOW_TRACKING_URI and OCR_MLFLOW_MODEL"),
        ({"OCR_MODEL_SOURCE": "mlflow", "OCR_MLFLOW_TRACKING_URI": "http://m:5000"},
         "OCR_MODEL_SOURCE=mlflow needs OCR_MLFLOW_MODEL"),
        ({"OCR_MLFLOW_MODEL": "x' or name='y"}, "OCR_MLFLOW_MODEL must not contain quotes"),
        ({"OCR_MLFLOW_POLL_S": "0"}, "OCR_MLFLOW_POLL_S must be >= 0.1"),
        ({"OCR_PDF_DPI": "1200"}, "OCR_PDF_DPI must be within 36..600"),
        ({"OCR_PDF_TEXT": "text"}, "OCR_PDF_TEXT must be 'auto', 'ocr' or 'layer'"),
        ({"OCR_FIELDS": "passport"}, "OCR_FIELDS must be empty, 'receipt', 'invoice' or 'cheque'"),
        ({"OCR_PDF_TIMEOUT_S": "0"}, "OCR_PDF_TIMEOUT_S must be >= 0.1"),
        ({"OCR_GATE_MIN_FIELD_MATCH": "1.5"}, "OCR_GATE_MIN_FIELD_MATCH is a share of the expected fields"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env(env)


def test_a_registry_source_never_installs_the_default_version() -> None:
    registry = {"OCR_MODEL_SOURCE": "mlflow", "OCR_MLFLOW_TRACKING_URI": "http://m:5000", "OCR_MLFLOW_MODEL": "ocr"}
    assert Settings.from_env(registry).effective_install_default is False
    assert Settings.from_env({}).effective_install_default is True


def test_as_env_round_trips() -> None:
    settings = Settings.from_env({"OCR_DEVICE": "gpu", "OCR_GPU_IDS": "1,0", "OCR_ONEDNN": "0", "OCR_WORKERS": "5"})
    assert Settings.from_env(settings.as_env()) == settings


def test_workers_are_spread_round_robin_over_gpus() -> None:
    settings = Settings.from_env({"OCR_DEVICE": "gpu", "OCR_GPU_IDS": "0,1", "OCR_WORKERS": "4"})
    assert [settings.gpu_id_for(slot) for slot in range(4)] == [0, 1, 0, 1]


def test_derived_thread_counts_are_explicit_when_set() -> None:
    settings = Settings.from_env({"OCR_CPU_THREADS": "3", "OCR_INFERENCE_CONCURRENCY": "2"})
    assert settings.effective_cpu_threads == 3 and settings.effective_inference_concurrency == 2
    derived = Settings.from_env({"OCR_WORKERS": "64"})
    assert derived.effective_cpu_threads >= 1 and derived.effective_inference_concurrency >= 1


@pytest.fixture()
def private_environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The CLI exports its flags into os.environ (for Gunicorn); give it a copy to write into."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCR_")}
    monkeypatch.setattr(os, "environ", env)
    return env


def test_serve_flags_win_over_environment(private_environ: dict[str, str]) -> None:
    private_environ.update({"OCR_WORKERS": "7", "OCR_THREADS": "9", "OCR_BIND": "127.0.0.1:1"})
    args = cli.build_parser().parse_args(
        ["serve", "--bind", "127.0.0.1:9100", "--workers", "3", "--model-repo", "/data/models"])
    settings = settings_with(args)
    assert settings.bind == "127.0.0.1:9100" and settings.workers == 3
    assert settings.threads == 9  # not given as a flag: the environment's value stands
    assert settings.model_repo == Path("/data/models")
    assert private_environ["OCR_WORKERS"] == "3"  # exported for the Gunicorn workers


@pytest.mark.parametrize("argv", [["serve", "--workers", "0"], ["serve", "--bind", "nowhere"]])
def test_serve_refuses_bad_flags_before_starting(
    private_environ: dict[str, str], argv: list[str], capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(argv) == 2  # returns instead of exec'ing Gunicorn
    assert "configuration error" in capsys.readouterr().err


def test_readme_documents_every_setting() -> None:
    """The README's configuration table lists every OCR_* variable with its default."""
    readme = (ROOT / "README.md").read_text()
    table = {
        match.group(1): match.group(2)
        for match in re.finditer(r"^\| `(OCR_\w+)` \| `([^`]*)` \|", readme, flags=re.MULTILINE)
    }
    defaults = Settings().as_env()
    for f in fields(Settings):
        name = f.metadata["env"]
        assert name in table, f"{name} is missing from the README configuration table"
        assert table[name] == defaults[name], f"README gives {name} the default {table[name]!r}"
