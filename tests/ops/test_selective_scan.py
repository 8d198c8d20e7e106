"""selective_scan_fn (Triton in the interpreter on CPU, the compiled CPU kernel and the torch backend)
vs the float64 oracle."""

from __future__ import annotations

import platform
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdaf_kernels import backend
from mdaf_kernels.ops import selective_scan as scan_ops
from mdaf_kernels.ops.selective_scan import MAX_DSTATE, selective_scan_fn, selective_scan_fwd
from mdaf_kernels.reference.selective_scan import num_checkpoints, selective_scan_ref
from mdaf_kernels.tools.memory import count_saved_tensors
from tests.tolerance import assert_close

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
# The backends that run on CPU tensors without the interpreter.
CPU_BACKENDS = ["cpu", "torch"]


def runnable(be: str) -> str:
    """``be``, skipping the test when it is the compiled CPU backend and numba is not installed."""
    if be == "cpu":
        pytest.importorskip("numba", reason="the compiled CPU kernel needs numba (the [cpu] extra)")
    return be


def make_inputs(batch, dim, length, dstate, dtype, *, groups=0, has_d=True, has_z=True, has_bias=True,
                gen=None, device="cpu"):
    """Inputs in ``dtype`` (A, D, delta_bias fp32 as in mamba_ssm) with values of typical magnitude."""
    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    bc_shape = (batch, groups, dstate, length) if groups else (batch, dstate, length)
    ins = {
        "u": rand(batch, dim, length).to(dtype),
        # Positive, so that exp(delta A) <= 1 also without softplus (a growing state overflows).
        "delta": (0.5 * rand(batch, dim, length).abs()).to(dtype),
        "A": -torch.exp(0.5 * rand(dim, dstate)).float(),
        "B": rand(*bc_shape).to(dtype),
        "C": rand(*bc_shape).to(dtype),
        "D": rand(dim).float() if has_d else None,
        "z": rand(batch, dim, length).to(dtype) if has_z else None,
        "delta_bias": (0.5 * rand(dim)).float() if has_bias else None,
    }
    return to_device(ins, device)


def to_device(ins, device):
    return {k: None if v is None else v.to(device) for k, v in ins.items()}


