"""``CausalConv1d``: a depthwise causal Conv1d (+ SiLU) layer over ``causal_conv1d_fn``."""

from __future__ import annotations

import math

import torch
from torch import nn

from mdaf_kernels.ops.causal_conv1d import ACTIVATIONS, WIDTHS, causal_conv1d_fn


class CausalConv1d(nn.Module):
    """Depthwise causal convolution over (batch, dim, seqlen) inputs, optionally followed by SiLU.

    Parameters are laid out as in ``nn.Conv1d(dim, dim, width, groups=dim, padding=width - 1)``:
    ``weight`` (dim, 1, width) and ``bias`` (dim,), so state dicts load in both directions (for
    example mamba_ssm's ``conv1d``), and the default initialisation is nn.Conv1d's.
    """

    def __init__(self, dim: int, width: int = 4, bias: bool = True, activation: str | None = "silu",
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if width not in WIDTHS:
            raise ValueError(f"width: must be one of {WIDTHS}, got {width}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
        self.dim, self.width, self.activation = dim, width, activation
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(dim, 1, width, **factory))
        self.bias = nn.Parameter(torch.empty(dim, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Conv1d's default: kaiming_uniform(a=sqrt(5)) on the weight, U(-1/sqrt(fan_in), ...) on the bias.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.width)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, dim, seqlen) -> (batch, dim, seqlen)."""
        return causal_conv1d_fn(x, self.weight.squeeze(1), self.bias, self.activation)

    def extra_repr(self) -> str:
        has_bias = self.bias is not None
        return f"dim={self.dim}, width={self.width}, bias={has_bias}, activation={self.activation!r}"
