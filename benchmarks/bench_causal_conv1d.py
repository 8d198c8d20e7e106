"""The causal depthwise Conv1d + SiLU, forward and forward+backward, at MDAF's shape (dim 128, width 4)
with L 50 and 200, x laid out as the Mamba block passes it (the channel-last "b l d -> b d l" view of
the first half of in_proj's (batch, L, 2 * dim) output) and the output gradient in the output's layout.

Variants, same device, same run:

- ``triton``: ``causal_conv1d_fn`` on the Triton kernels (CUDA only)
- ``torch_backend``: ``causal_conv1d_fn`` on its PyTorch path (fp32 F.conv1d; what CPUs run without
  numba)
- ``cpu_kernel``: ``causal_conv1d_fn`` on the compiled CPU kernel (numba; CPU only)
- ``eager_reference``: ``causal_conv1d_ref`` in the I/O dtype with ordinary autograd
- ``compile_reference``: ``torch.compile(causal_conv1d_ref)`` (CUDA only: compiling on a CPU takes
  longer than the whole file may)
- ``causal_conv1d_package``: the ``causal_conv1d`` package's CUDA op, when it is installed

Each row records the batch and the bytes the fused kernels must move (``kernel_bytes_moved``: x read
and out written for the forward; x and dout read and dx written again for the backward), with the
bandwidth floor they imply on a known GPU. On a CPU, batches 512 (the CPU training default) and 2048
run, only L = 50 in fp32, so the file takes about a minute.
"""

from __future__ import annotations

import pytest
import torch
from conftest import hbm_bandwidth, run_benchmark, skip_unless_triton_runs

from mdaf_kernels import backend
from mdaf_kernels.ops.causal_conv1d import causal_conv1d_fn
from mdaf_kernels.reference.causal_conv1d import causal_conv1d_ref

DIM, WIDTH = 128, 4
GPU_BATCHES, CPU_BATCHES = (2048,), (512, 2048)
LENGTHS = (50, 200)
VARIANTS = ("triton", "torch_backend", "cpu_kernel", "eager_reference", "compile_reference",
            "causal_conv1d_package")
MODES = ("forward", "forward_backward")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# Inputs rotate over sets totalling at least this many bytes, so calls read HBM rather than L2.
ROTATE_BYTES = 200 * 2**20


def conv_fn(variant):
    if variant in ("triton", "torch_backend", "cpu_kernel"):
        return causal_conv1d_fn
    if variant == "eager_reference":
        return causal_conv1d_ref
    if variant == "compile_reference":
        return torch.compile(causal_conv1d_ref)
    package = pytest.importorskip("causal_conv1d", reason="the causal_conv1d package is not installed")
    return package.causal_conv1d_fn


def make_input_sets(batch, length, dtype, device, count):
    g = torch.Generator(device="cpu").manual_seed(0)
    sets = []
    for _ in range(count):
        # The Mamba block's x: half of in_proj's output, viewed (batch, dim, length) without a copy.
        xz = torch.randn(batch, length, 2 * DIM, generator=g).to(device=device, dtype=dtype)
        x = xz.transpose(1, 2)[:, :DIM]
        weight = (0.5 * torch.randn(DIM, WIDTH, generator=g)).to(device=device, dtype=dtype)
        bias = torch.randn(DIM, generator=g).to(device=device, dtype=dtype)
        dout = torch.randn(batch, length, DIM, generator=g).to(device=device, dtype=dtype).transpose(1, 2)
        sets.append((x, weight, bias, dout))
    return sets


def kernel_bytes_moved(batch, length, esize, mode) -> int:
    """Bytes the fused kernels must move: every (batch, dim, seqlen) tensor once, parameters aside."""
    n = batch * DIM * length * esize
    return 2 * n if mode == "forward" else 2 * n + 3 * n


def floor_ms(device, nbytes) -> float | None:
    bandwidth = hbm_bandwidth(device)
    return None if bandwidth is None else 1e3 * nbytes / bandwidth


@pytest.mark.benchmark(group="causal_conv1d")
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch", sorted({*GPU_BATCHES, *CPU_BATCHES}))
@pytest.mark.parametrize("variant", VARIANTS)
def test_causal_conv1d(benchmark, bench_device, variant, batch, mode, length, dtype_name):
    device, dtype = bench_device, DTYPES[dtype_name]
    if variant in ("triton", "compile_reference", "causal_conv1d_package"):
        skip_unless_triton_runs(device)
    if variant == "cpu_kernel":
        if device.type != "cpu":
            pytest.skip("the compiled CPU kernel runs on CPU tensors only")
        pytest.importorskip("numba", reason="the compiled CPU kernel needs numba (the [cpu] extra)")
    if batch not in (GPU_BATCHES if device.type == "cuda" else CPU_BATCHES):
        pytest.skip(f"batch {batch} is not measured on {device.type}")
    if device.type == "cpu" and (length != LENGTHS[0] or dtype_name != "fp32"):
        pytest.skip("on a CPU only L = 50 in fp32 runs, to keep the file at about a minute")
    esize = torch.empty((), dtype=dtype).element_size()
    set_bytes = 3 * batch * DIM * length * esize  # in_proj's half holding x (twice x's size) and dout
    count = max(1, -(-ROTATE_BYTES // set_bytes)) if device.type == "cuda" else 1
    sets = make_input_sets(batch, length, dtype, device, count)
    fn = conv_fn(variant)
    request = {"triton": "triton", "cpu_kernel": "cpu"}.get(variant, "torch")
    calls = iter(range(1 << 62))

    if mode == "forward":
        def step():
            x, weight, bias, _ = sets[next(calls) % count]
            with torch.no_grad(), backend.use(request):
                fn(x, weight, bias, activation="silu")
    else:
        leaves = [tuple(t.requires_grad_() for t in s[:3]) + (s[3],) for s in sets]

        def step():
            x, weight, bias, dout = leaves[next(calls) % count]
            with backend.use(request):
                out = fn(x, weight, bias, activation="silu")
                torch.autograd.grad(out, (x, weight, bias), dout)

    nbytes = kernel_bytes_moved(batch, length, esize, mode)
    extra = dict(batch=batch, seqlen=length, dim=DIM, width=WIDTH, input_sets=count,
                 kernel_bytes_moved=nbytes)
    floor = floor_ms(device, nbytes)
    if floor is not None and variant == "triton":
        extra["floor_ms"] = floor
    rounds = 10 if device.type == "cuda" else 3
    run_benchmark(benchmark, step, device=device, dtype=dtype, rounds=rounds, samples=batch, **extra)
