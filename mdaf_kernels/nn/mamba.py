"""The Mamba-1 block over ``causal_conv1d_fn`` and ``selective_scan_fn``.

Parameter names, shapes and initialisation follow mamba_ssm's ``mamba_simple.Mamba``, so a mamba_ssm
state_dict loads with ``load_state_dict``. The module never branches on device: the ops ask
``mdaf_kernels.backend``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import mdaf_kernels


class Mamba(nn.Module):
    """Mamba-1 block: in_proj -> causal depthwise conv + SiLU -> selective scan gated by SiLU(z) -> out_proj.

    ``forward(hidden_states, mask=None, *, lengths=None, last_only=False)``: hidden_states
    (batch, L, d_model) -> (batch, L, d_model), or (batch, d_model) with ``last_only``.

    Padding: ``mask`` (batch, L) bool, True at valid positions, makes the output at valid positions
    (and every gradient) independent of how much padding surrounds the sequence, on the left or
    on the right. The block zeroes the conv input at padded positions (so the conv of a valid
    position sees zeros where padding sits, exactly as at the start of a sequence), sets the
    effective step size delta = softplus(dt + dt_bias) to 0 there (exp(0 * A) = 1 and delta B u = 0:
    the state passes through unchanged) and zeroes the output there. Without a mask, right padding
    is already harmless to valid positions (the block is causal), left padding is not.

    Right padding by length: ``lengths`` (batch,) integer in [0, L] says row ``b`` is valid at
    positions ``0 .. lengths[b] - 1``; the scan stops walking the row there (the outputs at valid
    positions are unchanged, those after them carry no scan output). With ``last_only`` the block
    returns only the output at each row's last valid position (``lengths[b] - 1``, or ``L - 1``
    without lengths; zeros where ``lengths[b] == 0`` or where ``mask`` pads that position): the scan
    reads out that one position and out_proj runs on one position per row. Values and gradients equal
    those of the full output read at that position.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)

        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=bias, **factory)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1,
                                bias=conv_bias, **factory)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)

        # dt_proj weight: variance-preserving at init.
        dt_init_std = self.dt_rank ** -0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        else:
            raise ValueError(f"dt_init: expected 'random' or 'constant', got {dt_init!r}")
        # dt_proj bias: softplus(bias) log-uniform in [dt_min, dt_max], via the inverse softplus.
        dt = torch.exp(
            torch.rand(self.d_inner, **factory) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        inv_dt = dt + torch.log(-torch.expm1(-dt))
        with torch.no_grad():
            self.dt_proj.bias.copy_(inv_dt)
        self.dt_proj.bias._no_reinit = True

        # S4D real initialisation: A = -(1, 2, ..., d_state) for every channel, stored as log(-A).
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None, *,
                lengths: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """hidden_states (batch, L, d_model), mask (batch, L) bool or None, lengths (batch,) integer or
        None -> (batch, L, d_model), or (batch, d_model) with ``last_only``."""
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.d_model:
            raise ValueError(f"hidden_states: expected shape (batch, L, d_model={self.d_model}), "
                             f"got {tuple(hidden_states.shape)}")
        batch, seqlen, _ = hidden_states.shape
        if mask is not None:
            if mask.shape != (batch, seqlen) or mask.dtype != torch.bool:
                raise ValueError(f"mask: expected a bool tensor of shape (batch, L) = {(batch, seqlen)}, "
                                 f"got {mask.dtype} {tuple(mask.shape)}")
            valid = mask[:, None, :].to(hidden_states.dtype)  # (batch, 1, L)

        # the ops take channels before length: "b l d -> b d l" views, no copy
        xz = rearrange(self.in_proj(hidden_states), "b l d -> b d l")  # d = 2 * d_inner
        x, z = xz.chunk(2, dim=1)
        if mask is not None:
            x = x * valid
        conv_weight = self.conv1d.weight.squeeze(1)  # (d_inner, d_conv)
        x = mdaf_kernels.causal_conv1d_fn(x, conv_weight, self.conv1d.bias, activation="silu")

        x_dbl = self.x_proj(rearrange(x, "b d l -> b l d"))  # d: dt_rank + 2 * d_state
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = rearrange(dt @ self.dt_proj.weight.t(), "b l d -> b d l")  # bias added in the scan
        # (batch, N, L) views of x_proj's output: each step's N values stay adjacent, the layout the
        # Triton forward loads best and the CPU kernel copies once into (batch, L, N).
        B = rearrange(B, "b l n -> b n l")
        C = rearrange(C, "b l n -> b n l")
        A = -torch.exp(self.A_log.float())
        scan = {"lengths": lengths, "last_only": last_only}
        if mask is None:
            y = mdaf_kernels.selective_scan_fn(x, dt, A, B, C, self.D.float(), z=z,
                                               delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
                                               **scan)
        else:
            # The step size must be 0 after bias and softplus, so they are applied here.
            delta = F.softplus(dt + self.dt_proj.bias.to(dt.dtype)[:, None]) * valid
            y = mdaf_kernels.selective_scan_fn(x, delta, A, B, C, self.D.float(), z=z, **scan)
        if not last_only:
            out = self.out_proj(rearrange(y, "b d l -> b l d"))
            return out if mask is None else out * rearrange(valid, "b 1 l -> b l 1")
        out = self.out_proj(y)  # (batch, d_model): one position per row
        # An empty row, or a last position the mask pads, reads zeros (as gather_last gives), not out_proj's
        # bias.
        keep = None if lengths is None else lengths > 0
        if mask is not None:
            if lengths is None:
                at_last = mask[:, -1]
            else:
                at_last = mask.gather(1, (lengths.long() - 1).clamp(min=0)[:, None]).squeeze(1)
            keep = at_last if keep is None else keep & at_last
        return out if keep is None else torch.where(keep[:, None], out, torch.zeros_like(out))
