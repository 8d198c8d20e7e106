"""mdaf_kernels.nn.Mamba vs a float64 functional oracle (F.conv1d + selective_scan_ref), and padding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mdaf_kernels import backend
from mdaf_kernels.nn import Mamba
from mdaf_kernels.reference.selective_scan import selective_scan_ref
from tests.tolerance import assert_close


def mamba_oracle(params: dict[str, torch.Tensor], x: torch.Tensor, d_state: int,
                 dt_rank: int) -> torch.Tensor:
    """mamba_ssm's slow path written out with plain torch ops (no mdaf_kernels op involved)."""
    seqlen = x.shape[1]
    xz = (x @ params["in_proj.weight"].t() + params.get("in_proj.bias", 0.0)).transpose(1, 2)
    u, z = xz.chunk(2, dim=1)
    w = params["conv1d.weight"]
    u = F.conv1d(u, w, params["conv1d.bias"], padding=w.shape[-1] - 1, groups=w.shape[0])
    u = F.silu(u[..., :seqlen])
    x_dbl = u.transpose(1, 2) @ params["x_proj.weight"].t()
    dt, B, C = torch.split(x_dbl, [dt_rank, d_state, d_state], dim=-1)
    dt = (dt @ params["dt_proj.weight"].t()).transpose(1, 2)
    A = -torch.exp(params["A_log"])
    y = selective_scan_ref(u, dt, A, B.transpose(1, 2), C.transpose(1, 2), params["D"], z=z,
                           delta_bias=params["dt_proj.bias"], delta_softplus=True)
    return y.transpose(1, 2) @ params["out_proj.weight"].t() + params.get("out_proj.bias", 0.0)


def make_block(d_model=8, d_state=4, **kw):
    torch.manual_seed(0)
    block = Mamba(d_model, d_state=d_state, **kw)
    with torch.no_grad():  # a non-trivial D and conv bias, so every path carries signal
        block.D.normal_()
        block.conv1d.bias.normal_()
    return block


@pytest.mark.parametrize("be, seqlen", [("triton", 11), ("torch", 40)])
def test_forward_backward_match_float64_oracle(be, seqlen, seeded, device):
    block = make_block().to(device if be == "triton" else "cpu")
    x = torch.randn(2, seqlen, 8, generator=seeded)
    dout = torch.randn(2, seqlen, 8, generator=seeded)

    params64 = {k: p.detach().double().cpu().requires_grad_() for k, p in block.named_parameters()}
    x64 = x.double().requires_grad_()
    ref = mamba_oracle(params64, x64, block.d_state, block.dt_rank)
    ref_grads = torch.autograd.grad((ref * dout.double()).sum(), [x64, *params64.values()])

    x32 = x.to(block.D.device).requires_grad_()
    with backend.use(be):
        out = block(x32)
        grads = torch.autograd.grad((out * dout.to(out.device)).sum(), [x32, *block.parameters()])
    assert_close(out, ref, torch.float32, name="out")
    for name, g, g_ref in zip(["x", *params64], grads, ref_grads, strict=True):
        # Parameter gradients sum over batch and time: allow for that accumulation.
        assert_close(g, g_ref, torch.float32, name=f"d{name}", factor=3.0)


def block_grads(block, x, mask, dout):
    dev = block.D.device
    x = x.to(dev).requires_grad_()
    out = block(x, mask.to(dev))
    grads = torch.autograd.grad((out * dout.to(dev)).sum(), [x, *block.parameters()])
    return out, grads


@pytest.mark.parametrize("be, left, right",
                         [("triton", 3, 2), ("torch", 0, 6), ("torch", 7, 0), ("torch", 4, 9)])
def test_mask_makes_valid_outputs_and_gradients_padding_independent(be, left, right, seeded, device):
    block = make_block().to(device if be == "triton" else "cpu")
    valid = 6
    x = torch.randn(2, valid, 8, generator=seeded)
    dout = torch.randn(2, valid, 8, generator=seeded)
    total = left + valid + right
    x_pad = torch.randn(2, total, 8, generator=seeded) * 3.0  # garbage at padded positions
    x_pad[:, left:left + valid] = x
    dout_pad = torch.randn(2, total, 8, generator=seeded)  # whatever flows into padded outputs is dropped
    dout_pad[:, left:left + valid] = dout
    mask = torch.zeros(2, total, dtype=torch.bool)
    mask[:, left:left + valid] = True
    with backend.use(be):
        out, grads = block_grads(block, x, torch.ones(2, valid, dtype=torch.bool), dout)
        out_p, grads_p = block_grads(block, x_pad, mask, dout_pad)
    sl = slice(left, left + valid)
    out_p, out = out_p.cpu(), out.cpu()
    grads_p = [g.cpu() for g in grads_p]
    assert_close(out_p[:, sl], out, torch.float32, name="out")
    assert torch.count_nonzero(out_p[:, :left]) == 0 and torch.count_nonzero(out_p[:, left + valid:]) == 0
    assert_close(grads_p[0][:, sl], grads[0], torch.float32, name="dx")
    assert torch.count_nonzero(grads_p[0][:, :left]) == 0
    for (name, _), g_p, g in zip(block.named_parameters(), grads_p[1:], grads[1:], strict=True):
        assert_close(g_p, g, torch.float32, name=f"d{name}")