def grads_of(fn, ins, dout, dlast, **kw):
    """Output, last state and the gradient of <out, dout> + <last, dlast> for every present input."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in ins.items() if v is not None}
    args = {k: leaves.get(k) for k in NAMES}
    out, last = fn(**args, return_last_state=True, **kw)
    loss = (out.double() * dout.to(out.device)).sum() + (last.double() * dlast.to(out.device)).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return out, last, dict(zip(leaves, grads, strict=True))


def check_against_oracle(ins, dtype, *, delta_softplus=True, with_last=True, grad_factor=1.0, gen=None,
                         lengths=None, last_only=False):
    batch, dim, length = ins["u"].shape
    dstate = ins["A"].shape[1]
    dout = torch.randn(*((batch, dim) if last_only else (batch, dim, length)), generator=gen,
                       dtype=torch.float64)
    dlast = torch.randn(batch, dim, dstate, generator=gen, dtype=torch.float64) * with_last
    ins64 = {k: None if v is None else v.double().cpu() for k, v in ins.items()}
    kw = dict(delta_softplus=delta_softplus, last_only=last_only)
    ref_out, ref_last, ref_grads = grads_of(selective_scan_ref, ins64, dout, dlast,
                                            lengths=None if lengths is None else lengths.cpu(), **kw)
    out, last, grads = grads_of(selective_scan_fn, ins, dout, dlast, lengths=lengths, **kw)
    assert out.dtype == dtype and last.dtype == torch.promote_types(dtype, torch.float32)
    assert_close(out, ref_out, dtype, name="out")
    assert_close(last, ref_last, dtype, name="last_state")
    for name, g in grads.items():
        assert g.dtype == ins[name].dtype, name
        # Gradients of A, D, delta_bias and B/C sum over batch, time or channels: more rounding.
        assert_close(g, ref_grads[name], dtype, name=f"d{name}", factor=grad_factor)


# Shapes chosen so each row adds something: L = 1, L not a power of two, L across several
# checkpoint chunks (32 steps), dim not a multiple of the channel block, N in {16, 32}, grouped B/C.
CASES = [
    # batch, dim, L, N, groups, dtype, D, z, bias, softplus
    pytest.param(1, 20, 1, 4, 0, torch.float32, True, True, True, True, id="L1"),
    pytest.param(1, 20, 7, 32, 0, torch.bfloat16, True, True, True, True, id="L7-N32-bf16"),
    pytest.param(1, 20, 50, 16, 0, torch.float32, True, True, True, True, id="L50-N16"),
    pytest.param(1, 20, 64, 16, 0, torch.bfloat16, False, True, False, False, id="L64-N16-bf16-noD-nobias"),
    pytest.param(1, 20, 129, 4, 0, torch.float32, True, False, True, True, id="L129-noz"),
    pytest.param(2, 24, 40, 5, 3, torch.float32, True, True, True, True, id="L40-grouped"),
    pytest.param(1, 20, 7, 16, 0, torch.float32, False, False, False, False, id="L7-plain"),
    pytest.param(1, 6, 5, 3, 2, torch.float32, True, True, True, True, id="grouped-odd-heads"),
    pytest.param(1, 20, 9, 6, 0, torch.bfloat16, True, True, True, True, id="L9-N6-bf16-unpacked-BC"),
]


@pytest.mark.parametrize("batch, dim, length, dstate, groups, dtype, has_d, has_z, has_bias, softplus", CASES)
def test_triton_matches_float64_oracle(batch, dim, length, dstate, groups, dtype, has_d, has_z, has_bias,
                                       softplus, seeded, device):
    ins = make_inputs(batch, dim, length, dstate, dtype, groups=groups, has_d=has_d, has_z=has_z,
                      has_bias=has_bias, gen=seeded, device=device)
    with backend.use("triton"):
        check_against_oracle(ins, dtype, delta_softplus=softplus, grad_factor=3.0, gen=seeded)


@pytest.mark.parametrize("groups", [0, 2])
def test_triton_reads_B_and_C_through_strides(groups, seeded, device):
    # B and C as (batch, [G,] L, N) tensors seen as (batch, [G,] N, L), as Mamba's x_proj makes them:
    # the forward reads them in place, the backward through their strides.
    ins = make_inputs(2, 12, 37, 6, torch.float32, groups=groups, gen=seeded, device=device)
    for name in ("B", "C"):
        ins[name] = ins[name].transpose(-1, -2).contiguous().transpose(-1, -2)
        assert ins[name].stride(-2) == 1
    with backend.use("triton"):
        check_against_oracle(ins, torch.float32, grad_factor=3.0, gen=seeded)


@pytest.mark.parametrize("dim, groups, lengths, last_only", [
    (10, 0, None, False),  # channel blocks of 4, 4 and 2 (masked) in one program
    (16, 2, [11, 3], True),  # two blocks in each group's program
])
def test_backward_sums_dB_and_dC_over_several_channel_blocks(dim, groups, lengths, last_only, seeded, device,
                                                               monkeypatch):
    # Each backward program walks its group's channel blocks in turn, adding each block's share of
    # dB and dC to what the earlier blocks stored.
    monkeypatch.setattr(scan_ops, "BWD_BLOCK_D", 4)
    ins = make_inputs(2, dim, 11, 3, torch.float32, groups=groups, gen=seeded, device=device)
    lengths = None if lengths is None else torch.tensor(lengths, device=device)
    with backend.use("triton"):
        check_against_oracle(ins, torch.float32, grad_factor=3.0, gen=seeded, lengths=lengths,
                             last_only=last_only)


@pytest.mark.parametrize("last_only", [False, True], ids=["full", "last_only"])
def test_backward_error_does_not_grow_with_the_sequence_length(last_only, seeded, device):
    # The backward forms the decay's gradient as a difference of two sums, each up to about
    # BWD_WINDOW / 2 times larger than it; restarting them at every window keeps that ratio, and so
    # dA's rounding, bounded however long the row (summed over the whole row, dA's error at L = 200
    # was 5e-5; per 32-step chunk 4e-6, per 8-step window 1e-6). The last-position backward walks
    # dh * h back by differences, restarted from the forward's state at every chunk's end (without
    # restarts, dA's and d delta_bias's errors were 1.5e-5..3e-5 here; with them ~1e-6). So the bound
    # here is half the fp32 one, not 3 times it as for the other gradients.
    ins = make_inputs(1, 8, 300, 16, torch.float32, gen=seeded, device=device)
    with backend.use("triton"):
        check_against_oracle(ins, torch.float32, grad_factor=0.5, gen=seeded, last_only=last_only)


@pytest.mark.parametrize("lengths, last_only", [(None, False), ([1, 1], True)])
def test_decay_gradient_is_exactly_zero_when_only_the_first_step_is_read(lengths, last_only, seeded, device):
    # Read at step 0 only, the state before it is 0, so dA is exactly 0 (as a CTR batch with a
    # one-click history gives it); the backward takes each window's first step directly, not as a
    # difference of two sums that would leave rounding noise there.
    ins = make_inputs(2, 6, 12, 4, torch.float32, gen=seeded, device=device)
    leaves = {k: v.requires_grad_() for k, v in ins.items() if v is not None}
    with backend.use("triton"):
        out = selective_scan_fn(**leaves, delta_softplus=True, last_only=last_only,
                                lengths=None if lengths is None else torch.tensor(lengths, device=device))
    read = torch.zeros_like(out)
    if last_only:
        read += 1.0
    else:
        read[..., 0] = 1.0
    (out * read).sum().backward()
    assert leaves["A"].grad.abs().max().item() == 0.0
    assert leaves["u"].grad.abs().max().item() > 0.0


@pytest.mark.parametrize("lengths, last_only", [(None, False), ([37, 20], True)])
def test_int64_offset_path_matches_float64_oracle(lengths, last_only, seeded, device, monkeypatch):
    monkeypatch.setattr(scan_ops, "_needs_int64_offsets", lambda *sizes: True)
    ins = make_inputs(2, 12, 37, 6, torch.float32, gen=seeded, device=device)
    lengths = None if lengths is None else torch.tensor(lengths, device=device)
    with backend.use("triton"):
        check_against_oracle(ins, torch.float32, grad_factor=3.0, gen=seeded, lengths=lengths,
                             last_only=last_only)


def _bc_as_forward_reads(dtype, dstate, length=5, offset=0):
    """B laid out (batch, L, N) and seen as (batch, N, L), starting ``offset`` elements in."""
    flat = torch.randn(2 * length * dstate + offset).to(dtype)
    return flat[offset:].view(2, length, dstate).transpose(1, 2)


@pytest.mark.parametrize("dtype, dstate, offset, expected", [
    (torch.bfloat16, 16, 0, True),  # four values per 64-bit load
    (torch.bfloat16, 6, 0, False),  # N not a multiple of 4: rows not 8-byte aligned
    (torch.bfloat16, 16, 2, False),  # the first row starts 4 bytes into an 8-byte word
    (torch.float16, 16, 0, False),  # a half is not the high half of an fp32
    (torch.float32, 16, 0, False),
])
def test_forward_packs_bf16_B_and_C_loads_only_where_aligned(dtype, dstate, offset, expected):
    bc = _bc_as_forward_reads(dtype, dstate, offset=offset)
    assert scan_ops._packed_bc(bc, bc) is expected


@pytest.mark.parametrize("dim, seqlen, dstate, expected", [
    (128, 50, 32, False),  # the MDAF shape
    (2**16, 2**15, 16, True),  # dim * L = 2**31 (u, delta, z and their gradients)
    (2**15, 2**16 - 1, 16, False),  # just below
    (1, 2**26, 32, True),  # N * L = 2**31 (B, C in one group; dB/dC partials)
    (4096, 2**18, 64, True),  # checkpoints: (8191 + 1) x 4096 x 64 = 2**31, the rest below
])
def test_needs_int64_offsets_from_the_sizes(dim, seqlen, dstate, expected):
    assert scan_ops._needs_int64_offsets(dim, seqlen, dstate) is expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("length, groups", [(1, 0), (50, 0), (129, 2)])
@pytest.mark.parametrize("be", CPU_BACKENDS)
def test_cpu_backends_match_float64_oracle(be, length, groups, dtype, seeded):
    ins = make_inputs(3, 12, length, 16, dtype, groups=groups, gen=seeded)
    with backend.use(runnable(be)):
        check_against_oracle(ins, dtype, grad_factor=3.0, gen=seeded)


@pytest.mark.parametrize("has_d, has_z, has_bias, softplus", [(False, False, False, False),
                                                              (True, False, True, False)])
def test_cpu_kernel_without_optional_inputs_matches_float64_oracle(has_d, has_z, has_bias, softplus, seeded):
    ins = make_inputs(2, 10, 37, 7, torch.float32, has_d=has_d, has_z=has_z, has_bias=has_bias, gen=seeded)
    with backend.use(runnable("cpu")):
        check_against_oracle(ins, torch.float32, delta_softplus=softplus, grad_factor=3.0, gen=seeded)


# Per-row lengths: empty rows, a single step, full rows and rows ending inside a later chunk.
LENGTH_CASES = [
    # batch, dim, L, N, groups, dtype, lengths
    pytest.param(2, 20, 1, 4, 0, torch.float32, [0, 1], id="L1"),
    pytest.param(4, 20, 40, 5, 0, torch.float32, [0, 1, 40, 33], id="L40-mixed"),
    pytest.param(3, 24, 13, 16, 3, torch.float32, [13, 5, 0], id="L13-grouped"),
    pytest.param(2, 20, 9, 32, 0, torch.bfloat16, [9, 4], id="L9-N32-bf16"),
    pytest.param(2, 20, 6, 4, 0, torch.float32, None, id="L6-no-lengths"),
]


@pytest.mark.parametrize("last_only", [False, True], ids=["full", "last_only"])
@pytest.mark.parametrize("batch, dim, length, dstate, groups, dtype, lengths", LENGTH_CASES)
@pytest.mark.parametrize("be", ["triton", *CPU_BACKENDS])
def test_lengths_and_last_only_match_float64_oracle(be, batch, dim, length, dstate, groups, dtype, lengths,
                                                    last_only, seeded, device):
    runnable(be)
    dev = device if be == "triton" else torch.device("cpu")
    ins = make_inputs(batch, dim, length, dstate, dtype, groups=groups, gen=seeded, device=dev)
    lengths = None if lengths is None else torch.tensor(lengths, device=dev)
    with backend.use(be):
        check_against_oracle(ins, dtype, grad_factor=3.0, gen=seeded, lengths=lengths, last_only=last_only)


def test_oracle_lengths_equal_truncated_rows_and_last_only_reads_the_last_step(seeded):
    """The oracle's own semantics: a row with lengths[b] = n is the scan of its first n steps
    followed by zeros, its last state is that scan's, and last_only reads position n - 1 (0 if n = 0)."""
    lens = [0, 1, 4, 7]
    ins = make_inputs(4, 6, 7, 3, torch.float64, gen=seeded)
    ins = {k: None if v is None else v.double() for k, v in ins.items()}
    lengths = torch.tensor(lens)
    out, last = selective_scan_ref(**ins, delta_softplus=True, return_last_state=True, lengths=lengths)
    out_last = selective_scan_ref(**ins, delta_softplus=True, lengths=lengths, last_only=True)
    for b, n in enumerate(lens):
        row = {k: v if v is None or k in ("A", "D", "delta_bias") else v[b:b + 1, ..., :n]
               for k, v in ins.items()}
        if n > 0:
            out_b, last_b = selective_scan_ref(**row, delta_softplus=True, return_last_state=True)
            torch.testing.assert_close(out[b, :, :n], out_b[0])
            torch.testing.assert_close(last[b], last_b[0])
            torch.testing.assert_close(out_last[b], out_b[0, :, -1])
        else:
            assert torch.equal(last[b], torch.zeros_like(last[b]))
            assert torch.equal(out_last[b], torch.zeros_like(out_last[b]))
        assert torch.equal(out[b, :, n:], torch.zeros_like(out[b, :, n:]))


