"""Benchmark setup shared by every bench_*.py.

``run_benchmark(benchmark, fn, ...)`` times ``fn`` with pytest-benchmark, synchronising CUDA, and
records device name, dtype and peak memory in ``extra_info``. Interpreter timings are meaningless,
so Triton rows are skipped on machines without CUDA (see benchmarks/README.md).
"""

from __future__ import annotations

import resource
import sys

import pytest
import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


@pytest.fixture(scope="session")
def bench_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def skip_unless_triton_runs(device: torch.device) -> None:
    if device.type != "cuda":
        pytest.skip("Triton rows need a CUDA device: interpreter timings are not reported")


def run_benchmark(benchmark, fn, *, device: torch.device, dtype: torch.dtype | None = None, rounds: int = 5,
                  warmup_rounds: int = 1, **extra) -> None:
    """Time ``fn`` (no arguments) and record device, dtype, peak memory and ``extra`` in extra_info."""

    def timed():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    benchmark.pedantic(timed, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
    info = benchmark.extra_info
    info["device"] = device_name(device)
    if dtype is not None:
        info["dtype"] = str(dtype).replace("torch.", "")
    if device.type == "cuda":
        info["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
    else:
        info["peak_rss_bytes"] = peak_rss_bytes()
    info.update(extra)
