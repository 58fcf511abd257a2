"""Two pods on one machine following one MLflow registry, under load.

Two real servers (`ocr-server serve`, 1 worker x 8 threads each: more threads than the 4 clients of
each, so the admin calls the test makes never queue behind OCR requests), each with its own port, model
repository and state directory, as two pods of the Helm chart's `modelSource: mlflow` have (an emptyDir
each), follow one real `mlflow server`. 8 clients (4 per pod) post a rendered page without pause,
and every response is checked where it lands: HTTP 200, from a version the registry holds, reading
that version's text (tests/support/lifecycle.py tells versions apart by their digit dictionaries).

The test then moves `@champion` and both pods move; takes the registry down and both keep serving,
saying so; brings it back and moves `@champion` again, and both follow; kills a pod's sync process
and its Gunicorn master starts another. Nothing fails throughout, and no pod ever holds or serves a
version the registry never held.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import requests

from server.registry.client import MlflowRegistry
from server.registry.push import push
from server.repository.layout import ModelRepository
from tests.support.lifecycle import (
    Admin,
    expect_versions,
    expected_text,
    load_image,
    publish_variant,
    wait_converged,
    wait_for,
    write_golden_set,
)
from tests.support.load import LoadGenerator
from tests.support.metrics import scrape
from tests.support.mlflow import MlflowServer
from tests.support.server import RunningServer, all_children, gunicorn_server

MODEL = "receipts-pods"
# Generous: both pods load at once on the 2 shared cores while 8 clients keep them busy (a load took
# 2.5 minutes here while other jobs kept the load average at 27).
CONVERGE_BOUND_S = 600.0
# Requests each pod must answer after a step, to show what it serves then.
AFTER_STEP = 2
VARIANTS = {"1.0.0": 0, "2.0.0": 1}  # our version name -> digit variant


@dataclass
class Pod:
    server: RunningServer
    admin: Admin
    load: LoadGenerator
    repo: ModelRepository

    def registry(self) -> dict:
        return self.admin.models()["registry"] or {}

    def sync_pids(self) -> list[int]:
        """The master's children that are not Gunicorn workers: the registry sync (exactly one)."""
        workers = {w["pid"] for w in self.admin.models()["workers"]}
        found = []
        for pid in all_children(self.server.process.pid):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state == "Z" or command == [b""]:
                # A killed child not reaped yet, or one still exiting (its memory, and with it its command
                # line, already gone): nothing left to name it by.
                continue
            if b"server.registry" in command:
                found.append(pid)
            else:
                assert pid in workers, f"unexpected child {pid} of the master: {command}"
        return found


