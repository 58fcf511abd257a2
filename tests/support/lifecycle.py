"""Support for the model-lifecycle tests: versions that read differently, a golden set, a check for
the load generator and an admin client. Everything is real: versions are real PP-OCRv4 weights published with the real
publishing code, load is real HTTP against real Gunicorn workers.

How versions are told apart by behaviour: every variant has the default version's weights, but its
dictionary permutes the ten digit classes (variant k reads the digit printed as d as `perm(k)[d]`).
A page with the line "0123456789" therefore reads differently on every variant, while a golden set
without digits reads identically - so each variant passes the quality gate, yet every response says
by its text which version produced it. A variant with the whole dictionary rotated by one reads
garbage and must be rejected by the gate.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import requests

from server.repository.layout import ModelRepository
from server.repository.manifest import read_manifest
from server.repository.publish import publish
from tests.support.images import encode, render_text, squash
from tests.support.load import Check

DIGITS = "0123456789"
LOAD_LINES = ["TOTAL DUE", DIGITS]
GOLDEN_PAGES = {
    "payment": ["CASH PAYMENT RECEIVED", "INVOICE COPY"],
    "totals": ["SUBTOTAL TAX", "THANK YOU"],
}
ADMIN_TOKEN = "test-admin-token"


def digit_permutation(k: int) -> str:
    """What variant k reads for "0123456789": rotations for k < 10, reversed rotations for 10 <= k < 20."""
    if not 0 <= k < 20:
        raise ValueError("variants 0..19 are distinct")
    if k < 10:
        return "".join(str((d + k) % 10) for d in range(10))
    return "".join(str((9 - d + k) % 10) for d in range(10))


def expected_text(k: int) -> str:
    return "\n".join([LOAD_LINES[0], digit_permutation(k)])


def make_source(
    base_version_dir: Path, dest: Path, k: int = 0, rotate_all: bool = False, swap: str = ""
) -> Path:
    """A publishable source folder: the base version's files and manifest, with its dictionary's digits
    permuted as variant `k` - or, with `rotate_all`, every class shifted by one (reads garbage), or with
    `swap="AE"` two letters exchanged (reads a little worse)."""
    shutil.copytree(base_version_dir, dest)
    manifest = read_manifest(dest)
    dict_path = dest / str(manifest.stages["rec"].dict)
    lines = dict_path.read_text(encoding="utf-8").splitlines()
    if rotate_all:
        lines = lines[1:] + lines[:1]
    elif swap:
        first, second = lines.index(swap[0]), lines.index(swap[1])
        lines[first], lines[second] = lines[second], lines[first]
    elif k:
        perm = digit_permutation(k)
        positions = {d: lines.index(d) for d in DIGITS}
        for d, index in positions.items():
            lines[index] = perm[int(d)]
    dict_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def publish_variant(base_version_dir: Path, repo_root: Path, version: str, k: int, work: Path) -> Path:
    """Publish digit variant `k` as `version` (through the publishing code, atomically)."""
    source = make_source(base_version_dir, work / f"src-{version}", k)
    return publish(source, ModelRepository(repo_root), version, created_by="tests")


def write_golden_set(directory: Path) -> Path:
    """A letters-only golden set (digit variants read it identically)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, lines in GOLDEN_PAGES.items():
        (directory / f"{name}.png").write_bytes(encode(render_text(lines)))
        (directory / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def load_image() -> bytes:
    return encode(render_text(LOAD_LINES))


def expect_versions(expected: dict[str, str]) -> Check:
    """A check for `LoadGenerator`: a 200 from a version in `expected` (version -> text; tests add
    versions as they publish them) that read that version's text."""

    def check(response: requests.Response) -> str:
        version = response.headers.get("X-Model-Version")
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {response.text[:300]}"
        if version not in expected:
            return f"served by unexpected version {version!r}"
        text = "\n".join(line["text"] for line in response.json()["results"][0]["lines"])
        if squash(text) != squash(expected[version]):
            return f"version {version} read {text!r}, expected {expected[version]!r}"
        return ""

    return check


class Admin:
    """The admin API over HTTP, with the bearer token."""

    def __init__(self, url: str, token: str = ADMIN_TOKEN) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> Any:
        response = requests.get(f"{self.url}{path}", headers=self.headers, timeout=120)
        assert response.status_code == 200, response.text
        return response.json()

    def models(self) -> dict[str, Any]:
        return self.get("/v1/models")

    def version(self, name: str) -> dict[str, Any] | None:
        return next((v for v in self.models()["versions"] if v["version"] == name), None)

    def activate(self, version: str) -> requests.Response:
        return requests.post(f"{self.url}/v1/models/{version}/activate", headers=self.headers, timeout=30)

    def unpin(self) -> requests.Response:
        return requests.delete(f"{self.url}/v1/models/pin", headers=self.headers, timeout=30)

    def rollback(self) -> requests.Response:
        return requests.post(f"{self.url}/v1/models/rollback", headers=self.headers, timeout=30)

    def canary(self, version: str, percent: float = 0, shadow_percent: float = 0) -> requests.Response:
        body = {name: value for name, value in (("percent", percent), ("shadow_percent", shadow_percent)) if value}
        return requests.post(f"{self.url}/v1/models/{version}/canary", json=body, headers=self.headers, timeout=30)

    def abort(self, version: str, reason: str = "") -> requests.Response:
        return requests.post(f"{self.url}/v1/models/{version}/abort", json={"reason": reason} if reason else None,
                             headers=self.headers, timeout=30)

    def promote(self, version: str) -> requests.Response:
        return requests.post(f"{self.url}/v1/models/{version}/promote", headers=self.headers, timeout=30)

    def report(self, version: str) -> dict[str, Any]:
        return self.get(f"/v1/models/{version}/report")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll until `predicate()` is truthy; returns its value. Fails with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def serving_versions(admin: Admin) -> dict[int, str | None]:
    return {w["slot"]: w["serving"] for w in admin.models()["workers"]}


def wait_converged(admin: Admin, worker_pids: list[int], version: str, bound_s: float, drained: bool = False) -> float:
    """Wait until every live worker (exactly the server's worker processes) serves `version` and none is
    loading (and, with `drained`, none still holds a replaced version); returns the seconds it took,
    failing if that exceeds `bound_s`."""
    started = time.monotonic()

    def converged() -> bool:
        workers = admin.models()["workers"]
        return (sorted(w["pid"] for w in workers) == sorted(worker_pids)
                and all(w["serving"] == version and w["loading"] is None and not (drained and w["draining"])
                        for w in workers))

    wait_for(converged, bound_s, f"every worker to serve {version}")
    return time.monotonic() - started


def audit_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def corrupt(path: Path, seed: int = 7) -> None:
    """Overwrite a file with random bytes of the same size."""
    rng = random.Random(seed)
    path.write_bytes(bytes(rng.getrandbits(8) for _ in range(path.stat().st_size)))
