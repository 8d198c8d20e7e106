"""Whole-model training step and inference: MDAF (Triton kernels, reference ops, torch.compile) vs BST.

Configuration and variants: see model_cases.py (batch 2048 on a GPU, L = 50, D = 64). Each row
records parameter counts, the batch, samples/s and peak memory; the results table adds the ratios
(MDAF vs BST, Triton vs reference) measured on the same device in the same run.
"""

from __future__ import annotations

import pytest
import torch
from conftest import run_benchmark
from model_cases import MODES, TIMED_VARIANTS, VARIANTS_BY_ID, prepare_case, skip_reason, variant_context

from mdaf_kernels.tools.memory import PeakMemory


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("variant_id", [v.id for v in TIMED_VARIANTS])
def test_model(benchmark, bench_device, variant_id, mode):
    variant = VARIANTS_BY_ID[variant_id]
    reason = skip_reason(variant, bench_device)
    if reason:
        pytest.skip(reason)
    benchmark.group = f"model-{mode}"
    with variant_context(variant), PeakMemory(bench_device) as case_memory:
        fn, batch, info = prepare_case(variant, mode, bench_device)
        rounds = 5 if bench_device.type == "cuda" else 3
        run_benchmark(
            benchmark,
            fn,
            device=bench_device,
            dtype=torch.float32,
            rounds=rounds,
            warmup_rounds=0,
            samples=batch,
            **info,
        )
    if bench_device.type == "cpu":
        # The process's resident set holds whatever earlier rows left; what this case added (model,
        # optimizer state, inputs, activations) is the CPU analogue of CUDA's max allocated.
        benchmark.extra_info["peak_rss_added_bytes"] = case_memory.added_bytes