def test_torch_backend_float64_is_exact(seeded):
    ins = make_inputs(2, 6, 70, 8, torch.float64, groups=2, gen=seeded)
    ins = {k: None if v is None else v.double() for k, v in ins.items()}
    with backend.use("torch"):
        check_against_oracle(ins, torch.float64, gen=seeded)


def test_without_last_state_returns_only_output(seeded, device):
    ins = make_inputs(1, 20, 9, 4, torch.float32, gen=seeded, device=device)
    with backend.use("triton"):
        out = selective_scan_fn(**ins, delta_softplus=True)
    ins64 = {k: None if v is None else v.double().cpu() for k, v in ins.items()}
    ref = selective_scan_ref(**ins64, delta_softplus=True)
    assert isinstance(out, torch.Tensor)
    assert_close(out, ref, torch.float32)


@pytest.mark.parametrize("be", ["triton", "torch"])
def test_no_checkpoints_without_grad(be, seeded, device):
    """Inference (no input needs a gradient) writes no checkpoints and gives the same output."""
    ins = make_inputs(1, 20, 40, 4, torch.float32, gen=seeded, device=device if be == "triton" else "cpu")
    args = [ins[k] for k in NAMES]
    with backend.use(be):
        out, _, ckpt = selective_scan_fwd(*args, None, True, False, False, True)
        out_inf, _, ckpt_inf = selective_scan_fwd(*args, None, True, False, False, False)
    assert ckpt.shape[1] == num_checkpoints(40) == 1 and ckpt_inf.shape[1] == 0
    assert torch.equal(out, out_inf)


