"""Benchmark setup shared by every bench_*.py.

``run_benchmark(benchmark, fn, ...)`` times ``fn`` (median over rounds after warm-up), synchronising
CUDA, and records device name, dtype, peak memory (and samples/s when ``samples`` is given) in
``extra_info``. ``record_measurement(benchmark, ...)`` records a figure that is not a timing (e.g.
saved-activation bytes counted under the Triton interpreter). Interpreter timings are meaningless, so
Triton rows are skipped on machines without CUDA (see benchmarks/README.md).

After every benchmark the rows measured so far are written to ``<folder>/<device-slug>.json`` (merged
by test id into the existing file) and ``<folder>/README.md`` is re-rendered, so a run cut short keeps
what it measured. The folder is ``runs/benchmarks/`` (ignored by git) unless asked otherwise:
``--bench-results write`` merges into the committed ``benchmarks/results/``, ``replace`` starts its
file afresh, ``off`` writes nothing. The run ends with a short summary: per whole-model case the
figure, the peer's figure, the ratio and the target, and the skip reasons with their counts.

Without pytest-benchmark (a bare GPU machine) this file provides a stand-in ``benchmark`` fixture and
the ``--benchmark-only`` option, timing with ``triton.testing.do_bench`` on CUDA and a perf_counter
loop on CPU, so the same bench files run everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mdaf_kernels.tools import bench_results
from mdaf_kernels.tools.memory import PeakMemory

try:
    from pytest_benchmark.utils import NAME_FORMATTERS

    HAVE_PYTEST_BENCHMARK = True
except ImportError:
    HAVE_PYTEST_BENCHMARK = False

RESULTS_DIR = Path(__file__).resolve().parent / "results"  # committed results
REPO_ROOT = RESULTS_DIR.parents[1]
RUN_RESULTS_DIR = REPO_ROOT / "runs" / "benchmarks"  # a plain run's results: outside the tracked tree
BENCH_RESULTS_MODES = ("run", "write", "replace", "off")
# pytest-benchmark's table, narrowed to fit 120 columns (any --benchmark-columns given wins)
TABLE_COLUMNS = ["median", "iqr", "rounds"]
# gpu_check --quick sets this: fewer rounds, same cases.
QUICK = os.environ.get("MDAF_BENCH_QUICK", "0") == "1"
# MDAF_BENCH_THREADS pins torch's CPU threads. On a shared or busy machine an OpenMP thread waiting for
# a core stalls every parallel op (30x on the scan's many small ops); one thread gives stable figures.
# The thread count is part of the device name, so such rows land in their own results file.
if os.environ.get("MDAF_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["MDAF_BENCH_THREADS"]))


@pytest.fixture(scope="session")
def bench_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# Peak HBM bandwidth (bytes/s) by device-name substring; the more specific names come first.
HBM_BANDWIDTH = {"H100 PCIe": 2.0e12, "H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}


def hbm_bandwidth(device: torch.device) -> float | None:
    """Peak memory bandwidth of a known GPU (for a kernel's bandwidth floor); None on a CPU or an
    unknown card."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((bw for key, bw in HBM_BANDWIDTH.items() if key in name), None)


def skip_unless_triton_runs(device: torch.device) -> None:
    if device.type != "cuda":
        pytest.skip("Triton rows need a CUDA device: interpreter timings are not reported")


def median_seconds(benchmark) -> float | None:
    """The median round time of a finished benchmark (None when benchmarking is disabled)."""
    return benchmark.stats.stats.median if benchmark.stats is not None else None


def run_benchmark(
    benchmark,
    fn,
    *,
    device: torch.device,
    dtype: torch.dtype | None = None,
    rounds: int = 5,
    warmup_rounds: int = 1,
    samples: int | None = None,
    **extra,
) -> None:
    """Time ``fn`` (no arguments) and record device, dtype, peak memory and ``extra`` in extra_info.

    ``samples``: how many samples one call processes; adds ``samples_per_s`` (from the median).
    Peak memory covers the warm-up and timed rounds: CUDA max allocated, or the CPU resident-set peak.
    """

    def timed():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if QUICK:
        rounds, warmup_rounds = min(rounds, 3), min(warmup_rounds, 1)
    with PeakMemory(device) as memory:
        benchmark.pedantic(timed, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
    info = benchmark.extra_info
    info["device"] = bench_results.device_name(device)
    if dtype is not None:
        info["dtype"] = str(dtype).replace("torch.", "")
    if device.type == "cuda":
        info["peak_memory_bytes"] = memory.peak_bytes
    else:
        info["peak_rss_bytes"] = memory.peak_bytes
        info["peak_rss_kind"] = memory.kind
    median = median_seconds(benchmark)
    if samples is not None:
        info["batch"] = samples
        if median:
            info["samples_per_s"] = samples / median
    info.update(extra)


def record_measurement(benchmark, *, device: torch.device, **info) -> None:
    """Record figures that are not timings (shown without a time in the results table)."""
    benchmark.extra_info.update(info)
    benchmark.extra_info["device"] = bench_results.device_name(device)
    benchmark.extra_info["untimed"] = True
    benchmark.pedantic(lambda: None, rounds=1, warmup_rounds=0, iterations=1)


# --- stand-in for pytest-benchmark ---------------------------------------------------------------------


class FallbackBenchmark:
    """What bench files use of pytest-benchmark's fixture: ``pedantic``, ``__call__``, ``extra_info``."""

    def __init__(self, node: pytest.Item, group: str | None):
        self.name = node.name
        self.fullname = node.nodeid
        self.group = group
        self.params = dict(node.callspec.params) if hasattr(node, "callspec") else None
        self.extra_info: dict = {}
        self.time_s: dict | None = None
        self.stats = None  # like pytest-benchmark's: ``stats.stats.median`` etc. once timed

    def pedantic(self, target, args=(), kwargs=None, setup=None, rounds=1, warmup_rounds=0, iterations=1):
        last = []

        def call():
            call_args, call_kwargs = setup() if setup is not None else (args, kwargs)
            last[:] = [target(*call_args, **(call_kwargs or {}))]

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        times = bench_results.time_calls(call, device, rounds=rounds, warmup_rounds=warmup_rounds)
        self.time_s = bench_results.time_stats(times)
        self.stats = SimpleNamespace(stats=SimpleNamespace(**self.time_s))
        return last[0]

    def __call__(self, fn, *args, **kwargs):
        return self.pedantic(fn, args=args, kwargs=kwargs, rounds=5, warmup_rounds=1)


_FALLBACK_RUNS = pytest.StashKey[list]()
_RESULT_PATHS = pytest.StashKey[list]()
_ENVIRONMENT = pytest.StashKey[dict]()


if not HAVE_PYTEST_BENCHMARK:

    @pytest.fixture
    def benchmark(request):
        marker = request.node.get_closest_marker("benchmark")
        bench = FallbackBenchmark(request.node, marker.kwargs.get("group") if marker else None)
        request.config.stash.setdefault(_FALLBACK_RUNS, []).append(bench)  # recorded once timed
        return bench


def pytest_addoption(parser):
    group = parser.getgroup("mdaf-results", "mdaf benchmark results files")
    group.addoption(
        "--bench-results",
        choices=BENCH_RESULTS_MODES,
        default="run",
        help="where results go: run (default: runs/benchmarks/, outside the tracked tree), write (merge into"
        " the committed benchmarks/results/<device-slug>.json and re-render its README), replace (start"
        " that file afresh), off",
    )
    if not HAVE_PYTEST_BENCHMARK:
        group.addoption(
            "--benchmark-only",
            action="store_true",
            help="(stand-in for pytest-benchmark) only run benchmarks",
        )


@pytest.hookimpl(trylast=True)  # after pytest-benchmark has built its session from the options
def pytest_configure(config):
    if not HAVE_PYTEST_BENCHMARK:
        config.addinivalue_line("markers", "benchmark(group=None): benchmark options (stand-in)")
        return
    session = getattr(config, "_benchmarksession", None)
    given = config.invocation_params.args
    if session is not None and not any(a.startswith("--benchmark-columns") for a in given):
        session.columns = TABLE_COLUMNS
    if session is not None and not any(a.startswith("--benchmark-name") for a in given):
        session.name_format = NAME_FORMATTERS["short"]  # without the "test_" prefix


def pytest_runtest_setup(item):
    if not HAVE_PYTEST_BENCHMARK and item.config.getoption("--benchmark-only"):
        if "benchmark" not in getattr(item, "fixturenames", ()):
            pytest.skip("Skipping non-benchmark (--benchmark-only active).")


# --- results files -------------------------------------------------------------------------------------


def _collect_records(config) -> list[dict]:
    if HAVE_PYTEST_BENCHMARK:
        session = getattr(config, "_benchmarksession", None)
        runs = [] if session is None else session.benchmarks
        return [
            bench_results.make_record(
                b.fullname,
                b.name,
                b.group,
                b.params,
                {k: getattr(b.stats, k) for k in ("median", "iqr", "min", "max", "mean", "stddev", "rounds")},
                b.extra_info,
            )
            for b in runs
        ]
    return [
        bench_results.make_record(b.fullname, b.name, b.group, b.params, b.time_s, b.extra_info)
        for b in config.stash.get(_FALLBACK_RUNS, [])
        if b.time_s is not None
    ]


def results_dir(config) -> Path | None:
    mode = config.getoption("--bench-results")
    return None if mode == "off" else RUN_RESULTS_DIR if mode == "run" else RESULTS_DIR


def write_results_files(config) -> list[Path]:
    """Write one results file per device measured in this run, then re-render that folder's README."""
    folder = results_dir(config)
    records = _collect_records(config)
    if folder is None or not records:
        return []
    default_device = bench_results.device_name(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    by_device: dict[str, list[dict]] = {}
    for record in records:
        by_device.setdefault(record["extra_info"].get("device", default_device), []).append(record)
    if _ENVIRONMENT not in config.stash:
        config.stash[_ENVIRONMENT] = bench_results.environment(REPO_ROOT)
    env = config.stash[_ENVIRONMENT]
    # a plain run keeps only its own rows; the committed file merges unless asked to start afresh
    replace = config.getoption("--bench-results") in ("run", "replace")
    paths = [
        bench_results.write_results(folder, device, rows, env, replace=replace)
        for device, rows in by_device.items()
    ]
    return [*paths, bench_results.write_readme(folder)]


def pytest_runtest_teardown(item):
    # Written after every benchmark, so a run cut short (a timeout, Ctrl-C) keeps what it measured.
    if "benchmark" in getattr(item, "fixturenames", ()):
        write_results_files(item.config)


# a wrapper, first: pytest-benchmark groups its rows for the table in a wrapper of this hook
@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    config.stash[_RESULT_PATHS] = write_results_files(config)
    benchmark_session = getattr(config, "_benchmarksession", None)
    if benchmark_session is not None:
        # figures that are not timings (bytes) have no place in a table of times: the summary shows them
        benchmark_session.benchmarks = [
            b for b in benchmark_session.benchmarks if not b.extra_info.get("untimed")
        ]
    yield


def skip_summary(reports) -> list[str]:
    """One line per distinct skip reason, with how many cases gave it, most frequent first."""
    reasons: dict[str, int] = {}
    for report in reports:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    return [f"{count:>4} x {reason}" for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])]


@pytest.hookimpl(trylast=True)  # the last thing printed before pytest's own summary line
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    paths = config.stash.get(_RESULT_PATHS, [])
    results = [bench_results.load_results(p) for p in paths if p.suffix == ".json"]
    if results:
        terminalreporter.write_sep("-", "benchmark summary")
        for result in results:
            terminalreporter.write_line(bench_results.closing_summary(result))
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped:
        ran = sum(len(terminalreporter.stats.get(k, [])) for k in ("passed", "failed", "error")) + len(
            skipped
        )
        terminalreporter.write_sep("-", f"{len(skipped)} of {ran} cases skipped")
        for line in skip_summary(skipped):
            terminalreporter.write_line(line)
    if paths:
        terminalreporter.write_sep("-", "benchmark results")
        for path in paths:
            terminalreporter.write_line(f"wrote {path.relative_to(REPO_ROOT)}")
