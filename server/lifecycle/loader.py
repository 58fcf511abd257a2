"""The Loader seam: how the controller turns a version on disk into a loaded, judged model.

Contract. `Loader.load(request)` either returns a `Loaded` - a model that has already answered real
inference calls, with the quality gate's result - or raises `LoadFailure` with a reason fit for ops to
read, having released whatever it built. In between it may verify, probe, build, warm up and gate, in
that order, and take minutes. It never touches the model being served (that is the manager's job) and
records nothing machine-wide (the controller records verdicts and reports). The controller calls it
from its one lifecycle thread, so a loader sees one call at a time per worker.

`Loader.recheck(model)` answers, later and as often as the controller asks, whether the files of a
model being served are still those it approved (hashed again, and its signature checked against
today's trust store and revocation list): None, or the `LoadFailure` that now rejects the version.

`server.lifecycle.pipeline_loader.PipelineLoader` is the real one; tests use a scripted fake that
fails, passes or takes its time as told, so the controller's decisions are tested without Paddle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from server.lifecycle.source import Inspection
from server.lifecycle.verdicts import Verdict
from server.pipeline import OcrPipeline
from server.repository.manifest import Manifest, now_iso


@dataclass
class LoadedModel:
    """A version in memory, ready to serve: what a request holds for its whole life."""

    name: str
    version: str
    path: Path
    manifest: Manifest
    pipeline: OcrPipeline
    load_seconds: float = 0.0
    warmup_seconds: float = 0.0

    def close(self) -> None:
        self.pipeline.close()


@dataclass(frozen=True)
class LoadRequest:
    inspection: Inspection  # the version as the scan saw it (a whole version, with its manifest)
    approval: Verdict | None  # a standing approval of these very files: probe and gate are skipped
    live: LoadedModel | None  # the gate's baseline: what this worker serves now, unless pinned below it
    live_gate: dict[str, Any] | None = None  # the live version's own gate result (its figures may be reused)


@dataclass(frozen=True)
class Loaded:
    model: LoadedModel
    gate: dict[str, Any]  # the gate result: this load's, or the standing approval's
    networks: str  # digest of the network files (they open without crashing once approved)
    signature: dict[str, Any] | None = None  # the signature check of this load (`SignatureStatus.to_json`)

    @property
    def verified(self) -> bool:
        """Whether the version serves with a verified signature (see `ocr_model_unverified_serving`)."""
        return bool(self.signature and self.signature.get("verified"))


@dataclass(frozen=True)
class Serving:
    """What a worker serves, as its controller keeps it: the model, the files it came from, its gate."""

    model: LoadedModel
    fingerprint: str
    gate: dict[str, Any]
    since: str = field(default_factory=now_iso)


class LoadFailure(Exception):
    """A load attempt failed. `code` is short and stable (a metric label, the verdict's result);
    `sticky` failures say the version itself is bad and become a rejection, the others are retried.
    `withdraws`: the failure holds for every worker alike (a signature that does not verify), so it
    rejects the version even where other workers approved these very files before."""

    def __init__(self, code: str, reason: str, sticky: bool = True, gate: dict[str, Any] | None = None,
                 withdraws: bool = False, signature: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.sticky = sticky
        self.gate = gate
        self.withdraws = withdraws
        self.signature = signature


class Loader(Protocol):
    def load(self, request: LoadRequest) -> Loaded: ...

    def recheck(self, model: LoadedModel) -> LoadFailure | None: ...
