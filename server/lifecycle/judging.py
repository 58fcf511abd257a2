"""The judge's loop: every `interval_s`, read the running canary's samples and act on the verdict.

Every worker runs one (a worker may die; the judge must not die with it). They read the same samples
(`server.quality.rollout_samples`) and apply the same pure rules (`server.quality.judge`), so they
agree; the one that acts first wins, under the rollout lock, and the others find the rollout ended:

    regressed, or expired (no verdict within the rollout's `max_minutes`)
              -> abort: traffic back to the stable version, the candidate rejected as rolled_back with
                 the rule that fired, a report, a metric, an audit record and the webhook (if any)
    passed    -> promote, when OCR_ROLLOUT_AUTO_PROMOTE is set; otherwise the verdict waits for a
                 releaser (`ocr_rollout_judge_verdict` and `GET /v1/models/<version>/report` show it)

During a bake (after a promotion, `OCR_ROLLOUT_BAKE_S`) the promoted version is judged against the
stable arm's recorded samples; a regression rolls it back (no load: the previous version is still
loaded), and the bake's end without one pins it (`complete_bake`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from typing import Any

from server.lifecycle.ab_report import epoch
from server.lifecycle.commands import Refused
from server.lifecycle.loop import PassLoop
from server.lifecycle.rollout import Rollout
from server.lifecycle.rollout_commands import JUDGE_ACTOR, RolloutCommands
from server.observability.metrics import ROLLOUT_VERDICT

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0
_VERDICT_VALUE = {"passed": 1, "pending": 0, "regressed": -1, "expired": -1}
# How often the samples of ended rollouts are pruned (`RolloutSamples.prune`).
PRUNE_EVERY_S = 3600.0


class RolloutJudge:
    def __init__(self, rollouts: RolloutCommands, interval_s: float, auto_promote: bool, webhook: str) -> None:
        self.rollouts = rollouts
        self.auto_promote = auto_promote
        self.webhook = webhook
        self.loop = PassLoop(self.check, interval_s, 0.0, name="rollout-judge") if interval_s > 0 else None
        self._pruned_at = time.time()  # the first pruning an hour after start

    def start(self) -> None:
        if self.loop is not None:
            self.loop.start()

    def stop(self, timeout: float = 30.0) -> bool:
        return self.loop.stop(timeout) if self.loop is not None else True

    def check(self) -> None:
        rollout, _ = self.rollouts.store.read()
        self._prune()
        if rollout is None:
            return
        judgement = self.rollouts.reports.judge(rollout)
        ROLLOUT_VERDICT.labels(version=rollout.candidate).set(_VERDICT_VALUE[judgement.decision])
        if judgement.decision in ("regressed", "expired"):
            self._act(rollout, judgement.decision, judgement.rule, judgement.metric or judgement.decision)
        elif rollout.phase == "bake" and time.time() >= epoch(rollout.bake_until):
            self._act(rollout, "baked", f"no regression against the recorded baseline until {rollout.bake_until}",
                      None)
        elif rollout.phase != "bake" and judgement.decision == "passed" and self.auto_promote:
            self._act(rollout, judgement.decision, judgement.rule, None)

    def _act(self, seen: Rollout, decision: str, rule: str, metric: str | None) -> None:
        with self.rollouts.store.lock():
            rollout, _ = self.rollouts.store.read()
            if rollout is None or rollout.key != seen.key:  # another worker acted first
                return
            outcome = "promoted" if decision in ("passed", "baked") else "rolled_back"
            try:
                if decision == "baked":
                    self.rollouts.complete_bake(rollout.candidate, actor=JUDGE_ACTOR)
                elif decision == "passed":
                    self.rollouts.promote(rollout.candidate, actor=JUDGE_ACTOR)
                else:
                    self.rollouts.abort(rollout.candidate, rule, actor=JUDGE_ACTOR, metric=metric or decision)
            except Refused as refused:
                log.error("the judge could not end the %s of %s (%s): %s", rollout.phase, rollout.candidate, outcome,
                          refused.message)
                return
        log.warning("%s of %s: %s (%s)", rollout.phase, rollout.candidate, outcome, rule)
        self._notify({"candidate": rollout.candidate, "stable": rollout.stable, "phase": rollout.phase,
                      "decision": outcome, "rule": rule,
                      "metric": metric, "report": self.rollouts.reports.load(rollout.candidate)})

    def _notify(self, event: dict[str, Any]) -> None:
        """POST the decision to the webhook, in the background: a slow receiver must not hold the judge."""
        if not self.webhook:
            return

        def send() -> None:
            request = urllib.request.Request(self.webhook, data=json.dumps(event).encode("utf-8"), method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
                    response.read()
            except OSError as exc:
                log.error("the rollout webhook %s failed: %s", self.webhook, exc)

        threading.Thread(target=send, name="rollout-webhook", daemon=True).start()

    def _prune(self) -> None:
        now = time.time()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        self.rollouts.reports.samples.prune(now)
