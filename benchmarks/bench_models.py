"""Whole-model training step and inference: MDAF (Triton kernels, compiled CPU kernels, reference ops,
torch.compile) vs BST; and MDAF's CPU training step beside a competing process (test_train_step_under_load).

Configuration and variants: see model_cases.py (batch 2048 on a GPU, 2048 and 512 on a CPU, L = 50,
D = 64). Each row records parameter counts, the batch, samples/s and peak memory; the results table
adds the ratios (MDAF vs BST, Triton vs reference) measured on the same device in the same run.
``python benchmarks/model_cases.py`` times the same cases without pytest and prints MDAF / BST per
variant, mode and batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, record_measurement, run_benchmark
from model_cases import (
    CPU_BATCHES,
    MODES,
    PAPER_BATCH,
    TIMED_VARIANTS,
    UNDER_LOAD_FLAG,
    VARIANTS_BY_ID,
    batch_sizes,
    model_case,
    skip_reason,
)

from mdaf.train.threads import OPENMP_WAIT, OPENMP_WAIT_VARIABLES


@pytest.mark.parametrize("batch", sorted({PAPER_BATCH, *CPU_BATCHES}, reverse=True))
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("variant_id", [v.id for v in TIMED_VARIANTS])
def test_model(benchmark, bench_device, variant_id, mode, batch):
    variant = VARIANTS_BY_ID[variant_id]
    if batch not in batch_sizes(bench_device):
        pytest.skip(f"batch {batch} is not measured on {bench_device.type}")
    reason = skip_reason(variant, bench_device, batch)
    if reason:
        pytest.skip(reason)
    benchmark.group = f"model-{mode}"
    with model_case(variant, mode, bench_device, batch) as (fn, batch, info):
        run_benchmark(
            benchmark,
            fn,
            device=bench_device,
            dtype=torch.float32,
            rounds=5 if bench_device.type == "cuda" else 3,  # a CPU training row takes seconds
            warmup_rounds=0,
            samples=batch,
            **info,
        )
    benchmark.extra_info.update(info)  # the whole case's CPU memory, known once it is over


@pytest.mark.parametrize("openmp_wait", ["bounded", "default"])
def test_train_step_under_load(benchmark, bench_device, openmp_wait):
    """MDAF's CPU training step (batch 512) alone and beside a busy process, in a fresh interpreter
    whose OpenMP runtime starts with the wait policy the command line sets (``bounded``) or its own
    default spinning (``default``)."""
    if bench_device.type != "cpu":
        pytest.skip("the under-load case measures CPU training")
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_WAIT_VARIABLES}
    if openmp_wait == "bounded":
        env.update(OPENMP_WAIT)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    script = Path(__file__).with_name("model_cases.py")
    run = subprocess.run([sys.executable, str(script), UNDER_LOAD_FLAG], env=env, capture_output=True,
                         text=True, check=True)
    figures = json.loads(run.stdout.splitlines()[-1])
    note = (f"{figures['threads']} threads on {figures['cores']} cores, step {figures['alone_s']:.2f} s "
            f"alone, {figures['loaded_s']:.2f} s beside a busy process: {figures['slowdown']:.2f}x "
            f"(a fair CPU share explains {figures['proportional_slowdown']:.2f}x)")
    record_measurement(benchmark, device=bench_device, note=note, **figures)
