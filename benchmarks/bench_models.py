"""Whole-model training step and inference: MDAF (Triton kernels, reference ops, torch.compile) vs BST.

Configuration and variants: see model_cases.py (batch 2048 on a GPU, 2048 and 512 on a CPU, L = 50,
D = 64). Each row records parameter counts, the batch, samples/s and peak memory; the results table
adds the ratios (MDAF vs BST, Triton vs reference) measured on the same device in the same run.
``python benchmarks/model_cases.py`` times the same cases without pytest and prints MDAF / BST per
variant, mode and batch.
"""

from __future__ import annotations

import pytest
import torch
from conftest import run_benchmark
from model_cases import (
    CPU_BATCHES,
    MODES,
    PAPER_BATCH,
    TIMED_VARIANTS,
    VARIANTS_BY_ID,
    batch_sizes,
    model_case,
    skip_reason,
)


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
