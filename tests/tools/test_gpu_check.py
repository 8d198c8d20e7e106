"""mdaf_kernels.tools.gpu_check, the parts that run without a GPU."""

import json
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
    args = gpu_check.parse_args(["--quick", "--skip-tests", "--repo", "/x", "--bench-timeout", "60",
                                 "--out", "/tmp/o"])
    assert args.quick and args.skip_tests and args.repo == Path("/x") and args.bench_timeout == 60
    assert args.out == Path("/tmp/o") and args.tests_timeout == gpu_check.QUICK_TIMEOUTS_S["tests"]
    assert args.cost_timeout == gpu_check.QUICK_TIMEOUTS_S["cost"]
    defaults = gpu_check.parse_args([])
    assert not defaults.quick and defaults.out is None
    assert defaults.tests_timeout + defaults.cost_timeout + defaults.bench_timeout <= 11 * 60
    # --quick: every step's share of the 5-minute budget.
    quick = gpu_check.parse_args(["--quick"])
    assert quick.tests_timeout + quick.cost_timeout + quick.bench_timeout <= gpu_check.QUICK_BUDGET_S
    # ... leaving room for the start-up and each step's grace after Ctrl-C within 5 minutes.
    assert gpu_check.QUICK_BUDGET_S + 3 * gpu_check.INTERRUPT_GRACE_S <= 290


def test_quick_runs_the_kernel_benches_first():
    files = gpu_check.bench_files(REPO, quick=True)
    assert files[:3] == ["benchmarks/bench_selective_scan.py", "benchmarks/bench_causal_conv1d.py",
                         "benchmarks/bench_models.py"]
    assert sorted(files) == sorted(gpu_check.bench_files(REPO))


def test_cost_step_targets_the_card_and_writes_into_the_out_dir(tmp_path):
    assert gpu_check.cost_target((9, 0)) == 90 and gpu_check.cost_target((8, 0)) == 80
    assert gpu_check.cost_target((12, 0)) is None
    step = gpu_check.cost_step(90, tmp_path, {}, 60)
    argv = step.argv
    assert argv[1:3] == ["-m", "mdaf_kernels.tools.compile_report"] and "--cost" in argv
    assert argv[argv.index("--targets") + 1] == "90" and step.timeout_s == 60
    assert argv[argv.index("--json") + 1] == str(tmp_path / "cost-rows.json")
    assert argv[argv.index("--markdown") + 1] == str(tmp_path / "cost-sm_90.md")


def _bench_row(group, mode, dtype, median, **info):
    return {"group": group, "params": {"variant": "triton", "mode": mode, "dtype_name": dtype},
            "time_s": {"median": median}, "extra_info": info}


def _cost_row(kernel, shape, bound_s, floor_s):
    return {"kernel": kernel, "costs": [{"shape": shape, "gpu": "H100 SXM", "bound_s": bound_s,
                                         "floor_s": floor_s}]}


def test_measured_over_bound_from_fake_timings():
    scan = dict(batch=2048, dim=128, seqlen=50, dstate=32)
    results = {"benchmarks": [
        _bench_row("selective_scan", "forward", "fp32", 600e-6, **scan),
        _bench_row("selective_scan", "forward_backward", "fp32", 3000e-6, **scan),
        _bench_row("causal_conv1d", "forward", "bf16", 40e-6, batch=2048, dim=128, seqlen=50, width=4),
        # the last-position mode against the last-position kernels' bounds
        _bench_row("selective_scan", "forward_backward_last_only", "fp32", 900e-6, **scan),
        # not costed: another variant, a shape without a bound, a row without a time
        {**_bench_row("selective_scan", "forward", "fp32", 1.0, **scan),
         "params": {"variant": "eager_reference"}},
        _bench_row("selective_scan", "forward", "fp32", 1.0, **dict(scan, seqlen=999)),
        {**_bench_row("selective_scan", "forward", "bf16", None, **scan), "time_s": None},
    ]}
    cost_rows = [
        _cost_row("selective_scan_fwd[fp32]", "B2048 D128 L50 N32", 500e-6, 100e-6),
        _cost_row("selective_scan_bwd[fp32]", "B2048 D128 L50 N32", 1500e-6, 150e-6),
        _cost_row("causal_conv1d_fwd[bf16,channel-last]", "B2048 D128 L50 W4", 20e-6, 16e-6),
        _cost_row("selective_scan_fwd[bf16]", "B2048 D128 L50 N32", 500e-6, 100e-6),
        _cost_row("selective_scan_fwd[fp32,lengths,last_only]", "B2048 D128 L50 N32", 200e-6, 100e-6),
        _cost_row("selective_scan_bwd[fp32,lengths,last_only]", "B2048 D128 L50 N32", 400e-6, 100e-6),
    ]
    table = gpu_check.measured_vs_bound(results, cost_rows)
    assert [row["name"] for row in table] == [
        "selective_scan forward fp32 B2048 D128 L50 N32",
        "selective_scan forward_backward fp32 B2048 D128 L50 N32",
        "causal_conv1d forward bf16 B2048 D128 L50 W4",
        "selective_scan forward_backward_last_only fp32 B2048 D128 L50 N32",
    ]
    assert [row["measured_over_bound"] for row in table] == pytest.approx([1.2, 1.5, 2.0, 1.5])
    assert table[1]["bound_s"] == pytest.approx(2000e-6)
    assert table[1]["measured_over_floor"] == pytest.approx(12)
    text = gpu_check.format_measured_vs_bound(table)
    assert "| selective_scan forward fp32 B2048 D128 L50 N32 | H100 SXM | 600.0 | 500.0 | 100.0 |" in text
    assert "| 600.0 | 500.0 | 100.0 | 1.20 | 6.00 |" in text
    assert "No scan or conv" in gpu_check.format_measured_vs_bound([])


