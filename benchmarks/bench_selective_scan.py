"""The selective scan, forward and forward+backward, at MDAF's shape (dim 128, N 32) with L 50 and 200.

Variants, same device, same run:

- ``triton``: ``selective_scan_fn`` on the Triton kernels (CUDA only)
- ``torch_backend``: ``selective_scan_fn`` on the memory-lean PyTorch path (what CPUs ran before
  the compiled kernel; what they run without numba)
- ``cpu_kernel``: ``selective_scan_fn`` on the compiled CPU kernel (numba; CPU only)
- ``eager_reference``: ``selective_scan_ref``, the plain loop with ordinary autograd
- ``compile_reference``: ``torch.compile(selective_scan_ref)`` (CUDA only: compiling on a CPU takes
  far longer than the row measures)
- ``mamba_ssm``: mamba_ssm's CUDA op, when the package is installed

Modes: ``forward``, ``forward_backward`` and ``forward_backward_last_only`` (the CTR case: the output
read at the last position only).

Each row records the batch, the bytes kept for backward (saved_tensors_hooks), and for the kernel the
bytes it must move and the exponentials it must evaluate, with the floor they imply on a GPU.
On a CPU the batch is reduced (``CPU_BATCH``) so the file runs in about a minute.

``test_cpu_kernel_vs_torch_path`` is the CPU comparison at MDAF's full shape (batch 2048): the
PyTorch path and the compiled kernel, forward + backward, timed alternately in one process, with the
peak resident set of each and the compiled kernel's first-call time in fresh processes (cold and warm
numba cache), so compile time is reported, not hidden.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import pytest
import torch
from conftest import REPO_ROOT, hbm_bandwidth, record_measurement, run_benchmark, skip_unless_triton_runs

from mdaf_kernels import backend
from mdaf_kernels.ops.selective_scan import selective_scan_fn
from mdaf_kernels.reference.selective_scan import CHUNK, num_checkpoints, selective_scan_ref
from mdaf_kernels.tools.memory import PeakMemory, count_saved_tensors

DIM, DSTATE = 128, 32
GPU_BATCH, CPU_BATCH = 2048, 16
LENGTHS = (50, 200)
VARIANTS = ("triton", "torch_backend", "cpu_kernel", "eager_reference", "compile_reference", "mamba_ssm")
MODES = ("forward", "forward_backward", "forward_backward_last_only")
# MDAF_BENCH_CPU_BATCH lowers the comparison's batch for a quick look, as for the model benchmarks.
COMPARE_BATCH, COMPARE_ROUNDS = int(os.environ.get("MDAF_BENCH_CPU_BATCH", "2048")), 2
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
    """(bytes the Triton kernels must move, exponentials they evaluate) for one call. The last-position
    backward keeps a state per chunk, the final one included, and evaluates one exponential per
    element instead of two (it has no forward pass); its other traffic is counted as the full one's."""
    bdl, bnl, bdn = batch * DIM * length, batch * DSTATE * length, batch * DIM * DSTATE
    last_only = mode == "forward_backward_last_only"
    ckpt = 4 * bdn * (math.ceil(length / CHUNK) if last_only else num_checkpoints(length))
    fwd_bytes = esize * (4 * bdl + 2 * bnl) + ckpt  # u, delta, z, B, C in; out and checkpoints out
    fwd_exps = bdl * DSTATE
    if mode == "forward":
        return fwd_bytes, fwd_exps
    # Backward: u, delta, z, dout, B, C, checkpoints in; du, ddelta, dz out; dB/dC summed by the kernel
    # in fp32 (cast afterwards for 16-bit I/O); dA partials written, then read to sum.
    dbc = 2 * 4 * bnl + (0 if esize == 4 else 2 * (4 + esize) * bnl)
    partials = 2 * 4 * bdn
    bwd_bytes = esize * (7 * bdl + 2 * bnl) + ckpt + dbc + partials
    return fwd_bytes + bwd_bytes, fwd_exps + (1 if last_only else 2) * bdl * DSTATE


def floor_ms(device, nbytes, nexp) -> float | None:
    bandwidth = hbm_bandwidth(device)
    if bandwidth is None:
        return None
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    exp_rate = sms * EXP_PER_SM_PER_CLOCK * SM_CLOCK_HZ
    return 1e3 * max(nbytes / bandwidth, nexp / exp_rate)


