"""The A/B report of a canary: what was compared, what the judge found, what was decided and by whom.

Every production change comes with one. It is built from the rollout, the judge's reading of both arms'
samples (`server.quality.judge`) and both versions' standing verdicts (digests, signers, golden-set
gate), stored with the candidate as JSON and Markdown (`<state_dir>/<pipeline>/reports/<version>.json`,
`.md`), and its sha256 goes into the audit record of the decision, so the report an auditor reads can
be matched to the decision it justified. `GET /v1/models/<version>/report` answers the stored report,
or, while the canary runs, the judge's reading so far.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from server.lifecycle.rollout import Rollout
from server.lifecycle.verdicts import VerdictStore
from server.quality.judge import Judgement, JudgePolicy, judge
from server.quality.rollout_samples import RolloutSamples
from server.repository.manifest import now_iso
from server.storage.statefiles import StateFileError, read_json, write_json_atomic


class RolloutReports:
    def __init__(self, samples: RolloutSamples, directory: Path, policy: JudgePolicy, verdicts: VerdictStore,
                 digest_of: Callable[[str], str | None]) -> None:
        self.samples = samples
        self.directory = directory
        self.policy = policy
        self.verdicts = verdicts
        self.digest_of = digest_of

    def judge(self, rollout: Rollout) -> Judgement:
        arms = self.samples.arms(rollout.key)
        feedback = self.samples.feedback(rollout.key)
        now = time.time()
        baking = rollout.phase == "bake"
        expired = not baking and rollout.max_minutes > 0 and now - epoch(rollout.started_at) > rollout.max_minutes * 60
        return judge(arms["stable"], arms["canary"], feedback["stable"], feedback["canary"], self.policy, now,
                     self.samples.shadow(rollout.key), rollout.min_requests, expired, baseline=baking)

    def build(self, rollout: Rollout, judgement: Judgement, decision: str, decided_by: str) -> dict[str, Any]:
        """The report of `rollout` as it ends (or stands) with `decision` by `decided_by`."""
        return {
            "candidate": self._version(rollout.candidate),
            "stable": self._version(rollout.stable),
            "rollout": {"percent": rollout.percent, "shadow_percent": rollout.shadow_percent, "phase": rollout.phase,
                        "bake_until": rollout.bake_until,
                        "min_requests": rollout.min_requests, "max_minutes": rollout.max_minutes,
                        "started_at": rollout.started_at, "started_by": rollout.actor},
            "policy": {"max_regression": self.policy.max_regression, "alpha": self.policy.alpha,
                       "window_requests": self.policy.window_requests, "window_s": self.policy.window_s,
                       "windows": self.policy.windows, "max_error_rate": self.policy.max_error_rate},
            "samples": {arm: next((m.n_stable if arm == "stable" else m.n_candidate) for m in judgement.overall
                                  if m.metric == "error_rate") for arm in ("stable", "canary")},
            "judgement": judgement.to_json(),
            "shadow_agreement": next(m.to_json() for m in judgement.overall if m.metric == "shadow_agreement"),
            "decision": decision,
            "decided_by": decided_by,
            "decided_at": now_iso(),
        }

    def _version(self, name: str) -> dict[str, Any]:
        verdict = self.verdicts.get(name)
        signature = (verdict.signature or {}) if verdict else {}
        return {"version": name, "digest": self.digest_of(name), "signed_by": signature.get("key_id"),
                "signature": "verified" if signature.get("verified") else signature.get("problem"),
                "gate": verdict.gate if verdict else None}

    def save(self, report: dict[str, Any]) -> str:
        """Store `report` with its candidate (JSON and Markdown); returns the sha256 of the JSON stored."""
        name = report["candidate"]["version"]
        write_json_atomic(self.directory / f"{name}.json", report)
        (self.directory / f".{name}.md.tmp").write_text(markdown(report), encoding="utf-8")
        (self.directory / f".{name}.md.tmp").replace(self.directory / f"{name}.md")
        return report_digest(report)

    def load(self, version: str) -> dict[str, Any] | None:
        try:
            report = read_json(self.directory / f"{version}.json")
        except (StateFileError, OSError):
            return None
        return report if isinstance(report, dict) else None


def epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return time.time()  # a hand-written rollout without a start time never expires


def report_digest(report: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(report, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _number(value: Any, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1%}" if percent else f"{value:.4g}"


def markdown(report: dict[str, Any]) -> str:
    """The report for people: the same content as the JSON, one table per judged metric."""
    candidate, stable, judgement = report["candidate"], report["stable"], report["judgement"]
    lines = [
        f"# A/B report: {candidate['version']} against {stable['version']}",
        "",
        f"**Decision: {report['decision']}** by {report['decided_by']} at {report['decided_at']}: {judgement['rule']}",
        "",
        "| | stable | candidate |",
        "|---|---|---|",
        f"| version | {stable['version']} | {candidate['version']} |",
        f"| digest | `{stable['digest']}` | `{candidate['digest']}` |",
        f"| signed by | {stable['signed_by'] or '-'} ({stable['signature'] or '-'}) "
        f"| {candidate['signed_by'] or '-'} ({candidate['signature'] or '-'}) |",
        f"| golden-set CER | {_number((stable['gate'] or {}).get('cer'))} | {_number((candidate['gate'] or {}).get('cer'))} |",
        f"| samples | {report['samples']['stable']} | {report['samples']['canary']} |",
        "",
        f"Canary of {report['rollout']['percent']:g}% (shadow {report['rollout'].get('shadow_percent', 0):g}%) started by {report['rollout']['started_by']} at "
        f"{report['rollout']['started_at']}; bound {report['policy']['max_regression']:.0%}, "
        f"alpha {report['policy']['alpha']}, {report['policy']['windows']} consecutive windows of "
        f"{report['policy']['window_requests']} requests or {report['policy']['window_s']:g} s.",
        "",
        "| metric | stable | candidate | change | 95% interval | p-value | test | pass |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for metric in judgement["overall"]:
        interval = metric["interval"]
        rate = metric["metric"].endswith("_rate")
        shown = "-" if interval is None else f"{_number(interval[0], not rate)} .. {_number(interval[1], not rate)}"
        verdict = {True: "pass", False: "FAIL", None: "insufficient"}[metric["passed"]]
        lines.append(f"| {metric['metric']} | {_number(metric['stable'])} | {_number(metric['candidate'])} "
                     f"| {_number(metric['change'], not rate)} | {shown} | {_number(metric['p_value'])} "
                     f"| {metric['test']} | {verdict} |")
    lines += ["", f"Windows judged: {len(judgement['windows'])}; shadow readings: "
              f"{report['shadow_agreement']['n_candidate']} (agreement is the row shadow_agreement)."]
    return "\n".join(lines) + "\n"
