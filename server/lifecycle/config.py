"""The lifecycle's settings: its share of `server.config.Settings` (which says what each one means),
built by the HTTP layer's wiring, so that nothing in the lifecycle reads the environment."""

from __future__ import annotations

from dataclasses import dataclass

from server.quality.gate import GatePolicy
from server.quality.judge import JudgePolicy


@dataclass(frozen=True)
class LifecycleConfig:
    """The lifecycle's settings (`server.config.Settings` says what each means)."""

    poll_s: float
    debounce_s: float
    settle_s: float
    gate: GatePolicy
    warmup_shapes: tuple[tuple[int, int], ...]
    drain_timeout_s: float
    probe_timeout_s: float = 600.0
    require_signature: bool = False
    recheck_s: float = 0.0  # 0: the serving version is not checked again
    judge: JudgePolicy = JudgePolicy()
    judge_s: float = 0.0  # 0: no judge
    auto_promote: bool = False
    rollout_webhook: str = ""
    promote_requires_report: bool = False
    rollout_mode: str = ""  # "canary": new versions enter as canaries of `rollout_percent`
    rollout_percent: float = 10.0
    bake_s: float = 0.0  # after a promotion, the previous version stays loaded this long (0: no bake)
