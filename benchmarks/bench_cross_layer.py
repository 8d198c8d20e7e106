"""MDAF's static branch (2 LCN + 2 ECN cross layers, MDAF formula, LayerNorm, Linear) four ways.

Variants on the same device in the same run: ``fused_stack`` (each cross stack in one Triton launch),
``per_layer`` (one fused Triton launch per cross layer), ``eager_reference`` (the plain-PyTorch
reference) and ``compile_reference`` (the reference under ``torch.compile``). Modes: ``forward``
(no grad) and ``forward_backward`` (forward, backward into every parameter and the input). Shapes
(batch, width) = (2048, 192) and (8192, 192), fp32 (tf32 GEMMs, PyTorch's reference under the same
tf32 setting) and bf16. On CUDA each row records the kernel launches of one step (torch.profiler).

On a CPU only the eager reference runs, at (2048, 192): Triton would run in the interpreter and
``torch.compile`` spends far longer compiling than the row measures.
"""

from __future__ import annotations

import pytest
import torch
from conftest import run_benchmark, skip_unless_triton_runs

from mdaf_kernels.nn import StaticBranch
from mdaf_kernels.reference.cross_layer import static_branch_ref

OUT_DIM = 64
VARIANTS = ("fused_stack", "per_layer", "eager_reference", "compile_reference")
MODES = ("forward", "forward_backward")
SHAPES = ((2048, 192), (8192, 192))
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _stack_params(stack) -> dict:
    return {name: getattr(stack, name) for name in ("weight", "bias", "ln_weight", "ln_bias")}


def _forward_fn(variant: str, branch: StaticBranch):
    if variant in ("fused_stack", "per_layer"):
        return branch

    def reference(x):
        return static_branch_ref(x, _stack_params(branch.lcn), _stack_params(branch.ecn), branch.norm.weight,
                                 branch.norm.bias, branch.proj.weight, branch.proj.bias, formula="mdaf")

    return torch.compile(reference) if variant == "compile_reference" else reference


def _step(mode: str, forward, branch: StaticBranch, x: torch.Tensor):
    if mode == "forward":
        def step():
            with torch.no_grad():
                forward(x)
        return step
    x = x.detach().requires_grad_()
    dy = torch.randn(x.shape[0], OUT_DIM, device=x.device, dtype=x.dtype)

    def step():
        branch.zero_grad(set_to_none=True)
        x.grad = None
        forward(x).backward(dy)
    return step


def _kernel_launches(step) -> int:
    """CUDA kernels launched by one call of ``step`` (after warm-up)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{b}x{w}" for b, w in SHAPES])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_static_branch(benchmark, bench_device, variant, mode, shape, dtype_name):
    if variant in ("fused_stack", "per_layer"):
        skip_unless_triton_runs(bench_device)
    elif bench_device.type != "cuda":
        if variant == "compile_reference":
            pytest.skip("torch.compile on a CPU spends far longer compiling than the row measures")
        if shape != SHAPES[0]:
            pytest.skip("CPU rows run at the smaller shape only (keeps the file to seconds)")
    benchmark.group = f"static-branch-{mode}"
    dtype = DTYPES[dtype_name]
    batch, width = shape
    torch.manual_seed(0)
    branch = StaticBranch(width, OUT_DIM, num_lcn=2, num_ecn=2, formula="mdaf", device=bench_device,
                          dtype=dtype, fused=variant != "per_layer")
    x = torch.randn(batch, width, device=bench_device, dtype=dtype)
    step = _step(mode, _forward_fn(variant, branch), branch, x)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True  # the Triton ops' default: compare like with like
    try:
        if bench_device.type == "cuda":
            for _ in range(3 if variant == "compile_reference" else 1):  # compile, autotune, allocate
                step()
        extra = {"kernel_launches": _kernel_launches(step)} if bench_device.type == "cuda" else {}
        rounds = 10 if bench_device.type == "cuda" else 3
        run_benchmark(benchmark, step, device=bench_device, dtype=dtype, rounds=rounds, samples=batch,
                      variant=variant, mode=mode, width=width, layers="2 lcn + 2 ecn", **extra)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
