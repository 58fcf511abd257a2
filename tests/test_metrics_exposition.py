"""Exposition without Gunicorn: multiprocess merging across real processes, the metrics directory's life,
and the formats of GET /metrics.

The Gunicorn tests (test_metrics_gunicorn.py) show the whole server; these pin down the semantics they
rely on - which gauge values survive a process and which die with it, and how a version swap shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from flask import Flask
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from server.http.app import create_app
from server.config import Settings
from server.observability.exposition import exposition_registry, render
from server.observability.metrics import model_serving
from server.observability.multiprocess import ENV_VAR, mark_worker_dead, prepare_directory, remove_directory
from tests.support.metrics import Scrape
from tests.support.server import ROOT

# A stand-in for a Gunicorn worker: a separate process with the directory in its environment before
# prometheus_client is imported, serving the versions given in turn, answering one request and leaving
# it "in flight" (it exits without finishing it, like a killed worker).
_WORKER = """
import os, sys
from server.observability.metrics import INFLIGHT, REQUESTS, model_serving
slot, versions = sys.argv[1], sys.argv[2:]
for version in versions:
    model_serving(version, worker=slot, backend="paddle", device="cpu")
REQUESTS.labels(status="200", model_version=versions[-1]).inc()
INFLIGHT.inc()
print(os.getpid())
"""


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """`prepare_directory` exports the directory, as it must in the Gunicorn master; undo that here."""
    saved = os.environ.get(ENV_VAR)
    os.environ.pop(ENV_VAR, None)
    yield
    os.environ.pop(ENV_VAR, None)
    if saved is not None:
        os.environ[ENV_VAR] = saved


def _run_worker(directory: Path, slot: str, *versions: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, ENV_VAR: str(directory)}
    done = subprocess.run([sys.executable, "-c", _WORKER, slot, *versions], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _exposed(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Scrape:
    monkeypatch.setenv(ENV_VAR, str(directory))
    body, _ = render(exposition_registry(), None)
    return Scrape.parse(body.decode())


def test_multiprocess_merge_keeps_counters_and_drops_dead_workers_live_gauges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = prepare_directory(str(tmp_path / "metrics"))
    swapped = _run_worker(directory.path, "0", "1.0.0-a", "2.0.0-b")  # swapped from 1.0.0-a to 2.0.0-b
    steady = _run_worker(directory.path, "1", "1.0.0-a")

    seen = _exposed(directory.path, monkeypatch)
    info = {(labels["pid"], labels["worker"], labels["version"]) for labels, _ in seen.select("ocr_model_info")}
    # the retired version's series is gone from the exposition; each live process shows what it serves
    assert info == {(swapped, "0", "2.0.0-b"), (steady, "1", "1.0.0-a")}
    assert all(value == 1 for _, value in seen.select("ocr_model_info"))
    assert seen.total("ocr_requests_total") == 2
    assert seen.total("ocr_requests_total", model_version="2.0.0-b") == 1
    assert seen.total("ocr_inflight_requests") == 2

    mark_worker_dead(int(swapped), directory)
    after = _exposed(directory.path, monkeypatch)
    assert {labels["pid"] for labels, _ in after.select("ocr_model_info")} == {steady}
    assert after.total("ocr_inflight_requests") == 1  # the dead worker's request is no longer in flight
    assert after.total("ocr_requests_total") == 2  # but what it answered still counts


def test_configured_directory_is_emptied_of_metric_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configured = tmp_path / "metrics"
    _run_worker(configured, "0", "1.0.0-a")  # a previous run's files
    keep = configured / "notes.txt"
    keep.write_text("not ours to delete")

    directory = prepare_directory(str(configured))
    assert os.environ[ENV_VAR] == str(configured) and not directory.owned
    assert list(configured.glob("*.db")) == [] and keep.exists()
    assert _exposed(configured, monkeypatch).total("ocr_requests_total") == 0
    remove_directory(directory)
    assert keep.exists()  # a configured directory is never removed


def test_default_directory_is_private_and_removed_at_exit() -> None:
    first, second = prepare_directory(""), prepare_directory("")
    try:
        assert first.owned and first.path.is_dir() and first.path != second.path
        assert os.environ[ENV_VAR] == str(second.path)
    finally:
        remove_directory(first)
        remove_directory(second)
    assert not first.path.exists() and not second.path.exists()


@pytest.fixture()
def app() -> Flask:
    """The real app without a model (these tests need none) on the installed repository."""
    return create_app(Settings(model_repo=ROOT / "models"), start=False)


def test_metrics_endpoint_speaks_text_format_and_openmetrics(app: Flask) -> None:
    client = app.test_client()
    client.post("/v1/ocr", data=b"x", content_type="text/plain")  # one counted request

    text = client.get("/metrics")
    assert text.status_code == 200 and text.content_type.startswith("text/plain; version=0.0.4")
    assert Scrape.parse(text.get_data(as_text=True)).total("ocr_errors_total", code="unsupported_media_type") >= 1

    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert om.content_type.startswith("application/openmetrics-text")
    names = {family.name for family in parse_openmetrics(om.get_data(as_text=True))}
    assert {"ocr_requests", "ocr_errors", "ocr_stage_duration_seconds", "ocr_model_info"} <= names


def test_swap_in_one_process_shows_only_the_new_version(app: Flask) -> None:
    """Without multiprocess mode too, the info series of a replaced version leaves the exposition."""
    model_serving("7.0.0-old", worker="5", backend="paddle", device="cpu")
    model_serving("7.0.1-new", worker="5", backend="paddle", device="cpu")
    seen = Scrape.parse(app.test_client().get("/metrics").get_data(as_text=True))
    versions = {labels["version"] for labels, _ in seen.select("ocr_model_info", worker="5")}
    assert versions == {"7.0.1-new"}