@pytest.mark.parametrize("be", ["triton", *CPU_BACKENDS])
@pytest.mark.parametrize("left, right", [(0, 5), (6, 0), (3, 35)])
def test_padding_with_zero_delta_leaves_valid_positions_unchanged(be, left, right, seeded, device):
    """A sequence gives the same outputs and gradients whatever zero-delta padding surrounds it."""
    runnable(be)
    device = device if be == "triton" else torch.device("cpu")
    valid = 9
    ins = make_inputs(1, 20, valid, 4, torch.float32, has_bias=False, gen=seeded)
    dout = torch.randn(1, 20, valid, generator=seeded, dtype=torch.float64)

    def pad(t, fill_delta=False):
        noise = torch.randn(*t.shape[:-1], left + right, generator=seeded, dtype=t.dtype)
        if fill_delta:
            noise.zero_()
        return torch.cat([noise[..., :left], t, noise[..., left:]], dim=-1)

    padded = {k: (pad(v, k == "delta") if k in ("u", "delta", "B", "C", "z") else v) for k, v in ins.items()}
    dout_padded = torch.cat([torch.zeros(1, 20, left, dtype=torch.float64), dout,
                             torch.zeros(1, 20, right, dtype=torch.float64)], dim=-1)
    dlast = torch.zeros(1, 20, 4, dtype=torch.float64)
    with backend.use(be):
        out, last, grads = grads_of(selective_scan_fn, to_device(ins, device), dout, dlast)
        out_p, last_p, grads_p = grads_of(selective_scan_fn, to_device(padded, device), dout_padded, dlast)
    sl = slice(left, left + valid)
    assert_close(out_p[..., sl], out, torch.float32, name="out")
    assert_close(last_p, last, torch.float32, name="last_state")
    for name, g in grads.items():
        g_p = grads_p[name][..., sl] if name in ("u", "delta", "B", "C", "z") else grads_p[name]
        assert_close(g_p, g, torch.float32, name=f"d{name}")


