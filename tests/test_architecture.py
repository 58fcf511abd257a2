"""The code's shape, checked: layers import downward only (import-linter contracts in pyproject.toml),
every package of `server` has its place in those layers, and modules stay small enough to read."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support.server import ROOT

SERVER = ROOT / "server"
MAX_LINES = 400
MAX_LIFECYCLE_LINES = 250


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_import_linter_contracts_are_kept() -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in done.stdout


def test_every_package_of_the_server_has_a_layer() -> None:
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    named = {part.strip() for layer in layers for part in layer.replace(":", "|").split("|")}
    present = {f"server.{p.stem if p.is_file() else p.name}" for p in SERVER.iterdir()
               if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}
    assert present == named, f"not in a layer: {sorted(present - named)}; no longer there: {sorted(named - present)}"


def test_modules_are_small() -> None:
    sizes = {path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines()) for path in SERVER.rglob("*.py")}
    too_long = {name: n for name, n in sizes.items()
                if n > (MAX_LIFECYCLE_LINES if name.startswith("server/lifecycle/") else MAX_LINES)}
    assert not too_long, too_long


def test_what_the_gunicorn_master_imports_creates_no_metrics_and_loads_no_runtime() -> None:
    """The master runs gunicorn_config's hooks, which import the installer (an empty repository) and the
    repository layout. Importing the metrics module there would give the master metric files of its own
    in the workers' multiprocess directory (found by tests/test_faults.py: a live gauge file of a pid
    that is no worker); a runtime imported there would initialise CUDA before the fork."""
    probe = ("import sys, server.process.gunicorn_config, server.repository.install, server.repository.layout; "
             "print(sorted(m for m in ('server.observability.metrics', 'paddle', 'onnxruntime', 'openvino') "
             "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout
