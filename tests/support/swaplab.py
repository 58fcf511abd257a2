"""A real server under load with versions published into it: what the hot-swap and signed-version tests share.

A `SwapLab` holds one Gunicorn server (`tests.support.server`), one `LoadGenerator` posting a page whose
text tells which version read it (`tests.support.lifecycle`), the expected text of every version that
may serve, and a side repository on the same filesystem where versions are published (and signed,
damaged ...) before being renamed into the served repository in one step. Every helper reads the state
it needs from the admin API, so tests that use one lab do not depend on each other's order.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from server.repository.layout import ModelRepository, is_version_name, parse_version
from server.repository.publish import publish
from tests.support.lifecycle import Admin, audit_lines, expected_text, make_source, wait_converged, wait_for
from tests.support.load import LoadGenerator
from tests.support.server import RunningServer

# Every worker must serve a newly preferred version within this many seconds. Generous: two workers
# load one after the other (one load at a time per machine) while 8 clients keep both cores busy.
CONVERGE_BOUND_S = 240.0


def audit_time(unix_time: float) -> str:
    """The audit log's time format, for comparisons."""
    return datetime.fromtimestamp(unix_time, timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class SwapLab:
    server: RunningServer
    admin: Admin
    load: LoadGenerator
    expected: dict[str, str]
    repo_root: Path
    state_dir: Path
    work: Path
    base: Path  # the default version's directory, source of every variant
    convergence_s: dict[str, float] = field(default_factory=dict)
    staged_versions: set[str] = field(default_factory=set)  # every version this lab has staged

    @property
    def pipeline(self) -> Path:
        return self.repo_root / "ppocr"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.log"

    def publish(self, *variants: tuple[str, int]) -> None:
        """Publish (version, k) variants; several appear together (staged, then renamed into place at once)."""
        staged = []
        for version, k in variants:
            self.expected[version] = expected_text(k)
            staged.append((self.stage(version, k), version))
        for path, version in staged:
            os.rename(path, self.pipeline / version)

    def stage(self, version: str, k: int = 0, rotate_all: bool = False, swap: str = "") -> Path:
        """A published copy of variant `k` in a side repository on the same filesystem, to be damaged and
        then renamed into the served repository in one step."""
        self.staged_versions.add(version)
        source = make_source(self.base, self.work / f"src-{version}", k, rotate_all, swap)
        return publish(source, ModelRepository(self.work / "staged"), version, created_by="tests")

    def converge(self, version: str) -> float:
        seconds = wait_converged(self.admin, self.server.worker_pids(), version, CONVERGE_BOUND_S)
        self.convergence_s[version] = round(seconds, 1)
        self.assert_served_now(version)
        return seconds

    def assert_served_now(self, version: str, requests: int = 8) -> None:
        """Requests sent from now on are answered by `version` (every worker has switched)."""
        start = time.monotonic()
        wait_for(lambda: len(self.load.between(start, time.monotonic())) >= requests, 120,
                 f"{requests} requests after the switch to {version}")
        served = {o.version for o in self.load.between(start, time.monotonic())}
        assert served == {version}, f"after converging on {version}, requests were served by {served}"

    def next_major(self) -> int:
        """A major version above every version on disk and every one staged before (a test may have
        deleted its version since): what a test publishes under it is new and the highest (so it is
        tried and, if good, served), whatever the tests before it left behind."""
        names = {p.name for p in self.pipeline.iterdir() if is_version_name(p.name)} | self.staged_versions
        return 1 + max(parse_version(name).major for name in names)

    def current(self) -> str:
        serving = {w["serving"] for w in self.admin.models()["workers"]}
        assert len(serving) == 1, f"workers disagree: {serving}"
        return serving.pop()

    def hold(self, version: str, seconds: float) -> None:
        """For `seconds`, every worker keeps serving `version` and loads nothing."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            workers = self.admin.models()["workers"]
            assert all(w["serving"] == version and w["loading"] is None for w in workers), workers
            time.sleep(0.5)

    def wait_verdict(self, version: str, timeout: float = 120) -> dict:
        """Wait until a worker's lifecycle pass has decided on `version` (the API then shows its verdict)."""
        return wait_for(lambda: (v := self.admin.version(version)) and v["verdict"] and v["state"] != "loading"
                        and v, timeout, f"a verdict on {version}")

    def events(self, action: str, version: str) -> list[dict]:
        return [e for e in audit_lines(self.audit_log) if e["action"] == action and e["version"] == version]


