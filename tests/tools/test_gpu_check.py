"""mdaf_kernels.tools.gpu_check, the parts that run without a GPU."""

import sys
from pathlib import Path

import pytest
import torch

from mdaf_kernels.tools import gpu_check
from tests.tools.test_bench_results import gpu_results

REPO = Path(__file__).resolve().parents[2]


def test_refuses_without_cuda(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_refuses_outside_a_checkout(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu_check.main(["--repo", str(tmp_path)]) == 2
    assert "checkout" in capsys.readouterr().err


def test_finds_the_repo_from_inside_it(tmp_path):
    assert gpu_check.find_repo(REPO / "tests" / "tools") == REPO
    assert gpu_check.find_repo(tmp_path) is None


def test_arguments():
    args = gpu_check.parse_args(["--quick", "--skip-tests", "--repo", "/x", "--bench-timeout", "60"])
    assert args.quick and args.skip_tests and args.repo == Path("/x") and args.bench_timeout == 60
    defaults = gpu_check.parse_args([])
    assert not defaults.quick and defaults.tests_timeout + defaults.bench_timeout <= 9 * 60


def test_subprocess_env_drops_the_interpreter():
    base = {"TRITON_INTERPRET": "1", "MDAF_KERNELS_BACKEND": "torch", "PYTHONPATH": "/other", "HOME": "/h"}
    env = gpu_check.subprocess_env(REPO, quick=True, base=base)
    assert "TRITON_INTERPRET" not in env and "MDAF_KERNELS_BACKEND" not in env
    assert (
        env["PYTHONPATH"].split(":")[0] == str(REPO)
        and env["MDAF_BENCH_QUICK"] == "1"
        and env["HOME"] == "/h"
    )


def test_plan_runs_tests_then_benchmarks_or_the_pytest_free_fallback():
    args = gpu_check.parse_args([])
    steps = gpu_check.plan(args, REPO, have_pytest=True, env={})
    assert [s.name for s in steps] == ["tests", "benchmarks"]
    assert steps[0].argv[1:3] == ["-m", "pytest"] and steps[0].argv[-1] == "tests"
    assert "--benchmark-only" in steps[1].argv and steps[1].argv[-2:] == ["--bench-results", "replace"]
    files = [a for a in steps[1].argv if a.startswith("benchmarks/")]
    assert files[:2] == ["benchmarks/bench_models.py", "benchmarks/bench_activation_memory.py"]
    assert sorted(files) == sorted(f"benchmarks/{p.name}" for p in (REPO / "benchmarks").glob("bench_*.py"))
    filtered = gpu_check.plan(gpu_check.parse_args(["--bench-k", "models"]), REPO, have_pytest=True, env={})
    assert filtered[1].argv[-2:] == ["-k", "models"]
    assert [
        s.name for s in gpu_check.plan(gpu_check.parse_args(["--skip-tests"]), REPO, have_pytest=True, env={})
    ] == ["benchmarks"]
    fallback = gpu_check.plan(args, REPO, have_pytest=False, env={})
    assert len(fallback) == 1 and fallback[0].argv[-1].endswith("benchmarks/model_cases.py")


def test_pytest_summary_line():
    lines = ["....", "========= 3 passed, 1 skipped, 2 deselected in 12.34s =========", ""]
    assert gpu_check.pytest_summary(lines) == "3 passed, 1 skipped, 2 deselected"
    assert gpu_check.pytest_summary(["1 failed, 2 passed in 0.5s"]) == "1 failed, 2 passed"
    assert gpu_check.pytest_summary(["Traceback", "ImportError: x"]) == "ImportError: x"


def test_run_step_reports_exit_status_and_timeout(tmp_path):
    ok = gpu_check.Step("ok", [sys.executable, "-c", "print('7 passed in 0.01s')"], 60)
    assert gpu_check.run_step(ok, tmp_path) == gpu_check.StepResult(
        "ok", 0, pytest.approx(0, abs=60), "7 passed"
    )
    failing = gpu_check.run_step(
        gpu_check.Step("bad", [sys.executable, "-c", "raise SystemExit(3)"], 60), tmp_path
    )
    assert failing.returncode == 3 and not failing.ok
    slow = gpu_check.run_step(
        gpu_check.Step("slow", [sys.executable, "-c", "import time; time.sleep(60)"], 1), tmp_path
    )
    assert slow.returncode is None and slow.seconds < 30 and "timed out" in slow.summary


def test_report_prints_steps_then_the_target_table_last():
    steps = [
        gpu_check.StepResult("tests", 0, 100.0, "50 passed"),
        gpu_check.StepResult("benchmarks", None, 300.0, "t"),
    ]
    text = gpu_check.report(steps, gpu_results(150_000.0), ["device: NVIDIA H100 80GB HBM3"])
    assert "TIMEOUT" in text and "50 passed" in text
    lines = text.splitlines()
    assert lines[-5].startswith("target") and lines[-1].endswith("MISS") and lines[-2].endswith("PASS")
    assert gpu_check.report(steps, None, []).endswith("This run wrote no results file.")