@dataclass
class Fleet:
    mlflow: MlflowServer
    pods: list[Pod]
    numbers: dict[str, str]  # our version -> MLflow version number

    def move_champion(self, version: str) -> None:
        self.mlflow.client().set_registered_model_alias(MODEL, "champion", self.numbers[version])

    def converge(self, version: str) -> None:
        for pod in self.pods:
            wait_converged(pod.admin, pod.server.worker_pids(), version, CONVERGE_BOUND_S)
        start = time.monotonic()
        wait_for(lambda: all(len(p.load.between(start, time.monotonic())) >= AFTER_STEP for p in self.pods),
                 CONVERGE_BOUND_S, f"{AFTER_STEP} requests per pod after the move to {version}")
        for pod in self.pods:
            served = {o.version for o in pod.load.between(start, time.monotonic())}
            assert served == {version}, f"{pod.server.url} served {served} after converging on {version}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, default_version_dir: Path,
          mlflow_server: MlflowServer) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("pods")
    dev = base / "dev"
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    registry = MlflowRegistry(mlflow_server.url, MODEL)
    numbers = {}
    for version, k in VARIANTS.items():
        version_dir = publish_variant(default_version_dir, dev, version, k, base / "work")
        numbers[version] = push(version_dir, registry, "ocr-tests").registered.number
    mlflow_server.client().set_registered_model_alias(MODEL, "champion", numbers["1.0.0"])
    expected = {version: expected_text(k) for version, k in VARIANTS.items()}

    with ExitStack() as stack:
        servers = []
        for name in ("pod-a", "pod-b"):
            root = base / name / "models"
            write_golden_set(root / "golden")  # a small gate set, as ops would give the pods
            env = {
                "OCR_MODEL_SOURCE": "mlflow",
                "OCR_MLFLOW_TRACKING_URI": mlflow_server.url,
                "OCR_MLFLOW_MODEL": MODEL,
                "OCR_MLFLOW_POLL_S": "0.5",
                "OCR_STATE_DIR": str(base / name / "state"),
                "OCR_MODEL_POLL_S": "1",
                "OCR_MODEL_DEBOUNCE_S": "0.3",
                "OCR_MODEL_SETTLE_S": "3",
                "OCR_WARMUP_SHAPES": "320x320",
                "OCR_INSTALL_DEFAULT": "1",  # ignored with a registry: pods serve only what it holds
                "OCR_TIMEOUT": "600",
            }
            servers.append(stack.enter_context(
                gunicorn_server(root, base / name, workers=1, threads=8, env=env, wait_ready=False)))
        for server in servers:
            server.wait_ready(CONVERGE_BOUND_S)
        pods = []
        for server in servers:
            load = LoadGenerator(server.url, [load_image()], expect_versions(expected), clients=4)
            stack.callback(load.stop)
            pods.append(Pod(server, Admin(server.url), load.start(),
                            ModelRepository(Path(server.env["OCR_MODEL_REPO"]))))
        yield Fleet(mlflow_server, pods, numbers)
        for pod in pods:  # whatever happened, no pod held a version the registry never held
            assert set(pod.repo.version_names()) <= set(VARIANTS), pod.repo.version_names()


def test_two_pods_follow_champion_through_a_registry_outage_without_a_failed_request(fleet: Fleet) -> None:
    a, b = fleet.pods
    with ExitStack() as windows:
        opened = [windows.enter_context(pod.load.window()) for pod in fleet.pods]
        fleet.converge("1.0.0")
        for pod in fleet.pods:
            assert len(pod.sync_pids()) == 1  # one sync per pod, the master's child
            assert pod.registry()["champion"] == {"mlflow_version": fleet.numbers["1.0.0"], "version": "1.0.0",
                                                  "applied": True}

        fleet.move_champion("2.0.0")
        fleet.converge("2.0.0")

        fleet.mlflow.stop()
        try:
            for pod in fleet.pods:  # down: each pod says so, and goes on serving what it serves
                wait_for(lambda: pod.registry().get("state") == "failing", CONVERGE_BOUND_S,
                         f"{pod.server.url} to see the outage")
                assert requests.get(f"{pod.server.url}/readyz", timeout=60).status_code == 200
                assert scrape(f"{pod.server.url}/metrics").total("ocr_registry_up") == 0
            start = time.monotonic()
            wait_for(lambda: all(len(p.load.between(start, time.monotonic())) >= AFTER_STEP for p in fleet.pods),
                     CONVERGE_BOUND_S, "requests served during the outage")
            assert {o.version for p in fleet.pods for o in p.load.between(start, time.monotonic())} == {"2.0.0"}
        finally:
            fleet.mlflow.start()
        fleet.move_champion("1.0.0")  # moved once it is back: both pods follow
        fleet.converge("1.0.0")
        for pod in fleet.pods:
            wait_for(lambda: pod.registry().get("state") == "ok", CONVERGE_BOUND_S,
                     "the sync to report the registry back")
            assert scrape(f"{pod.server.url}/metrics").total("ocr_registry_up") == 1

        (killed,) = a.sync_pids()
        os.kill(killed, signal.SIGKILL)  # the master starts another; serving never notices
        wait_for(lambda: (pids := a.sync_pids()) and pids != [killed], CONVERGE_BOUND_S,
                 "the master to restart the sync")
        wait_for(lambda: a.registry().get("pid") not in (None, killed), CONVERGE_BOUND_S, "the new sync's first pass")
    for window in opened:
        window.assert_clean(minimum=4 * AFTER_STEP)
        assert window.versions() == {"1.0.0", "2.0.0"}
    assert b.registry()["state"] == "ok"
    assert "registry sync (pid %d) exited" % killed in a.server.log()
