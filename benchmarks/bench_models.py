"""Whole-model training step and inference: MDAF (Triton kernels, reference ops, torch.compile) vs BST.

Configuration and variants: see model_cases.py (batch 2048 on a GPU, L = 50, D = 64). Each row
records parameter counts, the batch, samples/s and peak memory; the results table adds the ratios
(MDAF vs BST, Triton vs reference) measured on the same device in the same run.
"""

from __future__ import annotations

import pytest
import torch
from conftest import run_benchmark
from model_cases import (
    META,
    MODES,
    VARIANTS_BY_ID,
    backend_env,
    batch_size,
    build,
    make_batch,
    parameter_counts,
    skip_reason,
)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("variant_id", list(VARIANTS_BY_ID))
def test_model(benchmark, bench_device, variant_id, mode):
    variant = VARIANTS_BY_ID[variant_id]
    reason = skip_reason(variant, bench_device)
    if reason:
        pytest.skip(reason)
    benchmark.group = f"model-{mode}"
    batch = batch_size(bench_device)
    with backend_env(variant.backend):
        model = build(variant, bench_device)
        fn = MODES[mode](variant, model, make_batch(META, batch, bench_device))
        # Compilation, autotuning and the optimizer's state happen in the first calls: not timed, and
        # allocated before peak memory is measured (steady-state training memory).
        for _ in range(2 if variant.variant == "compile" else 1):
            fn()
        run_benchmark(
            benchmark,
            fn,
            device=bench_device,
            dtype=torch.float32,
            rounds=5 if bench_device.type == "cuda" else 3,
            warmup_rounds=0,
            samples=batch,
            model=variant.model,
            variant=variant.variant,
            mode=mode,
            seq_len=META.max_len,
            **parameter_counts(model),
        )
