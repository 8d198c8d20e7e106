"""Thread count: an explicit request, then OMP_NUM_THREADS / MKL_NUM_THREADS, then the CPUs available."""

from __future__ import annotations

import pytest
import torch

from mdaf.train import threads
from mdaf.train.threads import cgroup_cpu_quota, choose_num_threads, physical_cores


def test_request_wins_then_omp_then_mkl(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 7)
    env = {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "5"}
    assert choose_num_threads(2, env) == (2, "--num-threads")
    assert choose_num_threads(None, env) == (3, "OMP_NUM_THREADS")
    assert choose_num_threads(None, {"MKL_NUM_THREADS": "5"}) == (5, "MKL_NUM_THREADS")
    assert choose_num_threads(None, {"OMP_NUM_THREADS": "4,2"})[0] == 4  # OpenMP's per-level list
    assert choose_num_threads(None, {})[0] == 7


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_thread_variable_names_it(value):
    with pytest.raises(ValueError, match="OMP_NUM_THREADS: expected a positive integer"):
        choose_num_threads(None, {"OMP_NUM_THREADS": value})


def test_set_num_threads_gives_torch_the_choice(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 1)
    try:
        assert threads.set_num_threads() == (1, choose_num_threads(None, {})[1])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_physical_cores_count_smt_siblings_once(tmp_path):
    for cpu, core in ((0, 0), (1, 0), (2, 1), (3, 1), (4, 2)):  # cpus 0/1 and 2/3 are siblings
        write(tmp_path / f"cpu{cpu}" / "topology" / "core_id", f"{core}\n")
        write(tmp_path / f"cpu{cpu}" / "topology" / "physical_package_id", "0\n")
    assert physical_cores({0, 1, 2, 3, 4}, tmp_path) == 3
    assert physical_cores({1, 3}, tmp_path) == 2
    assert physical_cores({0, 9}, tmp_path) == 2  # unreadable topology: every logical CPU counts


def test_cgroup_v2_quota_is_the_smallest_on_the_path(tmp_path):
    write(tmp_path / "proc_cgroup", "0::/job/step\n")
    write(tmp_path / "cg" / "cpu.max", "max 100000\n")
    write(tmp_path / "cg" / "job" / "cpu.max", "150000 100000\n")
    write(tmp_path / "cg" / "job" / "step" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc_cgroup") == pytest.approx(1.5)
    write(tmp_path / "cg" / "job" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc_cgroup") is None


def test_cgroup_v1_quota(tmp_path):
    write(tmp_path / "proc_cgroup", "4:memory:/x\n3:cpu,cpuacct:/box\n")
    write(tmp_path / "cg" / "cpu" / "box" / "cpu.cfs_quota_us", "300000\n")
    write(tmp_path / "cg" / "cpu" / "box" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc_cgroup") == pytest.approx(3.0)
    write(tmp_path / "cg" / "cpu" / "box" / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc_cgroup") is None


def test_available_cpus_rounds_a_quota_down(monkeypatch):
    monkeypatch.setattr(threads, "affinity_cpus", lambda: {0, 1, 2, 3})
    monkeypatch.setattr(threads, "physical_cores", lambda cpus: len(cpus))
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: 2.5)
    assert threads.available_cpus() == 2
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: 0.5)
    assert threads.available_cpus() == 1
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: None)
    assert threads.available_cpus() == 4
