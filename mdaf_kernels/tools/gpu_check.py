"""One-command GPU validation: tests without the interpreter, benchmarks, results file, summary.

    python -m mdaf_kernels.tools.gpu_check [--repo PATH] [--quick] [--skip-tests] [--out DIR]

On a CUDA machine, from a checkout of the repository (this is a developer tool: it runs the repo's
``tests/`` and ``benchmarks/`` in subprocesses, so it needs a checkout, not just the installed package):

1. ``python -m pytest tests -q`` with ``TRITON_INTERPRET`` and ``MDAF_KERNELS_BACKEND`` removed from the
   environment, so the kernels are compiled for the GPU;
2. ``python -m pytest benchmarks --benchmark-only --bench-results replace``, which writes
   ``benchmarks/results/<device-slug>.json`` and re-renders ``benchmarks/results/README.md``. Without
   pytest-benchmark, benchmarks/conftest.py stands in for it (timing with ``triton.testing.do_bench``);
   without pytest at all, ``benchmarks/model_cases.py`` times the whole-model cases alone;
3. ``python -m mdaf_kernels.tools.compile_report --cost`` for this card's compile target (sm_90 is
   costed as an H100 SXM, sm_80 as an A100 80GB): the static cost model's lower bounds, then a table
   of each measured scan and conv time (Triton, at the benchmark's shapes) over the model's bound
   for the same launches (forward: the forward kernel; forward_backward: both kernels);
4. prints the whole-model rows, their ratios and the GPU targets (PASS / MISS / N/A; a MISS does not
   fail the run) last.

``--out DIR`` copies every result file there (the results JSON and README, the cost table and rows,
the measured/bound table, the summary), so that a remote run can bring them back. ``--quick`` fits
the whole check in 5 minutes on an H100: only the kernel tests (``tests/ops``, ``tests/nn``: what a
GPU compiles differently), fewer benchmark rounds with the kernel benchmarks first, and each step cut
at its share of 230 s (tests 80 s, cost model 45 s, benchmarks 105 s): with the 20 s an overrunning
step gets to finish its results after Ctrl-C, at most 290 s, plus the start-up (a step cut short
keeps the rows it wrote and is reported as TIMEOUT).

Exit status: 0 when every step ran and passed, 1 when a step failed or timed out, 2 when it cannot
start (no CUDA device, no checkout). It does not import ``mdaf``: everything model-related runs in the
subprocesses.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mdaf_kernels.tools import bench_results

PROJECT_NAME = 'name = "mdaf-kernels"'
# Environment variables that would make the GPU run something other than the compiled kernels.
STRIPPED_ENV = ("TRITON_INTERPRET", "MDAF_KERNELS_BACKEND")
INTERRUPT_GRACE_S = 20.0
FIRST_BENCH_FILES = ("benchmarks/bench_models.py", "benchmarks/bench_activation_memory.py")
# --quick: the kernel benches first (the measured/bound table needs them), each step within its share
# of QUICK_BUDGET_S.
QUICK_FIRST_BENCH_FILES = ("benchmarks/bench_selective_scan.py", "benchmarks/bench_causal_conv1d.py",
                           "benchmarks/bench_models.py")
QUICK_BUDGET_S = 230.0
QUICK_TIMEOUTS_S = {"tests": 80.0, "cost": 45.0, "benchmarks": 105.0}
# --quick tests only what a GPU compiles: the kernels and the modules over them.
QUICK_TEST_PATHS = ("tests/ops", "tests/nn")
# Compile target of a card's compute capability; the cost model costs sm_90 and sm_80.
COST_TARGETS = {9: 90, 8: 80}
# Benchmark groups whose Triton rows the cost model times: group -> (kernel prefix, shape format).
COSTED_BENCH_GROUPS = {
    "selective_scan": ("selective_scan", "B{batch} D{dim} L{seqlen} N{dstate}", ""),
    # bench_causal_conv1d.py times x laid out as the Mamba block passes it: channel-last.
    "causal_conv1d": ("causal_conv1d", "B{batch} D{dim} L{seqlen} W{width}", ",channel-last"),
}


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout_s: float
    env: dict[str, str] = field(repr=False, default_factory=dict)


@dataclass
class StepResult:
    name: str
    returncode: int | None  # None: timed out
    seconds: float
    summary: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mdaf_kernels.tools.gpu_check",
        description="Run the test suite (compiled kernels, no interpreter) and the benchmarks on a CUDA "
        "device, write benchmarks/results/<device>.json and print a summary with the GPU targets. "
        "A developer tool: needs a checkout of the repository (--repo, or run it from inside one).",
    )
    parser.add_argument(
        "--repo",
        type=Path,
        default=None,
        help="repository checkout (default: search upward from the current directory)",
    )
    parser.add_argument("--quick", action="store_true",
                        help="within 5 minutes: the kernel tests only, fewer benchmark rounds "
                             "(MDAF_BENCH_QUICK=1), shorter step timeouts")
    parser.add_argument("--skip-tests", action="store_true", help="only run the benchmarks")
    parser.add_argument(
        "--bench-k",
        metavar="EXPR",
        default=None,
        help="only the benchmarks matching this pytest -k expression",
    )
    parser.add_argument("--tests-timeout", type=float, default=None,
                        help="seconds for the tests (240; 80 with --quick)")
    parser.add_argument("--bench-timeout", type=float, default=None,
                        help="seconds for the benchmarks (300; 105 with --quick)")
    parser.add_argument("--cost-timeout", type=float, default=None,
                        help="seconds for the cost model's compile (120; 45 with --quick)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="copy every result file into DIR (created if needed)")
    args = parser.parse_args(argv)
    defaults = QUICK_TIMEOUTS_S if args.quick else {"tests": 240.0, "cost": 120.0, "benchmarks": 300.0}
    args.tests_timeout = defaults["tests"] if args.tests_timeout is None else args.tests_timeout
    args.cost_timeout = defaults["cost"] if args.cost_timeout is None else args.cost_timeout
    args.bench_timeout = defaults["benchmarks"] if args.bench_timeout is None else args.bench_timeout
    return args


def find_repo(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding this project's pyproject.toml and benchmarks."""
    for candidate in (start.resolve(), *start.resolve().parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and (candidate / "benchmarks" / "conftest.py").is_file():
            if PROJECT_NAME in pyproject.read_text():
                return candidate
    return None


def subprocess_env(repo: Path, quick: bool, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    for name in STRIPPED_ENV:
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH")) if p)
    if quick:
        env["MDAF_BENCH_QUICK"] = "1"
    return env


def bench_files(repo: Path, quick: bool = False) -> list[str]:
    """The bench files, whole-model ones first so that a run cut short by its timeout has the targets
    (with ``quick``, the scan and conv benches before them, for the measured/bound table)."""
    files = sorted(p.relative_to(repo).as_posix() for p in (repo / "benchmarks").glob("bench_*.py"))
    first = [f for f in (QUICK_FIRST_BENCH_FILES if quick else FIRST_BENCH_FILES) if f in files]
    return first + [f for f in files if f not in first]


def cost_target(capability: tuple[int, int]) -> int | None:
    """The compile target the cost model costs for a card of this compute capability, if any."""
    return COST_TARGETS.get(capability[0])


def cost_step(target: int, out_dir: Path, env: dict[str, str], timeout_s: float) -> Step:
    """The cost model for the scan and conv kernels on ``target``, rows and table written to ``out_dir``."""
    argv = [sys.executable, "-m", "mdaf_kernels.tools.compile_report", "--ops", "selective_scan",
            "causal_conv1d", "--targets", str(target), "--cost", "--jobs", str(min(8, os.cpu_count() or 1)),
            "--json", str(out_dir / "cost-rows.json"), "--markdown", str(out_dir / f"cost-sm_{target}.md")]
    return Step("cost model", argv, timeout_s, env)


def measured_vs_bound(results: dict, cost_rows: list[dict]) -> list[dict]:
    """Each Triton scan / conv benchmark row's median time over the cost model's bound for the same
    launches: the forward kernel for ``forward`` rows, forward plus backward kernels for
    ``forward_backward`` rows (which time both); ``forward_backward_last_only`` rows against the
    last-position kernels' bounds (costed with lengths, which add one load per row). Rows whose
    launches the model did not cost are left out."""
    bounds = {(row["kernel"], cost["shape"]): cost for row in cost_rows for cost in row.get("costs", [])}
    table = []
    for record in results.get("benchmarks", []):
        params, info = record.get("params", {}), record.get("extra_info", {})
        if record.get("group") not in COSTED_BENCH_GROUPS or params.get("variant") != "triton":
            continue
        median = (record.get("time_s") or {}).get("median")
        prefix, shape_format, layout = COSTED_BENCH_GROUPS[record["group"]]
        try:
            shape = shape_format.format(**info)
        except KeyError:
            continue
        dtype = params.get("dtype_name", "")
        mode = params.get("mode", "")
        passes = ("fwd",) if mode == "forward" else ("fwd", "bwd")
        variant = ",lengths,last_only" if mode.endswith("_last_only") else ""
        costs = [bounds.get((f"{prefix}_{p}[{dtype}{layout}{variant}]", shape)) for p in passes]
        if median is None or None in costs:
            continue
        bound_s = sum(cost["bound_s"] for cost in costs)
        floor_s = sum(cost["floor_s"] for cost in costs)
        table.append({"name": f"{prefix} {params.get('mode')} {dtype} {shape}", "gpu": costs[0]["gpu"],
                      "measured_s": median, "bound_s": bound_s, "floor_s": floor_s,
                      "measured_over_bound": median / bound_s, "measured_over_floor": median / floor_s})
    return table


def format_measured_vs_bound(table: list[dict]) -> str:
    if not table:
        return "No scan or conv benchmark row matched a launch the cost model costed."
    lines = ["| row | model GPU | measured us | bound us | floor us | measured/bound | measured/floor |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['gpu']} | {r['measured_s'] * 1e6:.1f} | {r['bound_s'] * 1e6:.1f} | "
              f"{r['floor_s'] * 1e6:.1f} | {r['measured_over_bound']:.2f} | {r['measured_over_floor']:.2f} |"
              for r in table]
    return "\n".join(lines)


def copy_results(paths: list[Path], out_dir: Path) -> list[Path]:
    """Copy the existing files among ``paths`` into ``out_dir``; the copies' paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in paths:
        if path.is_file() and path.resolve().parent != out_dir.resolve():
            copies.append(Path(shutil.copy2(path, out_dir / path.name)))
        elif path.is_file():
            copies.append(path)
    return copies


def plan(args: argparse.Namespace, repo: Path, *, have_pytest: bool, env: dict[str, str]) -> list[Step]:
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if not have_pytest:
        fallback = [sys.executable, str(repo / "benchmarks" / "model_cases.py")]
        return [Step("benchmarks (model cases, no pytest)", fallback, args.bench_timeout, env)]
    tests = list(QUICK_TEST_PATHS) if args.quick else ["tests"]
    steps = [] if args.skip_tests else [Step("tests", [*pytest, *tests], args.tests_timeout, env)]
    bench = [*pytest, *bench_files(repo, args.quick), "--benchmark-only", "--bench-results", "replace"]
    if args.bench_k:
        bench += ["-k", args.bench_k]
    return [*steps, Step("benchmarks", bench, args.bench_timeout, env)]


_PYTEST_SUMMARY = re.compile(r"^=*\s*(\d+ (passed|failed|error|errors|skipped|deselected).*) in [\d.]+s")


def pytest_summary(lines: list[str]) -> str:
    """pytest's final "N passed, M failed ... in Xs" line, or the last line of output."""
    for line in reversed(lines):
        match = _PYTEST_SUMMARY.match(line.strip())
        if match:
            return match.group(1).strip(" =")
    return lines[-1].strip() if lines else ""


def run_step(step: Step, cwd: Path) -> StepResult:
    """Run ``step`` streaming its output; kill its process group when it overruns its timeout."""
    print(f"\n=== {step.name}: {' '.join(step.argv[1:])}", flush=True)
    start = time.monotonic()
    tail: deque[str] = deque(maxlen=200)
    process = subprocess.Popen(
        step.argv,
        cwd=cwd,
        env=step.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def pump() -> None:
        for line in process.stdout:
            sys.stdout.write(line)
            tail.append(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        returncode = process.wait(timeout=step.timeout_s)
    except subprocess.TimeoutExpired:
        # Ctrl-C first: pytest then finishes its session (the results written so far stay valid).
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        returncode = None
    reader.join(timeout=10)
    seconds = time.monotonic() - start
    summary = f"timed out after {step.timeout_s:.0f} s" if returncode is None else pytest_summary(list(tail))
    return StepResult(step.name, returncode, seconds, summary)


def report(step_results: list[StepResult], results: dict | None, notes: list[str],
           measured: str | None = None) -> str:
    """The closing summary: steps, the measured/bound table, then the results summary table with the
    targets (printed last)."""
    lines = ["", "=" * 30 + " gpu_check summary " + "=" * 30]
    lines += notes
    for r in step_results:
        status = "ok" if r.ok else ("TIMEOUT" if r.returncode is None else f"FAILED (exit {r.returncode})")
        lines.append(f"{r.name:<40} {status:<18} {r.seconds:6.0f} s  {r.summary}")
    lines.append("")
    if measured is not None:
        lines += ["Measured kernel times over the static cost model's lower bounds:", measured, ""]
    lines.append(bench_results.summary_text(results) if results else "This run wrote no results file.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device is visible to PyTorch (torch.cuda.is_available() is False, "
            f"torch {torch.__version__}, built for CUDA {torch.version.cuda}). Run it on a GPU machine; "
            "on a CPU use `pytest benchmarks/ --benchmark-only`.",
            file=sys.stderr,
        )
        return 2
    repo = find_repo(args.repo or Path.cwd())
    if repo is None:
        print(
            f"gpu_check: no mdaf-kernels checkout at or above {args.repo or Path.cwd()}: pass --repo PATH "
            "(it runs the repository's tests/ and benchmarks/, so it needs a checkout).",
            file=sys.stderr,
        )
        return 2
    have_pytest = importlib.util.find_spec("pytest") is not None
    device = bench_results.device_name(torch.device("cuda"))
    notes = [f"repo: {repo}", f"device: {device}"]
    if not have_pytest:
        notes.append(
            "pytest is not installed: the test suite was not run; only the whole-model cases were timed"
        )
    elif importlib.util.find_spec("pytest_benchmark") is None:
        notes.append("pytest-benchmark is not installed: benchmarks timed by the stand-in (triton do_bench)")
    env = subprocess_env(repo, args.quick)
    out_dir = args.out if args.out is not None else Path(tempfile.mkdtemp(prefix="gpu_check-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    notes.append(f"result files: {out_dir}")
    steps = plan(args, repo, have_pytest=have_pytest, env=env)
    target = cost_target(torch.cuda.get_device_capability())
    if target is None:
        notes.append("no cost model for this card's compute capability: no measured/bound table")
    else:
        notes.append(f"cost model: sm_{target} costed as {'an H100 SXM' if target == 90 else 'an A100 80GB'} "
                     "(other cards of that capability differ in bandwidth, SMs and clock)")
        # Before the benchmarks: a benchmark step cut by its timeout still leaves the bounds.
        steps.insert(len(steps) - 1, cost_step(target, out_dir, env, args.cost_timeout))
    started = time.time()
    step_results = [run_step(step, repo) for step in steps]
    results_path = repo / "benchmarks" / "results" / f"{bench_results.device_slug(device)}.json"
    # A file left by an earlier run is not this run's result.
    fresh = results_path.exists() and results_path.stat().st_mtime >= started
    results = bench_results.load_results(results_path) if fresh else None
    measured = None
    cost_rows_path = out_dir / "cost-rows.json"
    if results is not None and cost_rows_path.exists():
        cost_rows = json.loads(cost_rows_path.read_text())
        measured = format_measured_vs_bound(measured_vs_bound(results, cost_rows))
        (out_dir / "measured-vs-bound.md").write_text(f"Device: {device}\n\n{measured}\n")
    summary = report(step_results, results, notes, measured)
    print(summary, flush=True)
    (out_dir / "gpu_check-summary.txt").write_text(summary + "\n")
    if fresh:
        copy_results([results_path, results_path.parent / "README.md"], out_dir)
    return 0 if all(r.ok for r in step_results) else 1


if __name__ == "__main__":
    sys.exit(main())
