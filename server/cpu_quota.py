"""How many CPUs this process may really use: its CPU affinity, capped by a cgroup CPU quota.

In a container with a CPU limit (Kubernetes `resources.limits.cpu`, `docker run --cpus`), the kernel
enforces the limit as a CFS bandwidth quota, not by hiding cores: `os.sched_getaffinity` and
`os.cpu_count` still report every core of the node. A server that sized its math-library threads from
those would run, say, 64 oneDNN threads under a 2-CPU quota and spend most of each 100 ms period
throttled. The quota lives in the cgroup files:

- cgroup v2: `cpu.max`, "QUOTA PERIOD" in microseconds, or "max PERIOD" for no limit;
- cgroup v1: `cpu.cfs_quota_us` (-1 for no limit) and `cpu.cfs_period_us`, in the `cpu` hierarchy.

A limit on any ancestor cgroup applies too (a Kubernetes pod's cgroup holds the sum of its containers'),
so the tightest quota from this process's cgroup up to the hierarchy's mount point wins. A fractional
quota is rounded down (at least 1): a thread more than the quota pays for is throttled at the end of
every period, which stalls a whole parallel region, so whole-CPU limits are what to give this server.

Everything is read relative to a `root` directory, so tests feed it fake `/proc` and `/sys` trees. A
file that is missing or malformed means "no limit known here": the server falls back to its affinity
rather than refusing to start over a kernel detail.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuBudget:
    """What the process may use: `cpus` is what to size threads by; the rest says where it came from."""

    cpus: int
    affinity: int
    quota: float | None  # CPUs granted by the tightest CFS quota, None when there is none


def quota_from_cpu_max(text: str) -> float | None:
    """CPUs granted by a cgroup v2 `cpu.max` ("150000 100000" is 1.5), None for "max" or a bad file."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    return _ratio(parts[0], parts[1])


def quota_from_cfs(quota_text: str, period_text: str) -> float | None:
    """CPUs granted by cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, None for -1 or a bad file."""
    return _ratio(quota_text.strip(), period_text.strip())


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:  # v1 writes -1 for "no limit"
        return None
    return quota_us / period_us


@dataclass(frozen=True)
class _Mount:
    point: Path  # where the hierarchy is mounted
    root: str  # which cgroup of the hierarchy appears at `point` ("/" unless in a cgroup namespace)


def _cgroup_mounts(mountinfo: str) -> tuple[list[_Mount], list[_Mount]]:
    """(cgroup v2 mounts, cgroup v1 mounts of the `cpu` controller) from /proc/self/mountinfo."""
    v2: list[_Mount] = []
    v1_cpu: list[_Mount] = []
    for line in mountinfo.splitlines():
        # "36 25 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct"
        fields, sep, tail = line.partition(" - ")
        before, after = fields.split(), tail.split()
        if not sep or len(before) < 5 or len(after) < 3:
            continue
        mount = _Mount(point=Path(_unescape(before[4])), root=_unescape(before[3]))
        if after[0] == "cgroup2":
            v2.append(mount)
        elif after[0] == "cgroup" and "cpu" in after[2].split(","):
            v1_cpu.append(mount)
    return v2, v1_cpu


def _unescape(path: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (\\040 ...)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def _cgroup_paths(proc_cgroup: str) -> tuple[str | None, str | None]:
    """(cgroup v2 path, cgroup v1 `cpu` path) of this process, from /proc/self/cgroup."""
    v2 = v1_cpu = None
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, sep, path = rest.partition(":")
        if not sep:
            continue
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1_cpu = path
    return v2, v1_cpu


def _levels(root: Path, mount: _Mount, cgroup_path: str) -> list[Path]:
    """The directories of this cgroup and its ancestors up to the mount point, innermost first."""
    relative = Path(cgroup_path)
    try:
        relative = relative.relative_to(mount.root)
    except ValueError:  # the process sits outside the mounted subtree (cgroup namespace): only the top
        relative = Path(".")
    if ".." in relative.parts:
        relative = Path(".")
    top = root / mount.point.relative_to("/")
    levels = [top / relative]
    while levels[-1] != top:
        levels.append(levels[-1].parent)
    return levels


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def cgroup_cpu_quota(root: Path = Path("/")) -> float | None:
    """CPUs granted by the tightest CFS quota on this process's cgroups (v1 and v2), None if none."""
    proc_cgroup = _read(root / "proc/self/cgroup")
    mountinfo = _read(root / "proc/self/mountinfo")
    if proc_cgroup is None or mountinfo is None:
        return None
    v2_path, v1_path = _cgroup_paths(proc_cgroup)
    v2_mounts, v1_mounts = _cgroup_mounts(mountinfo)
    quotas: list[float] = []
    if v2_path is not None:
        for mount in v2_mounts:
            for level in _levels(root, mount, v2_path):
                text = _read(level / "cpu.max")
                quota = quota_from_cpu_max(text) if text is not None else None
                if quota is not None:
                    quotas.append(quota)
    if v1_path is not None:
        for mount in v1_mounts:
            for level in _levels(root, mount, v1_path):
                quota_text, period_text = _read(level / "cpu.cfs_quota_us"), _read(level / "cpu.cfs_period_us")
                quota = quota_from_cfs(quota_text, period_text) if quota_text and period_text else None
                if quota is not None:
                    quotas.append(quota)
    return min(quotas) if quotas else None


def cpu_budget(root: Path = Path("/"), affinity: int | None = None) -> CpuBudget:
    """The CPUs to size threads by: the affinity (default: this process's), capped by the cgroup quota."""
    if affinity is None:
        try:
            affinity = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            affinity = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    cpus = affinity if quota is None else min(affinity, max(1, math.floor(quota)))
    return CpuBudget(cpus=cpus, affinity=affinity, quota=quota)
