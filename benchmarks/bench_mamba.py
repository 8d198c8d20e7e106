"""The Mamba block at MDAF's configuration (d_model 64, expand 2 -> dim 128, d_state 32), L 50 and 200.

Variants, same device, same run, same weights:

- ``triton``: mdaf_kernels.nn.Mamba on the Triton kernels (CUDA only)
- ``cpu_backend``: the same module on the compiled CPU scan (numba; what CPUs run when it is installed)
- ``torch_backend``: the same module on the PyTorch reference ops (what CPUs run without numba)
- ``mamba_ssm``: mamba_ssm's Mamba, when the package is installed (CUDA)
- ``mambapy``: mambapy's ``MambaBlock`` (pure PyTorch, parallel scan), the peer people use on a CPU,
  when the package is installed (``pip install -e ".[bench]"``)

Modes: ``forward`` (no grad) and ``forward_backward`` (into the input and every parameter). Each row
records the batch, the process's peak resident memory (CPU) and the bytes kept for backward. On a CPU
only L = 50 in fp32 runs, at batch ``CPU_BATCH`` (512: the issue's comparison with mambapy).
"""

from __future__ import annotations

import pytest
import torch
from conftest import run_benchmark, skip_unless_triton_runs

from mdaf_kernels import backend
from mdaf_kernels.nn import Mamba
from mdaf_kernels.tools.memory import count_saved_tensors

D_MODEL, D_STATE = 64, 32
GPU_BATCH, CPU_BATCH = 2048, 512
LENGTHS = (50, 200)
VARIANTS = ("triton", "cpu_backend", "torch_backend", "mamba_ssm", "mambapy")
# The backend each of our variants asks for; the peers run their own code.
BACKENDS = {"triton": "triton", "cpu_backend": "cpu", "torch_backend": "torch"}
CUDA_ONLY = ("triton", "mamba_ssm")
MODES = ("forward", "forward_backward")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def build(variant: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    block = Mamba(D_MODEL, d_state=D_STATE, device=device)
    if variant == "mamba_ssm":
        mamba_simple = pytest.importorskip("mamba_ssm.modules.mamba_simple",
                                           reason="mamba_ssm is not installed")
        theirs = mamba_simple.Mamba(D_MODEL, d_state=D_STATE, device=device)
    elif variant == "mambapy":
        mambapy = pytest.importorskip("mambapy.mamba",
                                      reason='mambapy is not installed (pip install -e ".[bench]")')
        config = mambapy.MambaConfig(d_model=D_MODEL, n_layers=1, d_state=D_STATE, expand_factor=2,
                                     pscan=True)
        theirs = mambapy.MambaBlock(config).to(device)
    else:
        return block.to(dtype)
    theirs.load_state_dict(block.state_dict())  # the same parameter names: the same weights
    return theirs.to(dtype)


def skip_reason(variant: str, device: torch.device) -> str | None:
    if variant == "cpu_backend" and not backend.cpu_compiler_available():
        return "the compiled CPU kernels need numba (pip install -e \".[cpu]\")"
    if variant == "cpu_backend" and device.type != "cpu":
        return "the compiled CPU kernels run on CPU tensors only"
    return None


@pytest.mark.benchmark(group="mamba_block")
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_mamba_block(benchmark, bench_device, variant, mode, length, dtype_name):
    device, dtype = bench_device, DTYPES[dtype_name]
    if variant in CUDA_ONLY:
        skip_unless_triton_runs(device)
    reason = skip_reason(variant, device)
    if reason:
        pytest.skip(reason)
    if device.type == "cpu" and (length != LENGTHS[0] or dtype_name != "fp32"):
        pytest.skip("on a CPU only L = 50 in fp32 runs, to keep the file short")
    batch = GPU_BATCH if device.type == "cuda" else CPU_BATCH
    block = build(variant, device, dtype)
    x = torch.randn(batch, length, D_MODEL, device=device, dtype=dtype)
    request = BACKENDS.get(variant, "torch")

    if mode == "forward":
        def step():
            with torch.no_grad(), backend.use(request):
                block(x)
        saved = 0
    else:
        x.requires_grad_()

        def step():
            with backend.use(request):
                block(x).sum().backward()

        with backend.use(request), count_saved_tensors(block.parameters()) as counted:
            block(x)
        saved = counted.activation_bytes

    rounds = 5 if device.type == "cuda" else 2
    run_benchmark(benchmark, step, device=device, dtype=dtype, rounds=rounds, samples=batch, batch_used=batch,
                  seqlen=length, d_model=D_MODEL, d_state=D_STATE, saved_for_backward_bytes=saved)
