"""A scripted `Loader` for the controller's tests: no Paddle, no weights, decisions only.

Each version's `Script` says whether its load fails (sticky or not, for every worker or not, always
or only the first N times), whether it passes the gate, how long the load takes, and whether the
re-check of the version being served fails (scripts may be changed while the controller runs). Versions themselves are real
directories published with the real publishing code (`publish_fake_version`), so the controller runs
on the real source, verdict store, pin file, audit log and worker board.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from server.lifecycle.loader import Loaded, LoadedModel, LoadFailure, LoadRequest
from server.repository.layout import ModelRepository
from server.repository.publish import publish


@dataclass
class Script:
    fail: str | None = None  # the load fails with this code
    sticky: bool = True  # whether that failure says the version itself is bad
    failures: int | None = None  # fail only the first N attempts (None: every attempt)
    gate_passes: bool = True
    seconds: float = 0.0  # how long a load takes
    withdraws: bool = False  # the failure holds for every worker (a signature that does not verify)
    recheck_fails: str | None = None  # the re-check of the served version fails with this code


class FakePipeline:
    def __init__(self) -> None:
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()


class FakeLoader:
    def __init__(self, scripts: dict[str, Script] | None = None) -> None:
        self.scripts = scripts or {}
        self.attempts: list[tuple[str, float]] = []  # (version, monotonic time the load began)
        self.rechecks: list[str] = []  # versions re-checked, in order
        self.loading = threading.Event()  # set while a load is under way
        self.models: dict[str, list[LoadedModel]] = {}
        self.baselines: dict[str, list[str | None]] = {}  # per version, the live version each gate compared with

    def attempts_of(self, version: str) -> list[float]:
        return [at for name, at in self.attempts if name == version]

    def load(self, request: LoadRequest) -> Loaded:
        inspection = request.inspection
        assert inspection.manifest is not None
        version = inspection.version
        script = self.scripts.get(version, Script())
        self.attempts.append((version, time.monotonic()))
        self.loading.set()
        try:
            time.sleep(script.seconds)
            if script.fail and (script.failures is None or len(self.attempts_of(version)) <= script.failures):
                raise LoadFailure(script.fail, f"scripted failure of {version}", sticky=script.sticky,
                                  withdraws=script.withdraws)
            model = LoadedModel(inspection.manifest.name, version, inspection.path, inspection.manifest,
                                FakePipeline())  # type: ignore[arg-type]
            self.models.setdefault(version, []).append(model)
            if request.approval is not None:
                return Loaded(model, request.approval.gate or {}, "networks")
            self.baselines.setdefault(version, []).append(request.live.version if request.live else None)
            gate = {"passed": script.gate_passes, "reason": "scripted gate", "cer": 0.01}
            if not script.gate_passes:
                model.close()
                raise LoadFailure("gate_rejected", f"scripted gate rejects {version}", gate=gate)
            return Loaded(model, gate, "networks")
        finally:
            self.loading.clear()

    def recheck(self, model: LoadedModel) -> LoadFailure | None:
        self.rechecks.append(model.version)
        code = self.scripts.get(model.version, Script()).recheck_fails
        return None if code is None else LoadFailure(code, f"scripted re-check failure of {model.version}",
                                                     withdraws=True)


def publish_fake_version(repo: ModelRepository, version: str, work: Path, rollout: dict[str, float] | None = None
                         ) -> Path:
    """A whole version (manifest and checksums verify) whose 'networks' are a few bytes of text; with
    `rollout`, its manifest asks to enter as a canary."""
    source = work / f"src-{version}"
    for stage in ("det", "rec"):
        (source / stage).mkdir(parents=True)
        (source / stage / "inference.onnx").write_text(f"{stage} of {version}\n")
    (source / "rec" / "dict.txt").write_text("a\nb\n")
    if rollout:  # a manifest of its own, as a release tool would write it
        draft = publish(source, ModelRepository(work / f"draft-{version}"), version, created_by="tests")
        manifest = json.loads((draft / "manifest.json").read_text())
        (draft / "manifest.json").write_text(json.dumps({**manifest, "rollout": rollout}))
        source = draft
    return publish(source, repo, version, created_by="tests")
