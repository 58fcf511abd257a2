"""server.cpu_quota: the CPUs a container may use, from fake cgroup trees and from a real cgroup v1 quota.

The fake trees are what the kernel shows in each setup: cgroup v2 inside a container (a cgroup
namespace: the container's cgroup is "/"), cgroup v2 on a host (nested paths, a limit on an ancestor),
cgroup v1 (the `cpu` controller mounted with its own root), and both at once (hybrid).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from server.config import Settings
from server.cpu_quota import cgroup_cpu_quota, cpu_budget, quota_from_cfs, quota_from_cpu_max
from tests.support.server import ROOT

V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


def _tree(root: Path, proc_cgroup: str, mountinfo: str, files: dict[str, str]) -> Path:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(proc_cgroup)
    (root / "proc/self/mountinfo").write_text(mountinfo)
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


@pytest.mark.parametrize(("text", "cpus"), [
    ("200000 100000\n", 2.0), ("150000 100000", 1.5), ("50000 100000", 0.5),
    ("max 100000\n", None), ("", None), ("garbage", None), ("-1 100000", None), ("100000 0", None),
])
def test_cpu_max_is_parsed(text: str, cpus: float | None) -> None:
    assert quota_from_cpu_max(text) == cpus


@pytest.mark.parametrize(("quota", "period", "cpus"), [
    ("400000\n", "100000\n", 4.0), ("-1\n", "100000\n", None), ("x", "100000", None), ("50000", "100000", 0.5),
])
def test_cfs_quota_is_parsed(quota: str, period: str, cpus: float | None) -> None:
    assert quota_from_cfs(quota, period) == cpus


def test_v2_inside_a_container(tmp_path: Path) -> None:
    """A cgroup namespace: the process sits at "/" and its limit is in the mount's top cpu.max."""
    root = _tree(tmp_path, "0::/\n", V2_MOUNT, {"sys/fs/cgroup/cpu.max": "200000 100000\n"})
    assert cgroup_cpu_quota(root) == 2.0
    budget = cpu_budget(root, affinity=64)
    assert (budget.cpus, budget.affinity, budget.quota) == (2, 64, 2.0)