def test_reductions_are_deterministic(seeded, device, monkeypatch):
    # Three channel blocks (summed into dB, dC in one program) and two batch rows (partials of dA,
    # dD, d delta_bias summed afterwards).
    monkeypatch.setattr(scan_ops, "BWD_BLOCK_D", 8)
    ins = make_inputs(2, 20, 12, 4, torch.float32, gen=seeded, device=device)
    dout = torch.randn(2, 20, 12, generator=seeded, dtype=torch.float64)
    dlast = torch.zeros(2, 20, 4, dtype=torch.float64)
    with backend.use("triton"):
        runs = [grads_of(selective_scan_fn, ins, dout, dlast, delta_softplus=True)[2] for _ in range(2)]
    for name in ("A", "B", "C", "D", "delta_bias"):
        assert torch.equal(runs[0][name], runs[1][name]), f"d{name} differs between two identical runs"


def test_cpu_kernel_gradients_do_not_depend_on_the_thread_count(seeded):
    """The batch is split into a fixed number of parts, whatever the threads: same sums, same bits."""
    ins = make_inputs(70, 6, 12, 4, torch.float32, gen=seeded)
    dout = torch.randn(70, 6, 12, generator=seeded, dtype=torch.float64)
    dlast = torch.zeros(70, 6, 4, dtype=torch.float64)
    threads = torch.get_num_threads()
    runs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with backend.use(runnable("cpu")):
                runs.append(grads_of(selective_scan_fn, ins, dout, dlast, delta_softplus=True)[2])
    finally:
        torch.set_num_threads(threads)
    for name in NAMES:
        assert torch.equal(runs[0][name], runs[1][name]), f"d{name} differs between 1 and 2 threads"