def read_last(states: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """(batch, L, d) -> (batch, d): row b at position lengths[b] - 1 (L - 1 without lengths), zeros when
    the row is empty."""
    if lengths is None:
        return states[:, -1]
    rows = torch.arange(states.shape[0])
    last = states[rows, (lengths - 1).clamp(min=0)]
    return torch.where((lengths > 0)[:, None], last, torch.zeros_like(last))


@pytest.mark.parametrize("be, seqlen, lengths", [
    ("torch", 40, [0, 1, 40, 17]),
    ("torch", 9, None),
    ("triton", 7, [0, 1, 7, 4]),
    ("triton", 5, None),
])
def test_last_only_matches_float64_oracle_read_at_the_last_position(be, seqlen, lengths, seeded, device):
    # Linear biases on: out_proj's bias must not leak into the zeros of an empty row.
    block = make_block(bias=True).to(device if be == "triton" else "cpu")
    batch = 4 if lengths is not None else 2
    lens = None if lengths is None else torch.tensor(lengths)
    x = torch.randn(batch, seqlen, 8, generator=seeded)
    dout = torch.randn(batch, 8, generator=seeded)

    params64 = {k: p.detach().double().cpu().requires_grad_() for k, p in block.named_parameters()}
    x64 = x.double().requires_grad_()
    ref = read_last(mamba_oracle(params64, x64, block.d_state, block.dt_rank), lens)
    ref_grads = torch.autograd.grad((ref * dout.double()).sum(), [x64, *params64.values()])

    dev = block.D.device
    x32 = x.to(dev).requires_grad_()
    with backend.use(be):
        out = block(x32, lengths=None if lens is None else lens.to(dev), last_only=True)
        grads = torch.autograd.grad((out * dout.to(dev)).sum(), [x32, *block.parameters()])
    assert out.shape == (batch, 8)
    assert_close(out, ref, torch.float32, name="out")
    if lens is not None:
        assert torch.count_nonzero(out[lens == 0]) == 0
    for name, g, g_ref in zip(["x", *params64], grads, ref_grads, strict=True):
        # Parameter gradients sum over batch and time: allow for that accumulation.
        assert_close(g, g_ref, torch.float32, name=f"d{name}", factor=3.0)


def test_lengths_leave_valid_outputs_as_the_full_path(seeded):
    block = make_block()
    lengths = torch.tensor([0, 1, 13, 6])
    x = torch.randn(4, 13, 8, generator=seeded)
    with backend.use("torch"):
        full, short = block(x), block(x, lengths=lengths)
    valid = torch.arange(13)[None, :] < lengths[:, None]
    assert_close(short[valid], full[valid], torch.float32, name="valid outputs")


def test_last_only_with_a_mask_reads_zero_at_a_padded_last_position(seeded):
    block = make_block()
    x = torch.randn(2, 6, 8, generator=seeded)
    mask = torch.tensor([[True] * 6, [False] * 2 + [True] * 3 + [False]])  # row 1 ends on padding
    with backend.use("torch"):
        full = block(x, mask)
        last = block(x, mask, last_only=True)
    assert_close(last[0], full[0, -1], torch.float32, name="row 0")
    assert torch.count_nonzero(last[1]) == 0


def test_all_true_mask_equals_no_mask(seeded):
    block = make_block()
    x = torch.randn(2, 9, 8, generator=seeded)
    with backend.use("torch"):
        assert_close(block(x, torch.ones(2, 9, dtype=torch.bool)), block(x), torch.float32)


def test_parameters_and_init_follow_mamba_ssm():
    d_model, d_state, d_conv, expand = 16, 8, 4, 2
    block = Mamba(d_model, d_state=d_state, d_conv=d_conv, expand=expand)
    d_inner, dt_rank = expand * d_model, math.ceil(d_model / 16)
    # mamba_ssm.modules.mamba_simple.Mamba's state_dict (bias=False, conv_bias=True).
    expected = {
        "A_log": (d_inner, d_state), "D": (d_inner,), "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, d_conv), "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 2 * d_state, d_inner), "dt_proj.weight": (d_inner, dt_rank),
        "dt_proj.bias": (d_inner,), "out_proj.weight": (d_model, d_inner),
    }
    assert {k: tuple(v.shape) for k, v in block.state_dict().items()} == expected
    block.load_state_dict({k: torch.randn(s) for k, s in expected.items()})
    fresh = Mamba(d_model, d_state=d_state)
    assert torch.equal(fresh.A_log, torch.log(torch.arange(1, d_state + 1.0)).repeat(d_inner, 1))
    assert torch.equal(fresh.D, torch.ones(d_inner))
    dt = F.softplus(fresh.dt_proj.bias)
    assert (dt >= 1e-3 * 0.999).all() and (dt <= 0.1 * 1.001).all()
    assert getattr(fresh.dt_proj.bias, "_no_reinit", False)


def test_bad_shapes_raise():
    block = Mamba(8, d_state=4)
    with pytest.raises(ValueError, match="hidden_states: expected shape"):
        block(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match="mask: expected a bool tensor"):
        block(torch.randn(2, 5, 8), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="lengths: expected values in"):
        block(torch.randn(2, 5, 8), lengths=torch.tensor([3, 6]), last_only=True)
