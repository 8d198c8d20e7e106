"""Argument checks shared by the ops: each failure names the argument and what was expected."""

from __future__ import annotations

from collections.abc import Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_tensor(
    name: str,
    t: object,
    *,
    ndim: int | Sequence[int] | None = None,
    dtypes: Sequence[torch.dtype] = FLOAT_DTYPES,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Check that ``t`` is a tensor with the given rank, dtype and device; return it."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if ndim is not None:
        ranks = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if t.dim() not in ranks:
            want = " or ".join(str(r) for r in ranks)
            raise ValueError(f"{name}: expected a {want}-D tensor, got shape {tuple(t.shape)}")
    if t.is_complex():
        raise TypeError(f"{name}: complex tensors are not supported, got dtype {t.dtype}")
    if dtypes and t.dtype not in dtypes:
        want = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name}: expected dtype in ({want}), got {t.dtype}")
    if device is not None and t.device != device:
        raise ValueError(
            f"{name}: expected a tensor on {device} (the device of the first input), got {t.device}"
        )
    return t


def check_shape(name: str, t: torch.Tensor, shape: Sequence[int], meaning: str = "") -> None:
    """Check an exact shape; ``meaning`` spells the expected layout, e.g. "(batch, dim, seqlen)"."""
    if tuple(t.shape) != tuple(shape):
        layout = f" {meaning}" if meaning else ""
        raise ValueError(f"{name}: expected shape {tuple(shape)}{layout}, got {tuple(t.shape)}")
