"""A real MLflow tracking server (with its Model Registry) on a free loopback port, for the registry tests.

It is the pinned `mlflow server` from `.venv-mlflow` (`make mlflow-server-setup`; the full server does
not install beside our Gunicorn pin), with a sqlite backend and a local artifact store, both in a
directory of the test's. `stop()` and `start()` take it down and bring it back on the same port with
the same data, as a registry outage and its end look to a client.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.support.server import ROOT, free_port

MLFLOW = ROOT / ".venv-mlflow" / "bin" / "mlflow"
REQUIRED = os.environ.get("OCR_REQUIRE_MLFLOW_SERVER") == "1"


def mlflow_command() -> Path:
    """The server's executable; missing skips the test, or fails it where CI requires it."""
    if not MLFLOW.is_file():
        message = f"{MLFLOW} is not installed (make mlflow-server-setup)"
        if REQUIRED:
            pytest.fail(message + " and OCR_REQUIRE_MLFLOW_SERVER=1")
        pytest.skip(message)
    return MLFLOW


class MlflowServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "mlflow-server.log"
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 240.0) -> None:
        """Start it and wait until it answers /health (the first start creates the database)."""
        command = [str(mlflow_command()), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                   "--backend-store-uri", f"sqlite:///{self.directory / 'mlflow.db'}",
                   "--artifacts-destination", str(self.directory / "artifacts")]
        # MLflow 3's background job runner (GenAI jobs) is not needed here, and is one process less
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"mlflow server not up after {timeout}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        """Stop it and everything it started (uvicorn workers), so the port refuses connections."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # its worker processes may outlive the parent by a moment
            try:
                requests.get(f"{self.url}/health", timeout=2)
            except requests.ConnectionError:
                return
            time.sleep(0.3)
        raise RuntimeError(f"mlflow server on port {self.port} still answers after being stopped")

    def client(self):  # -> mlflow.MlflowClient (imported here: the mlflow extra is a test requirement)
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url, registry_uri=self.url)