def test_v2_unlimited_keeps_the_affinity(tmp_path: Path) -> None:
    root = _tree(tmp_path, "0::/\n", V2_MOUNT, {"sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(root) is None
    assert cpu_budget(root, affinity=16).cpus == 16


def test_v2_the_tightest_ancestor_wins(tmp_path: Path) -> None:
    """On a host: the pod's cgroup allows 3 CPUs, the container's none of its own."""
    pod = "sys/fs/cgroup/kubepods.slice/kubepods-pod1.slice"
    root = _tree(tmp_path, "0::/kubepods.slice/kubepods-pod1.slice/cri-abc.scope\n", V2_MOUNT, {
        "sys/fs/cgroup/kubepods.slice/cpu.max": "max 100000\n",
        f"{pod}/cpu.max": "300000 100000\n",
        f"{pod}/cri-abc.scope/cpu.max": "max 100000\n",
    })
    assert cgroup_cpu_quota(root) == 3.0
    assert cpu_budget(root, affinity=32).cpus == 3


def test_a_fractional_quota_rounds_down_to_at_least_one(tmp_path: Path) -> None:
    root = _tree(tmp_path, "0::/\n", V2_MOUNT, {"sys/fs/cgroup/cpu.max": "150000 100000\n"})
    assert cpu_budget(root, affinity=8).cpus == 1
    (root / "sys/fs/cgroup/cpu.max").write_text("50000 100000\n")
    assert cpu_budget(root, affinity=8).cpus == 1


def test_a_quota_above_the_affinity_does_not_add_cpus(tmp_path: Path) -> None:
    root = _tree(tmp_path, "0::/\n", V2_MOUNT, {"sys/fs/cgroup/cpu.max": "800000 100000\n"})
    assert cpu_budget(root, affinity=2).cpus == 2


def test_v1_cpu_controller_with_its_own_mount_root(tmp_path: Path) -> None:
    """Docker on cgroup v1 without a cgroup namespace: /proc/self/cgroup names the full path, and the
    container's cgroup is what is mounted at /sys/fs/cgroup/cpu,cpuacct."""
    container = "/docker/0123abcd"
    mountinfo = (f"40 31 0:35 {container} /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
                 f"41 31 0:36 {container} /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n")
    root = _tree(tmp_path, f"5:memory:{container}\n4:cpu,cpuacct:{container}\n", mountinfo, {
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "250000\n",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })
    assert cgroup_cpu_quota(root) == 2.5
    assert cpu_budget(root, affinity=48).cpus == 2


def test_v1_no_quota(tmp_path: Path) -> None:
    mountinfo = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    root = _tree(tmp_path, "1:cpu:/\n", mountinfo, {
        "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n", "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
    })
    assert cgroup_cpu_quota(root) is None


def test_hybrid_takes_the_tighter_of_v1_and_v2(tmp_path: Path) -> None:
    """Both hierarchies mounted (as on this project's machine): each may hold a quota."""
    mountinfo = ("32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
                 "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
    root = _tree(tmp_path, "1:cpu:/job\n0::/job\n", mountinfo, {
        "sys/fs/cgroup/cpu/job/cpu.cfs_quota_us": "300000", "sys/fs/cgroup/cpu/job/cpu.cfs_period_us": "100000",
        "sys/fs/cgroup/unified/job/cpu.max": "100000 100000",
    })
    assert cgroup_cpu_quota(root) == 1.0


def test_escaped_mount_points_and_paths_outside_the_mount(tmp_path: Path) -> None:
    """mountinfo escapes spaces as \\040; a path outside the mounted subtree falls back to its top."""
    mountinfo = "30 23 0:26 /outer /sys/fs/cgroup\\040v2 rw - cgroup2 cgroup2 rw\n"
    root = _tree(tmp_path, "0::/elsewhere/../x\n", mountinfo, {"sys/fs/cgroup v2/cpu.max": "400000 100000"})
    assert cgroup_cpu_quota(root) == 4.0


@pytest.mark.parametrize("files", [{}, {"proc/self/cgroup": "0::/\n"}])
def test_missing_files_mean_no_known_limit(tmp_path: Path, files: dict[str, str]) -> None:
    for relative, content in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(content)
    assert cgroup_cpu_quota(tmp_path) is None
    assert cpu_budget(tmp_path, affinity=3).cpus == 3


def test_malformed_files_are_ignored(tmp_path: Path) -> None:
    root = _tree(tmp_path, "nonsense\n0::/\n", "not a mountinfo line\n" + V2_MOUNT,
                 {"sys/fs/cgroup/cpu.max": "lots\n"})
    assert cgroup_cpu_quota(root) is None


def _cgroup_v1_cpu() -> Path | None:
    base = Path("/sys/fs/cgroup/cpu")
    if os.geteuid() != 0 or not (base / "cpu.cfs_quota_us").is_file() or not os.access(base, os.W_OK):
        return None
    return base


@pytest.mark.skipif(_cgroup_v1_cpu() is None, reason="needs root and a writable cgroup v1 cpu hierarchy")
def test_a_real_cfs_quota_sizes_the_math_threads() -> None:
    """A child process in a real cgroup with a 1-CPU quota derives 1 math thread for 1 worker, whatever
    the machine's cores (the affinity is left alone: only the quota limits it)."""
    cgroup = _cgroup_v1_cpu() / f"ocr-test-{uuid.uuid4().hex[:8]}"  # type: ignore[operator]
    cgroup.mkdir()
    try:
        (cgroup / "cpu.cfs_period_us").write_text("100000")
        (cgroup / "cpu.cfs_quota_us").write_text("100000")
        code = ("import os; from server.config import Settings; from server.cpu_quota import cpu_budget; "
                "b = cpu_budget(); print(b.cpus, b.quota, len(os.sched_getaffinity(0)), "
                "Settings.from_env({'OCR_WORKERS': '1'}).effective_cpu_threads)")
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
            preexec_fn=lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid())),
        ).stdout.split()
        assert out[:2] == ["1", "1.0"] and out[3] == "1", out
        outside = Settings.from_env({"OCR_WORKERS": "1"}).effective_cpu_threads
        assert outside == len(os.sched_getaffinity(0)) or cpu_budget().quota is not None
    finally:
        cgroup.rmdir()
