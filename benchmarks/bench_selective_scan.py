"""The selective scan, forward and forward+backward, at MDAF's shape (dim 128, N 32) with L 50 and 200.

Variants, same device, same run:

- ``triton``: ``selective_scan_fn`` on the Triton kernels (CUDA only)
- ``torch_backend``: ``selective_scan_fn`` on the memory-lean PyTorch path (what CPUs run)
- ``eager_reference``: ``selective_scan_ref``, the plain loop with ordinary autograd
- ``compile_reference``: ``torch.compile(selective_scan_ref)`` (CUDA only: compiling on a CPU takes
  far longer than the row measures)
- ``mamba_ssm``: mamba_ssm's CUDA op, when the package is installed

Each row records the batch, the bytes kept for backward (saved_tensors_hooks), and for the kernel the
bytes it must move and the exponentials it must evaluate, with the floor they imply on a GPU.
On a CPU the batch is reduced (``CPU_BATCH``) so the file runs in about 20 s.
"""

from __future__ import annotations

import pytest
import torch
from conftest import hbm_bandwidth, run_benchmark, skip_unless_triton_runs

from mdaf_kernels import backend
from mdaf_kernels.ops.selective_scan import BWD_BLOCK_D, selective_scan_fn
from mdaf_kernels.reference.selective_scan import num_checkpoints, selective_scan_ref
from mdaf_kernels.tools.memory import count_saved_tensors

DIM, DSTATE = 128, 32
GPU_BATCH, CPU_BATCH = 2048, 16
LENGTHS = (50, 200)
VARIANTS = ("triton", "torch_backend", "eager_reference", "compile_reference", "mamba_ssm")
MODES = ("forward", "forward_backward")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# MUFU ex2 rate is 16 per SM per clock on sm_80/sm_90.
SM_CLOCK_HZ = 1.7e9
EXP_PER_SM_PER_CLOCK = 16


def make_inputs(batch, length, dtype, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)

    def rand(*shape, scale=1.0, dt=dtype):
        return (scale * torch.randn(*shape, generator=g)).to(device=device, dtype=dt)

    return {
        "u": rand(batch, DIM, length),
        "delta": rand(batch, DIM, length, scale=0.5),
        "A": -torch.arange(1, DSTATE + 1.0, device=device).repeat(DIM, 1),
        "B": rand(batch, DSTATE, length),
        "C": rand(batch, DSTATE, length),
        "D": torch.ones(DIM, device=device),
        "z": rand(batch, DIM, length),
        "delta_bias": rand(DIM, scale=0.5, dt=torch.float32),
    }


def kernel_traffic(batch, length, esize, mode) -> tuple[int, int]:
    """(bytes the Triton kernels must move, exponentials they evaluate) for one call."""
    bdl, bnl, bdn = batch * DIM * length, batch * DSTATE * length, batch * DIM * DSTATE
    ckpt = 4 * bdn * num_checkpoints(length)
    fwd_bytes = esize * (4 * bdl + 2 * bnl) + ckpt  # u, delta, z, B, C in; out and checkpoints out
    fwd_exps = bdl * DSTATE
    if mode == "forward":
        return fwd_bytes, fwd_exps
    n_dblocks = DIM // BWD_BLOCK_D
    # Backward: u, delta, z, dout, B, C, checkpoints in; du, ddelta, dz, dB/dC/dA partials out (and summed).
    partials = 2 * (2 * 4 * batch * n_dblocks * DSTATE * length) + 2 * 4 * bdn  # written, then read to sum
    bwd_bytes = esize * (7 * bdl + 2 * bnl) + ckpt + partials
    return fwd_bytes + bwd_bytes, fwd_exps + 2 * bdl * DSTATE


def floor_ms(device, nbytes, nexp) -> float | None:
    bandwidth = hbm_bandwidth(device)
    if bandwidth is None:
        return None
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    exp_rate = sms * EXP_PER_SM_PER_CLOCK * SM_CLOCK_HZ
    return 1e3 * max(nbytes / bandwidth, nexp / exp_rate)


def scan_fn(variant):
    if variant in ("triton", "torch_backend"):
        return selective_scan_fn
    if variant == "eager_reference":
        return selective_scan_ref
    if variant == "compile_reference":
        return torch.compile(selective_scan_ref)
    mamba_ops = pytest.importorskip("mamba_ssm.ops.selective_scan_interface",
                                    reason="mamba_ssm is not installed")
    return mamba_ops.selective_scan_fn


@pytest.mark.benchmark(group="selective_scan")
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_selective_scan(benchmark, bench_device, variant, mode, length, dtype_name):
    device, dtype = bench_device, DTYPES[dtype_name]
    if variant in ("triton", "compile_reference", "mamba_ssm"):
        skip_unless_triton_runs(device)
    if device.type == "cpu" and (length != LENGTHS[0] or dtype_name != "fp32"):
        pytest.skip("on a CPU only L = 50 in fp32 runs, to keep the file at about 20 s")
    batch = GPU_BATCH if device.type == "cuda" else CPU_BATCH
    ins = make_inputs(batch, length, dtype, device)
    fn = scan_fn(variant)
    request = "triton" if variant == "triton" else "torch"
    kwargs = dict(delta_softplus=True)

    if mode == "forward":
        def step():
            with torch.no_grad(), backend.use(request):
                fn(**ins, **kwargs)
        saved = 0
    else:
        leaves = {k: v.requires_grad_() for k, v in ins.items()}

        def step():
            with backend.use(request):
                out = fn(**leaves, **kwargs)
                out.backward(torch.ones_like(out))

        with backend.use(request), count_saved_tensors() as counted:
            fn(**leaves, **kwargs)
        saved = counted.activation_bytes

    nbytes, nexp = kernel_traffic(batch, length, ins["u"].element_size(), mode)
    extra = dict(batch=batch, seqlen=length, dim=DIM, dstate=DSTATE, saved_for_backward_bytes=saved,
                 input_bytes=sum(t.numel() * t.element_size() for t in ins.values()),
                 kernel_bytes_moved=nbytes, kernel_exp_count=nexp)
    floor = floor_ms(device, nbytes, nexp)
    if floor is not None and variant == "triton":
        extra["floor_ms"] = floor
    rounds = 5 if device.type == "cuda" else 2
    run_benchmark(benchmark, step, device=device, dtype=dtype, rounds=rounds, samples=batch, **extra)
