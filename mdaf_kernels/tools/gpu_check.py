"""One-command GPU validation: tests without the interpreter, benchmarks, results file, summary.

    python -m mdaf_kernels.tools.gpu_check [--repo PATH] [--quick] [--skip-tests]

On a CUDA machine, from a checkout of the repository (this is a developer tool: it runs the repo's
``tests/`` and ``benchmarks/`` in subprocesses, so it needs a checkout, not just the installed package):

1. ``python -m pytest tests -q`` with ``TRITON_INTERPRET`` and ``MDAF_KERNELS_BACKEND`` removed from the
   environment, so the kernels are compiled for the GPU;
2. ``python -m pytest benchmarks --benchmark-only --bench-results replace``, which writes
   ``benchmarks/results/<device-slug>.json`` and re-renders ``benchmarks/results/README.md``. Without
   pytest-benchmark, benchmarks/conftest.py stands in for it (timing with ``triton.testing.do_bench``);
   without pytest at all, ``benchmarks/model_cases.py`` times the whole-model cases alone;
3. prints the whole-model rows, their ratios and the GPU targets (PASS / MISS / N/A; a MISS does not
   fail the run) last.

Exit status: 0 when every step ran and passed, 1 when a step failed or timed out, 2 when it cannot
start (no CUDA device, no checkout). It does not import ``mdaf``: everything model-related runs in the
subprocesses.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import signal
import subprocess
import sys
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
    parser.add_argument("--quick", action="store_true", help="fewer benchmark rounds (MDAF_BENCH_QUICK=1)")
    parser.add_argument("--skip-tests", action="store_true", help="only run the benchmarks")
    parser.add_argument(
        "--bench-k",
        metavar="EXPR",
        default=None,
        help="only the benchmarks matching this pytest -k expression",
    )
    parser.add_argument("--tests-timeout", type=float, default=240.0, help="seconds for the test suite (240)")
    parser.add_argument("--bench-timeout", type=float, default=300.0, help="seconds for the benchmarks (300)")
    return parser.parse_args(argv)


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


def bench_files(repo: Path) -> list[str]:
    """The bench files, whole-model ones first so that a run cut short by its timeout has the targets."""
    files = sorted(p.relative_to(repo).as_posix() for p in (repo / "benchmarks").glob("bench_*.py"))
    first = [f for f in FIRST_BENCH_FILES if f in files]
    return first + [f for f in files if f not in first]


def plan(args: argparse.Namespace, repo: Path, *, have_pytest: bool, env: dict[str, str]) -> list[Step]:
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if not have_pytest:
        fallback = [sys.executable, str(repo / "benchmarks" / "model_cases.py")]
        return [Step("benchmarks (model cases, no pytest)", fallback, args.bench_timeout, env)]
    steps = [] if args.skip_tests else [Step("tests", [*pytest, "tests"], args.tests_timeout, env)]
    bench = [*pytest, *bench_files(repo), "--benchmark-only", "--bench-results", "replace"]
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


def report(step_results: list[StepResult], results: dict | None, notes: list[str]) -> str:
    """The closing summary: steps, then the results summary table with the targets (printed last)."""
    lines = ["", "=" * 30 + " gpu_check summary " + "=" * 30]
    lines += notes
    for r in step_results:
        status = "ok" if r.ok else ("TIMEOUT" if r.returncode is None else f"FAILED (exit {r.returncode})")
        lines.append(f"{r.name:<40} {status:<18} {r.seconds:6.0f} s  {r.summary}")
    lines.append("")
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
    started = time.time()
    step_results = [run_step(step, repo) for step in plan(args, repo, have_pytest=have_pytest, env=env)]
    results_path = repo / "benchmarks" / "results" / f"{bench_results.device_slug(device)}.json"
    # A file left by an earlier run is not this run's result.
    fresh = results_path.exists() and results_path.stat().st_mtime >= started
    results = bench_results.load_results(results_path) if fresh else None
    print(report(step_results, results, notes), flush=True)
    return 0 if all(r.ok for r in step_results) else 1


if __name__ == "__main__":
    sys.exit(main())
