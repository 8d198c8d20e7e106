"""The one place that decides whether an op runs its Triton kernels, its compiled CPU kernel or its
PyTorch reference.

Backends: ``triton`` (the Triton kernels: CUDA, or CPU under the interpreter), ``cpu`` (an op's
compiled CPU kernel, numba, ``mdaf_kernels.cpu``; ops without one run their PyTorch path there) and
``torch`` (the PyTorch reference path, on any device).

Rules, in order:

1. An explicit request wins: ``with mdaf_kernels.backend.use("torch" | "cpu" | "triton")`` or the
   environment variable ``MDAF_KERNELS_BACKEND=torch|cpu|triton|auto`` (the context manager beats
   the variable). Asking for ``triton`` or ``cpu`` where it cannot run raises
   ``BackendUnavailableError``; there is no silent fallback after an explicit request.
2. ``auto`` (the default): CUDA tensors run the Triton kernels; CPU tensors run the Triton
   kernels under the Triton interpreter (``TRITON_INTERPRET=1``), otherwise the op's compiled CPU
   kernel when it has one and numba is installed, otherwise the reference. When numba is missing
   for an op that has a CPU kernel, one one-line warning says so (once per op and process).

Nothing here touches a CUDA driver or imports numba at import time: importing this module, or
asking it about CPU tensors, works on a machine without a GPU.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Literal

import torch

Backend = Literal["triton", "cpu", "torch"]
Request = Literal["auto", "triton", "cpu", "torch"]

ENV_VAR = "MDAF_KERNELS_BACKEND"
_REQUESTS = ("auto", "triton", "cpu", "torch")

# Process-wide, like torch.backends flags, not a ContextVar: autograd runs CUDA backward passes on
# its own device threads, which would not see a context-local value.
_override: Request | None = None


class BackendUnavailableError(RuntimeError):
    """A backend (Triton, or the compiled CPU kernels) was requested explicitly where it cannot run."""


# Ops already warned that their compiled CPU kernel is unavailable (one warning per op and process).
_warned_no_cpu_compiler: set[str] = set()


def interpreter_active() -> bool:
    """True when Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _check_request(value: str, source: str) -> Request:
    if value not in _REQUESTS:
        raise ValueError(f"{source} must be one of {_REQUESTS}, got {value!r}")
    return value  # type: ignore[return-value]


def requested() -> Request:
    """The backend asked for: the innermost ``use(...)`` context, else the environment, else auto."""
    if _override is not None:
        return _override
    return _check_request(os.environ.get(ENV_VAR, "auto").strip().lower() or "auto", ENV_VAR)


@contextlib.contextmanager
def use(backend: Request) -> Iterator[None]:
    """Run the enclosed ops on ``backend`` ("auto", "triton" or "torch"), in every thread.

    The override is process-wide for the duration of the block (autograd's device threads see it
    too). Ops record the backend their forward ran on and run their backward on the same one, so a
    ``backward()`` called after the block still matches its forward.
    """
    global _override
    previous = _override
    _override = _check_request(backend, "backend")
    try:
        yield
    finally:
        _override = previous


def _triton_can_run(device: torch.device) -> bool:
    if not triton_available():
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and interpreter_active()


def cpu_compiler_available() -> bool:
    """True when the compiled CPU kernels can run (numba imports; imported on the first ask)."""
    from mdaf_kernels.cpu import compiler_available

    return compiler_available()


def _select_cpu(device: torch.device, op: str, cpu_kernel: bool) -> Backend:
    """An explicit ``cpu`` request."""
    if device.type != "cpu":
        raise BackendUnavailableError(
            f"{op}: the cpu backend was requested explicitly but tensors are on {device}")
    if not cpu_kernel:
        return "torch"
    if not cpu_compiler_available():
        raise BackendUnavailableError(
            f"{op}: the cpu backend was requested explicitly but numba is not installed "
            "(pip install 'mdaf-kernels[cpu]')")
    return "cpu"


def select(device: torch.device, op: str = "op", *, cpu_kernel: bool = False) -> Backend:
    """The backend that ``op`` must use for tensors on ``device``; ``cpu_kernel``: the op has a
    compiled CPU kernel (else ``cpu`` means its PyTorch path)."""
    request = requested()
    if request == "torch":
        return "torch"
    if request == "cpu":
        return _select_cpu(device, op, cpu_kernel)
    can_run = _triton_can_run(device)
    if request == "triton" and not can_run:
        why = "triton is not installed" if not triton_available() else (
            f"tensors are on {device}; Triton needs CUDA tensors, or CPU tensors with TRITON_INTERPRET=1 "
            "set before mdaf_kernels is imported"
        )
        raise BackendUnavailableError(
            f"{op}: the Triton backend was requested explicitly but cannot run: {why}"
        )
    if can_run:
        return "triton"
    if cpu_kernel and device.type == "cpu":
        if cpu_compiler_available():
            return "cpu"
        if op not in _warned_no_cpu_compiler:
            _warned_no_cpu_compiler.add(op)
            warnings.warn(f"{op}: numba is not installed, so CPU tensors run the slower PyTorch path "
                          "(pip install 'mdaf-kernels[cpu]')", RuntimeWarning, stacklevel=3)
    return "torch"