def scan_fn(variant):
    if variant in ("triton", "torch_backend", "cpu_kernel"):
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
    if variant == "cpu_kernel":
        if device.type != "cpu":
            pytest.skip("the compiled CPU kernel runs on CPU tensors only")
        pytest.importorskip("numba", reason="the compiled CPU kernel needs numba (the [cpu] extra)")
    if device.type == "cpu" and (length != LENGTHS[0] or dtype_name != "fp32"):
        pytest.skip("on a CPU only L = 50 in fp32 runs, to keep the file at about a minute")
    last_only = mode == "forward_backward_last_only"
    if last_only and variant in ("eager_reference", "compile_reference", "mamba_ssm"):
        pytest.skip("last_only is a selective_scan_fn option")
    batch = GPU_BATCH if device.type == "cuda" else CPU_BATCH
    ins = make_inputs(batch, length, dtype, device)
    fn = scan_fn(variant)
    request = {"triton": "triton", "cpu_kernel": "cpu"}.get(variant, "torch")
    kwargs = dict(delta_softplus=True, last_only=True) if last_only else dict(delta_softplus=True)

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


FIRST_CALL_SCRIPT = """
import time
t0 = time.perf_counter()
import torch
from mdaf_kernels import backend, selective_scan_fn
dim, dstate, length = 8, 4, 5
shapes = dict(u=(2, dim, length), delta=(2, dim, length), A=(dim, dstate), B=(2, dstate, length),
              C=(2, dstate, length), D=(dim,), z=(2, dim, length), delta_bias=(dim,))
leaves = {k: torch.randn(*shape).requires_grad_() for k, shape in shapes.items()}
with backend.use("cpu"):
    selective_scan_fn(**leaves, delta_softplus=True).sum().backward()
print(time.perf_counter() - t0)
"""


def first_call_seconds(cache_dir: str) -> float:
    """Seconds from a fresh interpreter to the end of one forward + backward on the compiled kernel
    (imports, numba compile or cache load, the call), with numba's cache in ``cache_dir``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    result = subprocess.run([sys.executable, "-c", FIRST_CALL_SCRIPT], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, check=True, timeout=600)
    return float(result.stdout.strip().splitlines()[-1])


@pytest.mark.benchmark(group="selective_scan_cpu")
def test_cpu_kernel_vs_torch_path(benchmark, bench_device):
    """Forward + backward at batch 2048, dim 128, L 50, N 32 (fp32), full output: the PyTorch path
    and the compiled CPU kernel timed alternately (medians of COMPARE_ROUNDS after one warm-up each)."""
    if bench_device.type != "cpu":
        pytest.skip("a CPU comparison")
    pytest.importorskip("numba", reason="the compiled CPU kernel needs numba (the [cpu] extra)")
    with tempfile.TemporaryDirectory() as cache_dir:
        first_call_cold = first_call_seconds(cache_dir)
        first_call_cached = first_call_seconds(cache_dir)
    leaves = {k: v.requires_grad_() for k, v in make_inputs(COMPARE_BATCH, 50, torch.float32, "cpu").items()}

    def fwd_bwd(request):
        with backend.use(request):
            out = selective_scan_fn(**leaves, delta_softplus=True)
            out.backward(torch.ones_like(out))
        for t in leaves.values():
            t.grad = None

    times = {"torch": [], "cpu": []}
    peaks = {}
    for request in times:  # warm-up, measuring each path's peak resident set
        with PeakMemory(bench_device) as memory:
            fwd_bwd(request)
        peaks[request] = memory.peak_bytes
    for _ in range(COMPARE_ROUNDS):
        for request in times:
            start = time.perf_counter()
            fwd_bwd(request)
            times[request].append(time.perf_counter() - start)
    torch_s, cpu_s = statistics.median(times["torch"]), statistics.median(times["cpu"])
    record_measurement(
        benchmark, device=bench_device, batch=COMPARE_BATCH, seqlen=50, dim=DIM, dstate=DSTATE,
        threads=torch.get_num_threads(), torch_path_s=torch_s, cpu_kernel_s=cpu_s, speedup=torch_s / cpu_s,
        torch_path_peak_rss_bytes=peaks["torch"], cpu_kernel_peak_rss_bytes=peaks["cpu"],
        peak_rss_kind=memory.kind, cpu_kernel_first_call_cold_cache_s=first_call_cold,
        cpu_kernel_first_call_cached_s=first_call_cached)