def test_opcheck(seeded):
    ins = make_inputs(2, 4, 5, 3, torch.float32, gen=seeded)
    for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias"):
        ins[k].requires_grad_()
    for be in CPU_BACKENDS:
        with backend.use(runnable(be)):
            args = [ins[k] for k in NAMES]
            torch.library.opcheck(selective_scan_fwd, (*args, None, True, True, False, True))
            torch.library.opcheck(selective_scan_fwd, (*args, torch.tensor([0, 4]), True, True, True, True))


@pytest.mark.parametrize("lengths, last_only", [(None, False), ([3], True)])
def test_opcheck_triton(lengths, last_only, seeded, device):
    ins = make_inputs(1, 4, 3, 2, torch.float32, gen=seeded, device=device)
    for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias"):
        ins[k].requires_grad_()
    lengths = None if lengths is None else torch.tensor(lengths, device=device)
    args = (*(ins[k] for k in NAMES), lengths, True, False, last_only, True)
    with backend.use("triton"):
        torch.library.opcheck(selective_scan_fwd, args)


@pytest.mark.parametrize("be, last_only, states", [
    ("triton", False, num_checkpoints(129)),  # the state entering each chunk after the first
    ("torch", False, num_checkpoints(129)),
    ("triton", True, 5),  # the state at the end of each of the 5 chunks: the final one included
])
def test_saved_for_backward_is_inputs_plus_checkpoints_no_larger_than_inputs(be, last_only, states, seeded,
                                                                            device):
    """Backward keeps the inputs and one (dim, N) state per 32 steps, never a per-step state."""
    ins = make_inputs(1, 20, 129, 32, torch.bfloat16, gen=seeded, device=device if be == "triton" else "cpu")
    leaves = {k: v.requires_grad_() for k, v in ins.items()}
    input_bytes = sum(t.numel() * t.element_size() for t in leaves.values())
    with backend.use(be), count_saved_tensors() as saved:
        selective_scan_fn(**leaves, delta_softplus=True, last_only=last_only)
    checkpoint_bytes = 4 * states * 20 * 32
    assert saved.activation_bytes == input_bytes + checkpoint_bytes
    assert checkpoint_bytes <= input_bytes


def test_cpu_kernel_saves_only_the_inputs(seeded):
    """The compiled CPU backward recomputes each row from its start: no checkpoints are kept."""
    ins = make_inputs(1, 20, 129, 32, torch.bfloat16, gen=seeded)
    leaves = {k: v.requires_grad_() for k, v in ins.items()}
    input_bytes = sum(t.numel() * t.element_size() for t in leaves.values())
    with backend.use(runnable("cpu")), count_saved_tensors() as saved:
        selective_scan_fn(**leaves, delta_softplus=True)
    assert saved.activation_bytes == input_bytes


def test_cpu_backend_runs_float64_exactly(seeded):
    """The compiled kernel computes in fp32; float64 inputs run the (exact) PyTorch path instead."""
    ins = make_inputs(2, 6, 40, 8, torch.float64, gen=seeded)
    ins = {k: None if v is None else v.double() for k, v in ins.items()}
    with backend.use(runnable("cpu")):
        check_against_oracle(ins, torch.float64, gen=seeded, lengths=torch.tensor([40, 3]))


def test_cpu_exp_relative_error_is_below_2e_7():
    """The vectorisable exp of the CPU kernel against float64 exp over fp32's normal range."""
    pytest.importorskip("numba")
    from mdaf_kernels.cpu.primitives import exp_array

    x = np.concatenate([np.linspace(-87.0, 88.0, 1_000_001), np.linspace(-1e-3, 1e-3, 10_001)])
    x = x.astype(np.float32)
    out = np.empty_like(x)
    exp_array(x, out)
    ref = np.exp(x.astype(np.float64))
    assert np.max(np.abs(out - ref) / ref) < 2e-7
    tiny = np.linspace(-200.0, -87.0, 10_001).astype(np.float32)
    exp_array(tiny, out[:tiny.size])
    assert np.all((out[:tiny.size] >= 0) & (out[:tiny.size] < 2e-38))


