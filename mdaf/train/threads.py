"""How many CPU threads training uses: the CPUs this process may actually run on.

torch's default is the number of physical cores of the whole host, whatever the process's CPU
affinity or its container's CPU quota says. With more threads than CPUs, every parallel op waits at
its closing barrier for a thread that is not running, and a training step made of many small ops
slows down far beyond the CPU share it lost (the issue behind this module measured 20x). So the
default here is the CPUs the process can really use: the physical cores in its affinity mask,
capped by a cgroup CPU quota. An explicit request wins, then ``OMP_NUM_THREADS``, then
``MKL_NUM_THREADS`` (the variables torch itself reads).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cpus() -> set[int]:
    """The logical CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def physical_cores(cpus: set[int], sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """Distinct physical cores among ``cpus`` (SMT siblings count once); ``len(cpus)`` where the
    topology is not readable (not Linux)."""
    cores = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return len(cpus)
        cores.add((package, core))
    return len(cores)


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None when there is none.

    cgroup v2: ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD"); v1: ``cpu.cfs_quota_us`` (-1: none) over
    ``cpu.cfs_period_us``. The smallest quota on the path from the process's cgroup up to the root
    applies; a container usually sees its own cgroup as the root.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: the unified hierarchy
            base, read = root, _v2_quota
        elif "cpu" in controllers.split(","):
            base, read = root / controllers, _v1_quota
            if not base.is_dir():  # v1 mounts cpu and cpuacct together as "cpu,cpuacct"
                base = root / "cpu"
        else:
            continue
        directory = base / path.lstrip("/")
        for folder in (directory, *directory.parents):
            quota = read(folder)
            if quota is not None:
                quotas.append(quota)
            if folder == base:
                break
    return min(quotas) if quotas else None


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def available_cpus() -> int:
    """Physical cores in the affinity mask, capped by the cgroup quota rounded down (a thread beyond
    the quota is throttled, and the others wait for it at every barrier); at least 1."""
    cores = physical_cores(affinity_cpus())
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, math.floor(quota))
    return max(1, cores)


def choose_num_threads(
    requested: int | None = None, environ: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """(thread count, where it came from): ``requested`` (``--num-threads``), else ``OMP_NUM_THREADS``,
    else ``MKL_NUM_THREADS``, else :func:`available_cpus`. A variable's first entry counts (OpenMP
    allows a per-level list such as "4,2"); one that is not a positive integer is a ValueError naming
    the variable."""
    if requested is not None:
        return requested, "--num-threads"
    environ = os.environ if environ is None else environ
    for name in THREAD_VARIABLES:
        text = environ.get(name, "").split(",")[0].strip()
        if text:
            if not text.isdigit() or int(text) < 1:
                raise ValueError(f"{name}: expected a positive integer thread count, got {environ[name]!r}")
            return int(text), name
    return available_cpus(), "physical cores in the CPU affinity, capped by the cgroup CPU quota"


def set_num_threads(requested: int | None = None) -> tuple[int, str]:
    """Choose the thread count (see :func:`choose_num_threads`), give it to torch, and return it."""
    count, source = choose_num_threads(requested)
    torch.set_num_threads(count)
    return count, source
