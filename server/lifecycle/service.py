"""One worker's model lifecycle, as the rest of the server uses it.

The HTTP layer needs five things from the lifecycle: the model to run a request on (held for the
whole request), the admin view (all versions, or one with its card and a fresh signature check), the
admin commands, the promotion requests (for the four-eyes rule), and whether a version name is one of
ours. This facade gives exactly those, and `build` wires the real parts together: source, loader (with
the signature checker), controller, manager and reporting.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from server.governance.access import PromotionRequest
from server.governance.audit import AuditLog
from server.governance.verify import SignatureChecker
from server.lifecycle.commands import Commands, Refused
from server.lifecycle.config import LifecycleConfig
from server.lifecycle.controller import LifecycleController
from server.lifecycle.evaluation import Evaluator
from server.lifecycle.loader import LoadedModel
from server.lifecycle.manager import ModelManager
from server.lifecycle.pipeline_loader import PipelineLoader
from server.lifecycle.reporting import Reporter
from server.lifecycle.statedir import StatePaths
from server.lifecycle.states import VersionState
from server.lifecycle.status import models_view, version_states, version_view
from server.lifecycle.verdicts import VerdictStore
from server.lifecycle.workers import WorkerBoard
from server.repository.layout import ModelRepository, VersionNameError, parse_version
from server.runtime import RuntimeOptions


class Lifecycle:
    def __init__(self, repo: ModelRepository, manager: ModelManager, controller: LifecycleController,
                 commands: Commands, signatures: SignatureChecker) -> None:
        self.repo = repo
        self.manager = manager
        self.controller = controller
        self.commands = commands
        self.signatures = signatures

    @classmethod
    def build(cls, repo: ModelRepository, options: RuntimeOptions, config: LifecycleConfig, state: StatePaths,
              audit: AuditLog, slot: int, signatures: SignatureChecker) -> "Lifecycle":
        manager = ModelManager()
        loader = PipelineLoader(repo, options, Evaluator(config.gate, repo.root), VerdictStore(state.verdicts_dir),
                                config.warmup_shapes, config.probe_timeout_s, signatures, config.require_signature)
        device = "cpu" if options.device == "cpu" else f"gpu:{options.gpu_id}"
        reporter = Reporter(audit, WorkerBoard(state.workers_dir), slot, device)
        controller = LifecycleController(repo, manager, loader, config, state, reporter)
        return cls(repo, manager, controller, Commands(controller, audit), signatures)

    def start(self) -> None:
        self.controller.start()

    def wait_first_pass(self, timeout: float) -> bool:
        """Wait until the first pass has ended: a version serves, or none could (True), or `timeout`."""
        return self.controller.loop.first_pass.wait(timeout)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the lifecycle threads and free the models while the interpreter is whole; False (models
        kept) if a load is still running after `timeout`: freeing them under it is not safe."""
        if not self.controller.stop(timeout):
            return False
        self.manager.shutdown()
        return True

    def hold(self) -> AbstractContextManager[LoadedModel]:
        """The serving model, held until the block ends (raises NotReadyError while none has loaded)."""
        return self.manager.acquire()

    @property
    def active(self) -> LoadedModel | None:
        return self.manager.active

    def view(self) -> dict[str, Any]:
        """Every version's state and why, and what each worker serves (`GET /v1/models`)."""
        return models_view(self.controller)

    def describe(self, version: str) -> dict[str, Any]:
        """One version (`GET /v1/models/<version>`): its listing entry, its model card, its signature
        checked now against today's trust store, and the promotion requests made for it."""
        try:
            parse_version(version)
        except VersionNameError as exc:
            raise Refused("invalid", "invalid_version", str(exc)) from None
        found = version_view(self.controller, version)
        if found is None:
            raise Refused("not_found", "version_not_found", f"version {version} is not in {self.repo.pipeline_dir}")
        entry, inspection = found
        manifest = inspection.manifest if inspection else None
        signature = self.signatures.check(inspection.path, self.repo.pipeline) if inspection else None
        return {**entry, "card": manifest.card.to_json() if manifest and manifest.card else None,
                "signature": signature.to_json() if signature else None,
                "promotion_requests": [r.__dict__ for r in self.promotion_requests() if r.version == version]}

    def promotion_requests(self) -> list[PromotionRequest]:
        return self.commands.promotions.all()

    def rejected_versions(self) -> dict[str, str]:
        """Version -> why it is rejected, as this worker's last pass saw them (for `/readyz`)."""
        scan = self.controller.last_scan
        if scan is None:
            return {}
        states = version_states(scan, self.controller.verdicts.all(), [])
        return {name: status.reason for name, status in states.items() if status.state is VersionState.REJECTED}

    def knows(self, version: str) -> bool:
        """Whether `version` is one of this server's (client strings must not mint metric series)."""
        active = self.manager.active
        return version in self.repo.version_names() or (active is not None and version == active.version)
