"""Plain-PyTorch causal depthwise Conv1d (+ SiLU): the test oracle (in float64) and the CPU path."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """``out[b, d, t] = act(bias[d] + sum_k weight[d, k] * x[b, d, t - (width - 1) + k])``.

    x: (batch, dim, seqlen); weight: (dim, width); bias: (dim,) or None; activation: None or
    "silu"/"swish". Positions before the start of the sequence read as zero (causal padding).
    Computes in ``x``'s dtype (pass float64 tensors for an oracle); returns (batch, dim, seqlen).
    """
    dim, width = weight.shape
    seqlen = x.shape[-1]
    out = F.conv1d(x, weight.unsqueeze(1), bias, padding=width - 1, groups=dim)[..., :seqlen]
    if activation in ("silu", "swish"):
        out = F.silu(out)
    return out


def causal_conv1d_bwd_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    dout: torch.Tensor,
    activation: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``causal_conv1d_ref`` without autograd: (dx, dweight, dbias), in x's dtype.

    Written out so that it can run inside a torch.library op (below the autograd dispatch key).
    dbias is the gradient a bias would get, returned even when ``bias`` is None.
    """
    dim, width = weight.shape
    seqlen = x.shape[-1]
    dpre = dout
    if activation in ("silu", "swish"):
        pre = causal_conv1d_ref(x, weight, bias, None)
        sig = torch.sigmoid(pre)
        dpre = dout * sig * (1 + pre * (1 - sig))
    # x[b, d, t - (width - 1) + k] for every output position t and tap k: (batch, dim, seqlen, width).
    taps = F.pad(x, (width - 1, 0)).unfold(-1, width, 1)
    dweight = torch.einsum("bdl,bdlk->dk", dpre, taps)
    dbias = dpre.sum(dim=(0, 2))
    # dx[t] = sum_k weight[k] * dpre[t + width - 1 - k]: a correlation with the flipped taps.
    dx = F.conv1d(F.pad(dpre, (0, width - 1)), weight.flip(-1).unsqueeze(1), groups=dim)[..., :seqlen]
    return dx, dweight, dbias