@pytest.mark.parametrize("last_only", [False, True], ids=["full", "last_only"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_kernel_reads_channel_last_views_in_place(last_only, dtype, seeded):
    """u, delta and z as nn.Mamba passes them: (batch, dim, L) views of (batch, L, channels) tensors,
    delta and z the two halves of one wider tensor. Values and gradients equal the float64 oracle's,
    and the output and the gradients of u, delta and z keep the channel-last layout (no copies)."""
    batch, dim, length, dstate = 3, 20, 13, 8
    ins = make_inputs(batch, dim, length, dstate, dtype, gen=seeded)
    u = ins["u"].transpose(1, 2).contiguous().requires_grad_()  # (batch, L, dim)
    xz = torch.cat([ins["delta"], ins["z"]], dim=1).transpose(1, 2).contiguous().requires_grad_()
    views = dict(ins, u=u.transpose(1, 2), delta=xz[..., :dim].transpose(1, 2),
                 z=xz[..., dim:].transpose(1, 2))
    lengths = torch.tensor([13, 0, 5])
    kw = dict(delta_softplus=True, lengths=lengths, last_only=last_only)
    dout = torch.randn(*((batch, dim) if last_only else (batch, dim, length)), generator=seeded,
                       dtype=torch.float64)
    with backend.use(runnable("cpu")):
        out = selective_scan_fn(**{k: views[k] for k in NAMES}, **kw)
    grads = torch.autograd.grad((out.double() * dout).sum(), [views["u"], views["delta"], views["z"]])
    ref_leaves = {k: None if v is None else v.detach().double().contiguous().requires_grad_()
                  for k, v in views.items()}
    ref = selective_scan_ref(**{k: ref_leaves[k] for k in NAMES}, **kw)
    ref_grads = torch.autograd.grad((ref * dout).sum(), [ref_leaves[k] for k in ("u", "delta", "z")])
    assert_close(out, ref, dtype, name="out")
    for name, g, r in zip(("du", "ddelta", "dz"), grads, ref_grads, strict=True):
        assert_close(g, r, dtype, name=name)
        assert g.stride(1) == 1, f"{name} is not channel-last: strides {g.stride()}"
    if not last_only:
        assert out.stride(1) == 1, f"out is not channel-last: strides {out.stride()}"


def test_cpu_softplus_and_its_slope_match_float64():
    """The kernel's in-loop softplus (series for log1p) and sigmoid slope against float64, over inputs
    from deep in the flat tail to the linear part (where torch's softplus switches to x at 20)."""
    pytest.importorskip("numba")
    from mdaf_kernels.cpu.selective_scan import _effective_delta

    x = np.concatenate([np.linspace(-80.0, 80.0, 200_001), np.linspace(-1e-3, 1e-3, 2_001)])
    x = x.astype(np.float32)
    bias = np.float32(0.25)
    dt, slope = np.empty_like(x), np.empty_like(x)
    _effective_delta(x, bias, True, x.size, dt, slope)
    pre = torch.from_numpy(x).double() + 0.25
    ref_dt, ref_slope = F.softplus(pre).numpy(), torch.sigmoid(pre).numpy()
    normal = ref_dt > 1e-30  # below, fp32 flushes or rounds to subnormals
    assert np.max(np.abs(dt - ref_dt)[normal] / ref_dt[normal]) < 1e-6
    assert np.max(np.abs(slope - ref_slope)) < 1e-6
    _effective_delta(x, bias, False, x.size, dt, slope)
    assert np.array_equal(dt, x + bias) and np.all(slope == 1)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 MXCSR flags")
def test_cpu_kernel_flushes_subnormals_and_restores_the_thread_state(seeded):
    """A state of about 1e-39 (subnormal) is flushed to 0 inside the kernel (subnormal arithmetic is
    ~100x slower on x86), and the calling thread computes subnormals again afterwards."""
    ins = make_inputs(2, 4, 3, 2, torch.float32, has_z=False, has_bias=False, gen=seeded)
    ins.update(u=torch.full((2, 4, 3), 1e-20), delta=torch.ones(2, 4, 3), B=torch.full((2, 2, 3), 1e-19))
    with backend.use(runnable("cpu")):
        _, last = selective_scan_fn(**ins, return_last_state=True)
    assert torch.equal(last, torch.zeros_like(last))
    assert np.float32(1e-38) * np.float32(0.01) > 0, "the calling thread was left flushing subnormals"


def test_without_numba_auto_falls_back_with_one_one_line_warning(numba_missing, seeded):
    ins = make_inputs(2, 6, 9, 4, torch.float32, gen=seeded)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert backend.select(torch.device("cpu"), "selective_scan_fn", cpu_kernel=True) == "torch"
        check_against_oracle(ins, torch.float32, gen=seeded)
        selective_scan_fn(**ins)
    messages = [str(w.message) for w in caught if "numba" in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0], messages
    assert "PyTorch path" in messages[0] and "mdaf-kernels[cpu]" in messages[0]


def test_without_numba_an_explicit_cpu_request_raises(numba_missing, seeded):
    ins = make_inputs(1, 4, 3, 2, torch.float32, gen=seeded)
    with backend.use("cpu"), pytest.raises(backend.BackendUnavailableError, match="numba is not installed"):
        selective_scan_fn(**ins)


def test_import_does_not_import_numba():
    code = ("import sys, mdaf_kernels; mdaf_kernels.selective_scan_fn; "
            "assert 'numba' not in sys.modules, 'numba imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_float64_on_triton_raises(seeded):
    ins = make_inputs(1, 4, 3, 2, torch.float64, gen=seeded)
    with backend.use("triton"), pytest.raises(TypeError, match="float64 inputs run on the torch backend"):
        selective_scan_fn(**ins)


@pytest.mark.parametrize("be", CPU_BACKENDS)
def test_compiles_fullgraph(be, seeded):
    """No graph break through the custom ops, forward and backward. aot_eager traces exactly what
    inductor would (fake kernels, autograd registration) without its CPU codegen (~1 min here)."""
    ins = make_inputs(2, 4, 5, 3, torch.float32, gen=seeded)
    leaves = {k: v.requires_grad_() for k, v in ins.items()}

    def f(**kw):
        out, last = selective_scan_fn(**kw, delta_softplus=True, return_last_state=True)
        return out.sum() + last.sum()

    with backend.use(runnable(be)):
        eager = f(**leaves)
        (g_eager,) = torch.autograd.grad(eager, [leaves["A"]])
        compiled = torch.compile(f, fullgraph=True, backend="aot_eager")(**leaves)
        (g_comp,) = torch.autograd.grad(compiled, [leaves["A"]])
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(g_comp, g_eager)


def _good(**over):
    ins = make_inputs(1, 4, 3, 2, torch.float32)
    ins.update(over)
    return ins


@pytest.mark.parametrize("over, match", [
    (dict(delta=torch.zeros(1, 4, 5)), "delta: expected shape"),
    (dict(A=torch.zeros(4, 2, dtype=torch.complex64)), "A: complex"),
    (dict(A=-torch.ones(4, MAX_DSTATE + 1), B=torch.zeros(1, MAX_DSTATE + 1, 3),
          C=torch.zeros(1, MAX_DSTATE + 1, 3)), r"A: state size N = A.shape\[1\] = 65"),
    (dict(A=torch.zeros(5, 2)), "A: expected shape"),
    (dict(u=torch.zeros(1, 4, 3, dtype=torch.int32)), "u: expected dtype"),
    (dict(B=torch.zeros(1, 3, 3)), "B: expected shape"),
    (dict(B=torch.zeros(1, 3, 2, 3), C=torch.zeros(1, 3, 2, 3)), "B: the number of groups"),
    (dict(z=torch.zeros(1, 4, 3, device="meta")), "z: expected a tensor on cpu"),
    (dict(D=torch.zeros(3)), "D: expected shape"),
    (dict(lengths=torch.tensor([2.0])), "lengths: expected dtype"),
    (dict(lengths=torch.tensor([2, 2])), "lengths: expected shape"),
    (dict(lengths=torch.tensor([[2]])), "lengths: expected a 1-D tensor"),
    (dict(lengths=torch.tensor([4])), r"lengths: expected values in \[0, L=3\], got values in \[4, 4\]"),
    (dict(lengths=torch.tensor([-1])), r"lengths: expected values in \[0, L=3\]"),
    (dict(lengths=torch.tensor([1], device="meta")), "lengths: expected a tensor on cpu"),
])
def test_bad_input_raises_naming_the_argument(over, match):
    with pytest.raises((ValueError, TypeError), match=match):
        selective_scan_fn(**_good(**over))
