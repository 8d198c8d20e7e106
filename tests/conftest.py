"""Test setup: the Triton interpreter on machines without CUDA, set before any kernel is defined."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib
import sys

import pytest

from mdaf_kernels import backend
from mdaf_kernels.ops import OPS

# Define every kernel now, under the interpreter setting above: a test that later monkeypatches
# TRITON_INTERPRET must not be the first to import an op (its kernels would be compiled JIT ones).
for _op in OPS:
    importlib.import_module(f"mdaf_kernels.ops.{_op}")

KERNEL_TEST_DIRS = ("tests/ops", "tests/nn", "tests/tools")


@pytest.fixture(autouse=True)
def _product_tests_use_reference_ops(request):
    """Under the interpreter, product tests (models, data, training) run the reference ops.

    Interpreted Triton takes about 0.1 s per program, far too slow for training loops; the kernel
    tests (tests/ops, tests/nn) and tests marked ``triton_interpreter`` exercise the kernels.
    """
    path = str(request.node.path).replace(os.sep, "/")
    is_kernel_test = any(f"/{d}/" in path for d in KERNEL_TEST_DIRS)
    if backend.interpreter_active() and not is_kernel_test and not request.node.get_closest_marker(
        "triton_interpreter"
    ):
        with backend.use("torch"):
            yield
    else:
        yield


@pytest.fixture
def device() -> torch.device:
    """CUDA when present, else CPU (where the kernels run in the interpreter)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def seeded():
    """A fresh seed per test, so inputs differ between tests but a failure can be replayed."""
    torch.manual_seed(0)
    return torch.Generator().manual_seed(0)


@pytest.fixture
def numba_missing(monkeypatch):
    """Simulate an environment without numba (auto backend, no interpreter)."""
    from mdaf_kernels.cpu import compiler_available

    monkeypatch.setitem(sys.modules, "numba", None)  # makes ``import numba`` raise ImportError
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    monkeypatch.setattr(backend, "_warned_no_cpu_compiler", set())
    compiler_available.cache_clear()
    yield
    compiler_available.cache_clear()
