"""The one tolerance helper: relative norm error against a float64 reference, per-dtype thresholds."""

from __future__ import annotations

import torch

# Relative error ||out - ref|| / ||ref|| allowed for an op computed with fp32 accumulation, by the
# dtype of its inputs and outputs. The reference always runs in float64.
REL_TOL = {
    torch.float64: 1e-10,
    torch.float32: 1e-5,
    torch.float16: 5e-3,
    torch.bfloat16: 3e-2,
}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``||out - ref|| / ||ref||`` computed in float64 (0 when both are zero)."""
    out64, ref64 = out.detach().double().cpu(), ref.detach().double().cpu()
    num = torch.linalg.vector_norm(out64 - ref64).item()
    den = torch.linalg.vector_norm(ref64).item()
    if den == 0.0:
        return num
    return num / den


def assert_close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype | None = None, *, name: str = "",
                 factor: float = 1.0) -> None:
    """Assert shape equality, no NaN/Inf, and a relative error within ``REL_TOL[dtype] * factor``.

    ``dtype`` is the input dtype of the computation under test (defaults to ``out.dtype``);
    ``factor`` widens the bound for quantities that legitimately accumulate more rounding, such as
    gradients reduced over a long axis; each use must say why in the test.
    """
    dtype = dtype or out.dtype
    label = f"{name}: " if name else ""
    assert tuple(out.shape) == tuple(ref.shape), f"{label}shape {tuple(out.shape)} != {tuple(ref.shape)}"
    assert torch.isfinite(out).all(), f"{label}non-finite values in output (unwritten or overflowed)"
    err = rel_err(out, ref)
    tol = REL_TOL[dtype] * factor
    assert err <= tol, f"{label}relative error {err:.3e} > {tol:.1e} ({dtype})"


def poison_(t: torch.Tensor) -> torch.Tensor:
    """Fill an output buffer with NaN so that any element a kernel forgets to write fails the test."""
    return t.fill_(float("nan"))
