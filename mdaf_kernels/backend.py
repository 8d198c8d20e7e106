"""The one place that decides whether an op runs its Triton kernels or its PyTorch reference.

Rules, in order:

1. An explicit request wins: ``with mdaf_kernels.backend.use("torch" | "triton")`` or the
   environment variable ``MDAF_KERNELS_BACKEND=torch|triton|auto`` (the context manager beats
   the variable). Asking for ``triton`` where it cannot run raises ``BackendUnavailableError``;
   there is no silent fallback after an explicit request.
2. ``auto`` (the default): CUDA tensors run the Triton kernels; CPU tensors run the Triton
   kernels only under the Triton interpreter (``TRITON_INTERPRET=1``), otherwise the reference.

Nothing here touches a CUDA driver: importing this module, or asking it about CPU tensors,
works on a machine without a GPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Literal

import torch

Backend = Literal["triton", "torch"]
Request = Literal["auto", "triton", "torch"]

ENV_VAR = "MDAF_KERNELS_BACKEND"
_REQUESTS = ("auto", "triton", "torch")

# Process-wide, like torch.backends flags, not a ContextVar: autograd runs CUDA backward passes on
# its own device threads, which would not see a context-local value.
_override: Request | None = None


class BackendUnavailableError(RuntimeError):
    """The Triton backend was requested explicitly for tensors it cannot run on."""


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


def select(device: torch.device, op: str = "op") -> Backend:
    """The backend that ``op`` must use for tensors on ``device``."""
    request = requested()
    if request == "torch":
        return "torch"
    can_run = _triton_can_run(device)
    if request == "triton" and not can_run:
        why = "triton is not installed" if not triton_available() else (
            f"tensors are on {device}; Triton needs CUDA tensors, or CPU tensors with TRITON_INTERPRET=1 "
            "set before mdaf_kernels is imported"
        )
        raise BackendUnavailableError(
            f"{op}: the Triton backend was requested explicitly but cannot run: {why}"
        )
    return "triton" if can_run else "torch"