def test_copy_results_into_the_out_dir(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "nvidia-h100.json").write_text("{}")
    (results / "README.md").write_text("# r")
    out = tmp_path / "out" / "nested"
    paths = [results / "nvidia-h100.json", results / "README.md", results / "missing"]
    copies = gpu_check.copy_results(paths, out)
    assert copies == [out / "nvidia-h100.json", out / "README.md"]
    assert (out / "README.md").read_text() == "# r"


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
    quick = gpu_check.plan(gpu_check.parse_args(["--quick"]), REPO, have_pytest=True, env={})
    assert quick[0].argv[-2:] == ["tests/ops", "tests/nn"]
    assert quick[0].timeout_s == gpu_check.QUICK_TIMEOUTS_S["tests"]
    assert all((REPO / path).is_dir() for path in gpu_check.QUICK_TEST_PATHS)
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
    text = gpu_check.report(steps, gpu_results(150_000.0), ["device: NVIDIA H100 80GB HBM3"], "| table |")
    assert "TIMEOUT" in text and "50 passed" in text and "lower bounds:\n| table |" in text
    lines = text.splitlines()
    assert lines[-5].startswith("target") and lines[-1].endswith("MISS") and lines[-2].endswith("PASS")
    assert gpu_check.report(steps, None, []).endswith("This run wrote no results file.")


def test_main_writes_every_result_file_into_out(monkeypatch, tmp_path, capsys):
    # A checkout with no tests or benches; the steps are faked as a GPU run would leave their files.
    repo = tmp_path / "repo"
    (repo / "benchmarks" / "results").mkdir(parents=True)
    (repo / "benchmarks" / "conftest.py").write_text("")
    (repo / "pyproject.toml").write_text('[project]\nname = "mdaf-kernels"\n')
    out = tmp_path / "out"
    device = "NVIDIA H100 80GB HBM3"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setattr(gpu_check.bench_results, "device_name", lambda *a: device)
    scan = dict(batch=2048, dim=128, seqlen=50, dstate=32)
    ran = []

    def fake_run_step(step, cwd):
        ran.append(step.name)
        if step.name == "cost model":
            rows = [_cost_row("selective_scan_fwd[fp32]", "B2048 D128 L50 N32", 500e-6, 100e-6)]
            Path(step.argv[step.argv.index("--json") + 1]).write_text(json.dumps(rows))
        elif step.name == "benchmarks":
            record = {**_bench_row("selective_scan", "forward", "fp32", 600e-6, **scan), "fullname": "scan"}
            gpu_check.bench_results.write_results(repo / "benchmarks" / "results", device,
                                                  [*gpu_results()["benchmarks"], record], {}, replace=True)
            (repo / "benchmarks" / "results" / "README.md").write_text("# results\n")
        return gpu_check.StepResult(step.name, 0, 1.0, "ok")

    monkeypatch.setattr(gpu_check, "run_step", fake_run_step)
    assert gpu_check.main(["--repo", str(repo), "--quick", "--out", str(out)]) == 0
    assert ran == ["tests", "cost model", "benchmarks"]
    names = {p.name for p in out.iterdir()}
    assert {"cost-rows.json", "measured-vs-bound.md", "gpu_check-summary.txt", "nvidia-h100-80gb-hbm3.json",
            "README.md"} <= names
    assert "| 600.0 | 500.0 | 100.0 | 1.20 | 6.00 |" in (out / "measured-vs-bound.md").read_text()
    summary = (out / "gpu_check-summary.txt").read_text()
    assert "sm_90 costed as an H100 SXM" in summary and summary.strip() in capsys.readouterr().out
