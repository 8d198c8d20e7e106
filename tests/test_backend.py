"""mdaf_kernels.backend: who decides between the Triton kernels and the PyTorch reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mdaf_kernels
import mdaf_kernels.ops.causal_conv1d as conv_op  # define the kernels now, under the conftest's interpreter
from mdaf_kernels import backend
from mdaf_kernels.reference.causal_conv1d import causal_conv1d_ref
from tests.tolerance import assert_close

# These tests set the backend themselves: opt out of the conftest fixture that pins product tests
# to the reference under the interpreter.
pytestmark = pytest.mark.triton_interpreter

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    return monkeypatch


def test_default_is_auto(clean_env):
    assert backend.requested() == "auto"
    assert backend.select(CPU) == "triton"  # CPU tensors run the kernels under the interpreter
    clean_env.setenv("TRITON_INTERPRET", "0")
    assert backend.select(CPU) == "torch"


@pytest.mark.parametrize(("value", "expected"), [
    ("torch", "torch"), (" Torch ", "torch"), ("triton", "triton"), ("cpu", "cpu"), ("auto", "auto"),
    ("", "auto"),
])
def test_environment_variable(clean_env, value, expected):
    clean_env.setenv(backend.ENV_VAR, value)
    assert backend.requested() == expected


def test_context_manager_beats_environment_and_nests(clean_env):
    clean_env.setenv(backend.ENV_VAR, "torch")
    assert backend.select(CPU) == "torch"
    with backend.use("triton"):
        assert backend.requested() == "triton"
        assert backend.select(CPU) == "triton"
        with backend.use("torch"):
            assert backend.select(CPU) == "torch"
        assert backend.requested() == "triton"
    assert backend.requested() == "torch"


def test_context_is_restored_after_an_exception(clean_env):
    with pytest.raises(RuntimeError, match="inside"), backend.use("torch"):
        raise RuntimeError("inside")
    assert backend.requested() == "auto"


def test_invalid_values_raise(clean_env):
    clean_env.setenv(backend.ENV_VAR, "cuda")
    with pytest.raises(ValueError, match=r"MDAF_KERNELS_BACKEND must be one of .*got 'cuda'"):
        backend.requested()
    with pytest.raises(ValueError, match=r"backend must be one of .*got 'gpu'"), backend.use("gpu"):
        pass


def test_explicit_triton_without_interpreter_raises_and_does_not_fall_back(clean_env):
    clean_env.setenv("TRITON_INTERPRET", "0")
    x, weight = torch.randn(2, 4, 5), torch.randn(4, 3)
    with backend.use("triton"):
        with pytest.raises(backend.BackendUnavailableError, match=r"causal_conv1d_fn: .*TRITON_INTERPRET=1"):
            backend.select(CPU, "causal_conv1d_fn")
        with pytest.raises(backend.BackendUnavailableError, match="causal_conv1d_fn"):
            mdaf_kernels.causal_conv1d_fn(x, weight, None, "silu")
    clean_env.setenv(backend.ENV_VAR, "triton")
    with pytest.raises(backend.BackendUnavailableError):
        mdaf_kernels.causal_conv1d_fn(x, weight, None, "silu")


def test_auto_without_interpreter_runs_the_reference(clean_env):
    clean_env.setenv("TRITON_INTERPRET", "0")
    x, weight, bias = torch.randn(2, 4, 9), torch.randn(4, 3), torch.randn(4)
    out = mdaf_kernels.causal_conv1d_fn(x, weight, bias, "silu")
    assert_close(out, causal_conv1d_ref(x.double(), weight.double(), bias.double(), "silu"), torch.float32)


FRESH_PROCESS_SCRIPT = """
import json, sys
import torch
import mdaf_kernels
after_import = torch.cuda.is_initialized()
x = torch.randn(2, 4, 9, requires_grad=True)
weight = torch.randn(4, 3, requires_grad=True)
mdaf_kernels.causal_conv1d_fn(x, weight, None, "silu").sum().backward()
driver = sys.modules.get("triton.runtime.driver")
print(json.dumps({
    "cuda_initialized_after_import": after_import,
    "cuda_initialized_after_call": torch.cuda.is_initialized(),
    "triton_driver_created": driver is not None and (driver.driver._default is not None
                                                     or driver.driver._active is not None),
    "backend": mdaf_kernels.backend.select(x.device),
}))
"""


def test_cpu_use_in_a_fresh_process_touches_no_gpu():
    unset = ("TRITON_INTERPRET", backend.ENV_VAR)
    env = {key: value for key, value in os.environ.items() if key not in unset}
    env["CUDA_VISIBLE_DEVICES"] = ""
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS_SCRIPT], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"cuda_initialized_after_import": False, "cuda_initialized_after_call": False,
                      "triton_driver_created": False, "backend": "torch"}


def test_override_is_seen_by_other_threads(clean_env):
    """Autograd runs CUDA backward passes on its own threads: the override must reach them."""
    import threading

    seen = []
    with backend.use("torch"):
        worker = threading.Thread(target=lambda: seen.append(backend.select(CPU)))
        worker.start()
        worker.join()
    assert seen == ["torch"]


@pytest.mark.parametrize("forward_backend", ["torch", "triton"])
def test_backward_runs_where_its_forward_ran(clean_env, forward_backend):
    """A backward() called after the ``use`` block still runs on the forward's backend."""
    calls = []
    real_launch_bwd = conv_op._launch_bwd

    def spy(*args, **kwargs):
        calls.append("triton")
        return real_launch_bwd(*args, **kwargs)

    clean_env.setattr(conv_op, "_launch_bwd", spy)
    x = torch.randn(1, 4, 5, requires_grad=True)
    weight = torch.randn(4, 3, requires_grad=True)
    with backend.use(forward_backend):
        out = mdaf_kernels.causal_conv1d_fn(x, weight, activation="silu")
    other = "triton" if forward_backend == "torch" else "torch"
    with backend.use(other):
        out.sum().backward()
    assert calls == (["triton"] if forward_backend == "triton" else [])
    x_ref = x.detach().double().requires_grad_()
    causal_conv1d_ref(x_ref, weight.detach().double(), None, "silu").sum().backward()
    assert_close(x.grad, x_ref.grad, torch.float32, name="dx")


def test_cpu_backend_rules(clean_env):
    """auto: an op with a compiled CPU kernel runs it on CPU tensors (the interpreter still wins);
    an explicit ``cpu`` runs it even under the interpreter, the PyTorch path for ops without one, and
    refuses CUDA tensors."""
    pytest.importorskip("numba", reason="the compiled CPU kernels need numba (the [cpu] extra)")
    assert backend.select(CPU, "op", cpu_kernel=True) == "triton"  # under the interpreter
    clean_env.setenv("TRITON_INTERPRET", "0")
    assert backend.select(CPU, "op", cpu_kernel=True) == "cpu"
    assert backend.select(CPU, "op") == "torch"
    clean_env.setenv("TRITON_INTERPRET", "1")
    with backend.use("cpu"):
        assert backend.select(CPU, "op", cpu_kernel=True) == "cpu"
        assert backend.select(CPU, "op") == "torch"
        with pytest.raises(backend.BackendUnavailableError, match="cpu backend was requested .* on cuda"):
            backend.select(torch.device("cuda"), "op", cpu_kernel=True)
    with backend.use("torch"):
        assert backend.select(CPU, "op", cpu_kernel=True) == "torch"
