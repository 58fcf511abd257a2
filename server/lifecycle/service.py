"""One worker's model lifecycle, as the rest of the server uses it.

The HTTP layer needs these from the lifecycle: the model to run a request on (held for the whole
request; the canary candidate for the clients in its share), the admin view (all versions, or one with
its card and a fresh signature check), the admin commands and the canary's, the promotion requests (for
the four-eyes rule), where a request's sample goes for the canary judge, a version's A/B report, and
whether a version name is one of ours. This facade gives exactly those, and `build` wires the real
parts together: source, loader (with the signature checker), controller, manager, reporting, and the
canary's samples, reports and judge.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from server.governance.access import PromotionRequest
from server.governance.audit import AuditLog
from server.governance.verify import SignatureChecker
from server.lifecycle.ab_report import RolloutReports
from server.lifecycle.commands import Commands, Refused, version_digest_of
from server.lifecycle.config import LifecycleConfig
from server.lifecycle.controller import LifecycleController
from server.lifecycle.evaluation import Evaluator
from server.lifecycle.judging import RolloutJudge
from server.lifecycle.loader import LoadedModel
from server.lifecycle.manager import ModelManager
from server.lifecycle.pipeline_loader import PipelineLoader
from server.lifecycle.reporting import Reporter
from server.lifecycle.rollout_commands import RolloutCommands
from server.lifecycle.shadow import ShadowRunner, ShadowTicket
from server.lifecycle.statedir import StatePaths
from server.lifecycle.states import VersionState
from server.lifecycle.status import models_view, version_states, version_view
from server.lifecycle.verdicts import VerdictStore
from server.lifecycle.workers import WorkerBoard
from server.quality.judge import Sample
from server.quality.rollout_samples import RolloutSamples
from server.repository.layout import ModelRepository, VersionNameError, parse_version
from server.runtime import RuntimeOptions


class Lifecycle:
    def __init__(self, repo: ModelRepository, manager: ModelManager, controller: LifecycleController,
                 commands: Commands, rollouts: RolloutCommands, judge: RolloutJudge, shadow: ShadowRunner,
                 signatures: SignatureChecker) -> None:
        self.repo = repo
        self.manager = manager
        self.controller = controller
        self.commands = commands
        self.rollouts = rollouts
        self.judge = judge
        self.shadow = shadow
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
        commands = Commands(controller, audit)

        def digest_of(version: str) -> str | None:
            return version_digest_of(controller.scan_now().versions.get(version))

        samples = RolloutSamples(state.rollout_samples)
        reports = RolloutReports(samples, state.reports_dir, config.judge, controller.verdicts, digest_of)
        rollouts = RolloutCommands(commands, controller.canary.store, reports, config.promote_requires_report,
                                   config.bake_s)
        judge = RolloutJudge(rollouts, config.judge_s, config.auto_promote, config.rollout_webhook)
        shadow = ShadowRunner(manager, samples, controller.canary.shadow_share)
        return cls(repo, manager, controller, commands, rollouts, judge, shadow, signatures)

    def start(self) -> None:
        self.controller.start()
        self.judge.start()

    def wait_first_pass(self, timeout: float) -> bool:
        """Wait until the first pass has ended: a version serves, or none could (True), or `timeout`."""
        return self.controller.loop.first_pass.wait(timeout)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the lifecycle threads (the judge, the shadow reader, the controller) and free the models
        while the interpreter is whole; False (models kept) if a load or a shadow reading is still running
        after `timeout`: freeing them under it is not safe."""
        self.judge.stop(timeout)
        shadow_stopped = self.shadow.stop(timeout)
        if not self.controller.stop(timeout) or not shadow_stopped:
            return False
        self.manager.shutdown()
        return True

    def hold(self) -> AbstractContextManager[LoadedModel]:
        """The serving model, held until the block ends (raises NotReadyError while none has loaded)."""
        return self.manager.acquire()

    def hold_routed(self, client_key: str) -> AbstractContextManager[tuple[LoadedModel, bool]]:
        """(the model for this client's requests, whether it is the canary), held until the block ends."""
        return self.manager.acquire_routed(client_key)

    @property
    def active(self) -> LoadedModel | None:
        return self.manager.active

    def shadow_ticket(self) -> ShadowTicket | None:
        """A ticket if this request (answered by the stable version) is also to be read by the candidate."""
        return self.shadow.ticket()

    def read_in_shadow(self, ticket: ShadowTicket, options: Any) -> None:
        """Have the candidate read the ticket's pages in the background, for the judge only."""
        self.shadow.submit(ticket, options)

    def observe(self, version: str, sample: Sample) -> None:
        """File an answered request's sample with its canary arm, while a canary runs here."""
        arm = self.controller.canary.arm(version)
        if arm is not None:
            self.rollouts.reports.samples.add(arm[0], arm[1], version, sample)

    def observe_feedback(self, version: str, accuracy: float) -> None:
        """File a feedback's accuracy (1 - CER) with its canary arm, while a canary runs here."""
        arm = self.controller.canary.arm(version)
        if arm is not None:
            self.rollouts.reports.samples.add_feedback(arm[0], arm[1], version, accuracy)

    def report(self, version: str) -> dict[str, Any]:
        """The A/B report of `version`'s canary: the stored one, or the judge's reading while it runs."""
        stored = self.rollouts.reports.load(version)
        rollout, _ = self.rollouts.store.read()
        if rollout is not None and rollout.candidate == version:
            return self.rollouts.reports.build(rollout, self.rollouts.reports.judge(rollout), "in_progress", "")
        if stored is None:
            raise Refused("not_found", "report_not_found", f"version {version} has no A/B report (it was never "
                          "in canary, or its report was not kept)")
        return stored

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
        held = (self.manager.active, self.manager.candidate)
        return version in self.repo.version_names() or any(model is not None and version == model.version
                                                           for model in held)
