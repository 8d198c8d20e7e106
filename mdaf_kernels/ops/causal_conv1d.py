"""Causal depthwise Conv1d (+ SiLU): Triton kernels, torch.library registration, public function.

``causal_conv1d_fn(x, weight, bias=None, activation=None)`` follows the ``causal_conv1d`` package:
x (batch, dim, seqlen) with any strides (channel-last views of a (batch, seqlen, dim) tensor are read
in place), weight (dim, width), bias (dim,), activation None, "silu" or "swish"; the output has x's
shape and dtype, and is channel-last when x is.

Kernels compute in fp32 whatever the I/O dtype. The backward keeps only the inputs and recomputes
the pre-activation; dweight and dbias are reduced deterministically: each program writes fp32
partials over its run of (batch, time) tiles, and the partials are summed afterwards (no atomics).

CPU tensors run the compiled CPU kernel (``mdaf_kernels.cpu.causal_conv1d``, numba) when numba is
installed (backend ``cpu``, the ``auto`` choice), else the PyTorch path in
``mdaf_kernels.reference.causal_conv1d`` (backend ``torch``). Every backend returns the same layout.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from mdaf_kernels import backend
from mdaf_kernels._checks import check_shape, check_tensor
from mdaf_kernels.reference.causal_conv1d import causal_conv1d_bwd_ref, causal_conv1d_ref
from mdaf_kernels.tools.kernel_spec import KernelSpec, LaunchCost, jit_spec, tensor_bytes

WIDTHS = (2, 3, 4)
ACTIVATIONS = (None, "silu", "swish")

# Both kernels walk time sequentially: a program holds BLOCK_B batch rows x BLOCK_D channels and
# keeps the last WIDTH - 1 inputs (and, in the backward, pre-activation gradients) in registers, so
# each element is loaded once, SiLU is evaluated once per position, and dweight/dbias accumulate
# elementwise with one reduction per program. STEPS time steps per loop iteration are unrolled so
# their loads are issued together (bytes in flight). Channels are the contiguous axis of Mamba's
# channel-last activations: the forward's 2 warps hold 4 adjacent channels per thread (128-bit
# loads); the backward, with about twice the live tiles, 2 per thread on 4 warps (64-bit loads; 4
# per thread spill on sm_80 in the channel-first layout).
BLOCK_B = 2
BLOCK_D = 128
STEPS = 4
FWD_NUM_WARPS = 2
BWD_NUM_WARPS = 4
# The backward gives each program a run of consecutive row blocks so that the dweight and dbias
# partials stay small: at most this many programs along the batch axis.
BWD_MAX_PROGRAMS = 1024


# Integer arguments that vary with the sequence length or batch: never specialised (the JIT would
# otherwise compile separate kernels for values equal to 1 or divisible by 16).
_RUNTIME_INTS = ("batch", "seqlen", "rows_per_program")


@triton.jit
def _conv_pre(b_win, b_w, b_bias, WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr):
    """Pre-activation at the newest position of the window: bias + sum_k w[k] * window[k], where
    window[k] is x at that position - (WIDTH - 1) + k."""
    b_pre = b_win[WIDTH - 1] * b_w[WIDTH - 1][None, :]  # [BB, BD]
    for k in tl.static_range(WIDTH - 1):
        b_pre += b_win[k] * b_w[k][None, :]
    if HAS_BIAS:
        b_pre += b_bias[None, :]
    return b_pre


@triton.jit
def _conv_taps(w_ptr, b_ptr, o_d, m_d, stride_wd, stride_wk, WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr):
    """The WIDTH taps (a tuple of [BD]) and the bias ([BD], zeros without one) in fp32."""
    b_w = ()
    for k in tl.static_range(WIDTH):
        b_w = b_w + (tl.load(w_ptr + o_d * stride_wd + k * stride_wk, mask=m_d, other=0.0).to(tl.float32),)
    if HAS_BIAS:
        b_bias = tl.load(b_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)  # [BD]
    else:
        b_bias = tl.zeros_like(b_w[0])
    return b_w, b_bias


@triton.jit(do_not_specialize=list(_RUNTIME_INTS))
def _causal_conv1d_fwd_kernel(
    x_ptr, w_ptr, b_ptr, out_ptr,
    batch, seqlen, dim,
    stride_xb, stride_xd, stride_xl,
    stride_ob, stride_od, stride_ol,
    stride_wd, stride_wk,
    WIDTH: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    USE_SILU: tl.constexpr,
    INT64_OFFSETS: tl.constexpr,
    BB: tl.constexpr,
    BD: tl.constexpr,
    STEPS: tl.constexpr,
):
    i_bblk = tl.program_id(0)
    i_dblk = tl.program_id(1)
    o_b = i_bblk * BB + tl.arange(0, BB)  # [BB]
    o_d = i_dblk * BD + tl.arange(0, BD)  # [BD]
    if INT64_OFFSETS:
        o_d = o_d.to(tl.int64)
    m_d = o_d < dim
    m_bd = (o_b < batch)[:, None] & m_d[None, :]  # [BB, BD]
    b_w, b_bias = _conv_taps(w_ptr, b_ptr, o_d, m_d, stride_wd, stride_wk, WIDTH, HAS_BIAS)

    o_b = o_b.to(tl.int64)
    p_x = x_ptr + o_b[:, None] * stride_xb + o_d[None, :] * stride_xd  # [BB, BD]
    p_out = out_ptr + o_b[:, None] * stride_ob + o_d[None, :] * stride_od  # [BB, BD]
    b_win = (tl.zeros([BB, BD], dtype=tl.float32),) * WIDTH  # x at t - (WIDTH - 1) .. t
    for t0 in range(0, seqlen, STEPS):
        for i in tl.static_range(STEPS):
            t = t0 + i
            if INT64_OFFSETS:
                t = t.to(tl.int64)
            m_t = tl.where(t < seqlen, m_bd, False)  # (the interpreter cannot AND a scalar into a block)
            b_x = tl.load(p_x + t * stride_xl, mask=m_t, other=0.0).to(tl.float32)  # [BB, BD]
            b_win = b_win[1:] + (b_x,)
            b_out = _conv_pre(b_win, b_w, b_bias, WIDTH, HAS_BIAS)
            if USE_SILU:
                b_out = b_out * tl.sigmoid(b_out)
            tl.store(p_out + t * stride_ol, b_out.to(out_ptr.dtype.element_ty), mask=m_t)


@triton.jit(do_not_specialize=list(_RUNTIME_INTS))
def _causal_conv1d_bwd_kernel(
    x_ptr, w_ptr, b_ptr, dout_ptr, dx_ptr, dw_part_ptr, db_part_ptr,
    batch, seqlen, dim, rows_per_program,
    stride_xb, stride_xd, stride_xl,
    stride_gb, stride_gd, stride_gl,
    stride_dxb, stride_dxd, stride_dxl,
    stride_wd, stride_wk,
    WIDTH: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    USE_SILU: tl.constexpr,
    INT64_OFFSETS: tl.constexpr,
    BB: tl.constexpr,
    BD: tl.constexpr,
    STEPS: tl.constexpr,
):
    i_prog = tl.program_id(0)
    i_dblk = tl.program_id(1)
    o_d = i_dblk * BD + tl.arange(0, BD)  # [BD]
    if INT64_OFFSETS:
        o_d = o_d.to(tl.int64)
    m_d = o_d < dim
    b_w, b_bias = _conv_taps(w_ptr, b_ptr, o_d, m_d, stride_wd, stride_wk, WIDTH, HAS_BIAS)
    b_dw = (tl.zeros([BB, BD], dtype=tl.float32),) * WIDTH  # this program's dweight, reduced at the end
    b_db = tl.zeros([BB, BD], dtype=tl.float32)

    # At step t the window holds x at t - (WIDTH - 1) .. t, so the pre-activation and its gradient
    # dpre are computed once, at t; dx[t - (WIDTH - 1)] = sum_j w[WIDTH - 1 - j] * dpre[t - (WIDTH - 1) + j]
    # is then complete. The walk runs WIDTH - 1 steps past the end (dpre = 0 there) to finish dx.
    row_end = tl.minimum((i_prog + 1) * rows_per_program, batch)
    for row0 in range(i_prog * rows_per_program, row_end, BB):
        o_b = row0 + tl.arange(0, BB)  # [BB]
        m_bd = (o_b < row_end)[:, None] & m_d[None, :]  # [BB, BD]
        o_b = o_b.to(tl.int64)
        p_x = x_ptr + o_b[:, None] * stride_xb + o_d[None, :] * stride_xd  # [BB, BD]
        p_g = dout_ptr + o_b[:, None] * stride_gb + o_d[None, :] * stride_gd  # [BB, BD]
        p_dx = dx_ptr + o_b[:, None] * stride_dxb + o_d[None, :] * stride_dxd  # [BB, BD]
        b_win = (tl.zeros([BB, BD], dtype=tl.float32),) * WIDTH  # x at t - (WIDTH - 1) .. t
        b_dpre_win = (tl.zeros([BB, BD], dtype=tl.float32),) * WIDTH  # dpre at t - (WIDTH - 1) .. t
        for t0 in range(0, seqlen + WIDTH - 1, STEPS):
            for i in tl.static_range(STEPS):
                t = t0 + i
                if INT64_OFFSETS:
                    t = t.to(tl.int64)
                m_t = tl.where(t < seqlen, m_bd, False)
                b_x = tl.load(p_x + t * stride_xl, mask=m_t, other=0.0).to(tl.float32)  # [BB, BD]
                b_dpre = tl.load(p_g + t * stride_gl, mask=m_t, other=0.0).to(tl.float32)  # [BB, BD]
                b_win = b_win[1:] + (b_x,)
                if USE_SILU:
                    b_pre = _conv_pre(b_win, b_w, b_bias, WIDTH, HAS_BIAS)
                    b_sig = tl.sigmoid(b_pre)
                    b_dpre = b_dpre * b_sig * (1.0 + b_pre * (1.0 - b_sig))
                b_dpre_win = b_dpre_win[1:] + (b_dpre,)
                b_db += b_dpre
                for k in tl.static_range(WIDTH):
                    b_dw = b_dw[:k] + (b_dw[k] + b_dpre * b_win[k],) + b_dw[k + 1:]
                b_dx = b_dpre_win[0] * b_w[WIDTH - 1][None, :]  # [BB, BD] dx at t - (WIDTH - 1)
                for j in tl.static_range(1, WIDTH):
                    b_dx += b_dpre_win[j] * b_w[WIDTH - 1 - j][None, :]
                t_dx = t - (WIDTH - 1)
                m_dx = tl.where((t_dx >= 0) & (t_dx < seqlen), m_bd, False)
                tl.store(p_dx + t_dx * stride_dxl, b_dx.to(dx_ptr.dtype.element_ty), mask=m_dx)

    # Partials: dw_part (programs, WIDTH, dim), db_part (programs, dim), fp32, contiguous.
    p_dw = dw_part_ptr + i_prog.to(tl.int64) * WIDTH * dim + o_d  # [BD]
    for k in tl.static_range(WIDTH):
        tl.store(p_dw + k * dim, tl.sum(b_dw[k], axis=0), mask=m_d)
    tl.store(db_part_ptr + i_prog.to(tl.int64) * dim + o_d, tl.sum(b_db, axis=0), mask=m_d)


def _block_d(dim: int) -> int:
    return min(BLOCK_D, max(16, triton.next_power_of_2(dim)))


def _needs_int64_offsets(*tensors: torch.Tensor) -> bool:
    """Whether offsets inside one batch element (channel and time, block overrun included) can pass
    2**31 - 1; the batch offset is always computed in int64."""
    d_reach, t_reach = BLOCK_D, STEPS + max(WIDTHS)
    reach = max((t.shape[1] + d_reach) * abs(t.stride(1)) + (t.shape[2] + t_reach) * abs(t.stride(2))
                for t in tensors)
    return reach >= 2**31


def _bias_arg(bias: torch.Tensor | None, weight: torch.Tensor) -> torch.Tensor:
    # The kernels read bias with unit stride; without a bias they get a pointer they never read.
    return weight if bias is None else bias.contiguous()


def _launch_fwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, silu: bool,
                out: torch.Tensor) -> torch.Tensor:
    """Run the forward kernel into ``out`` (any strides, shape of x); return ``out``."""
    batch, dim, seqlen = x.shape
    if out.numel() == 0:
        return out
    block_d = _block_d(dim)
    grid = (triton.cdiv(batch, BLOCK_B), triton.cdiv(dim, block_d))
    _causal_conv1d_fwd_kernel[grid](
        x, weight, _bias_arg(bias, weight), out,
        batch, seqlen, dim,
        *x.stride(), *out.stride(), *weight.stride(),
        WIDTH=weight.shape[1], HAS_BIAS=bias is not None, USE_SILU=silu,
        INT64_OFFSETS=_needs_int64_offsets(x, out), BB=BLOCK_B, BD=block_d, STEPS=STEPS,
        num_warps=FWD_NUM_WARPS,
    )
    return out


def _launch_bwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dout: torch.Tensor,
                silu: bool, dx: torch.Tensor, max_programs: int = BWD_MAX_PROGRAMS,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the backward kernel, writing ``dx`` in place; return (dx, dweight, dbias) with dweight and
    dbias in fp32 (summed from the per-program partials)."""
    batch, dim, seqlen = x.shape
    width = weight.shape[1]
    if batch == 0 or dim == 0 or seqlen == 0:
        zeros = x.new_zeros((dim, width), dtype=torch.float32)
        return dx, zeros, zeros[:, 0].clone()
    rows_per_program = triton.cdiv(batch, min(batch, max_programs))
    n_programs = triton.cdiv(batch, rows_per_program)
    block_d = _block_d(dim)
    dw_part = torch.empty((n_programs, width, dim), device=x.device, dtype=torch.float32)
    db_part = torch.empty((n_programs, dim), device=x.device, dtype=torch.float32)
    grid = (n_programs, triton.cdiv(dim, block_d))
    _causal_conv1d_bwd_kernel[grid](
        x, weight, _bias_arg(bias, weight), dout, dx, dw_part, db_part,
        batch, seqlen, dim, rows_per_program,
        *x.stride(), *dout.stride(), *dx.stride(), *weight.stride(),
        WIDTH=width, HAS_BIAS=bias is not None, USE_SILU=silu,
        INT64_OFFSETS=_needs_int64_offsets(x, dout, dx), BB=BLOCK_B, BD=block_d, STEPS=STEPS,
        num_warps=BWD_NUM_WARPS,
    )
    return dx, dw_part.sum(0).t(), db_part.sum(0)


def _empty_like_x(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised (batch, dim, seqlen) tensor in x's dtype: channel-last (the transpose of a
    contiguous (batch, seqlen, dim) tensor) when x is channel-last, even as a slice such as one half
    of Mamba's in_proj output, so the next (batch, seqlen, dim) matmul reads it without a copy;
    otherwise contiguous."""
    batch, dim, seqlen = x.shape
    if x.stride(1) == 1 and x.stride(2) != 1:
        return x.new_empty((batch, seqlen, dim)).transpose(1, 2)
    return x.new_empty((batch, dim, seqlen))


def _in_layout_of_x(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``t`` (a fresh result of the reference) in x's dtype and in the layout the fake op promises."""
    out = _empty_like_x(x)
    if t.dtype == out.dtype and t.stride() == out.stride():
        return t
    return out.copy_(t)


def _fp32(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().float()


def _backend_for(x: torch.Tensor) -> backend.Backend:
    return backend.select(x.device, "causal_conv1d_fn", cpu_kernel=True)


@torch.library.custom_op("mdaf_kernels::causal_conv1d_fwd", mutates_args=())
def causal_conv1d_fwd(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, silu: bool
) -> torch.Tensor:
    """Forward op: out (batch, dim, seqlen) in x's dtype. Arguments are checked by causal_conv1d_fn."""
    be = _backend_for(x)
    if be == "triton":
        return _launch_fwd(x, weight, bias, silu, _empty_like_x(x))
    if be == "cpu":
        from mdaf_kernels.cpu.causal_conv1d import causal_conv1d_cpu_fwd

        return causal_conv1d_cpu_fwd(x, weight, bias, silu, _empty_like_x(x))
    out = causal_conv1d_ref(x.float(), weight.float(), _fp32(bias), "silu" if silu else None)
    return _in_layout_of_x(out, x)


@causal_conv1d_fwd.register_fake
def _(x, weight, bias, silu):
    return _empty_like_x(x)


@torch.library.custom_op("mdaf_kernels::causal_conv1d_bwd", mutates_args=())
def causal_conv1d_bwd(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dout: torch.Tensor, silu: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward op: (dx in x's dtype and layout, dweight in weight's dtype, dbias in weight's dtype).

    dbias is returned even when there is no bias (the gradient a zero bias would get), so that the
    op always has the same outputs.
    """
    be = _backend_for(x)
    if be == "triton":
        dx, dweight, dbias = _launch_bwd(x, weight, bias, dout, silu, _empty_like_x(x))
    elif be == "cpu":
        from mdaf_kernels.cpu.causal_conv1d import causal_conv1d_cpu_bwd

        dx, dweight, dbias = causal_conv1d_cpu_bwd(x, weight, bias, dout, silu, _empty_like_x(x))
    else:
        dx, dweight, dbias = causal_conv1d_bwd_ref(x.float(), weight.float(), _fp32(bias), dout.float(),
                                                    "silu" if silu else None)
        dx = _in_layout_of_x(dx, x)
    return dx, dweight.to(weight.dtype).contiguous(), dbias.to(weight.dtype).contiguous()


@causal_conv1d_bwd.register_fake
def _(x, weight, bias, dout, silu):
    return _empty_like_x(x), weight.new_empty(weight.shape), weight.new_empty(weight.shape[0])


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, silu = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.silu = silu
    ctx.backend = _backend_for(x)


def _backward(ctx, dout: torch.Tensor):
    x, weight, bias = ctx.saved_tensors
    with backend.use(ctx.backend):  # the backward runs where its forward ran
        dx, dweight, dbias = causal_conv1d_bwd(x, weight, bias, dout, ctx.silu)
    return dx, dweight, None if bias is None else dbias.to(bias.dtype), None


causal_conv1d_fwd.register_autograd(_backward, setup_context=_setup_context)


def _check_args(x: object, weight: object, bias: object, activation: object) -> bool:
    """Validate the public arguments; return whether SiLU is applied."""
    x = check_tensor("x", x, ndim=3)
    weight = check_tensor("weight", weight, ndim=2, device=x.device)
    dim = x.shape[1]
    if weight.shape[0] != dim:
        raise ValueError(f"weight: expected shape (dim, width) with dim = x.shape[1] = {dim}, "
                         f"got {tuple(weight.shape)}")
    if weight.shape[1] not in WIDTHS:
        raise ValueError(f"weight: width (weight.shape[1]) must be one of {WIDTHS}, got {weight.shape[1]}")
    if bias is not None:
        bias = check_tensor("bias", bias, ndim=1, device=x.device)
        check_shape("bias", bias, (dim,), "(dim,) with dim = x.shape[1]")
    if isinstance(activation, bool) or activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
    return activation is not None


def causal_conv1d_fn(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """Causal depthwise Conv1d over the last axis, optionally followed by SiLU.

    ``out[b, d, t] = act(bias[d] + sum_k weight[d, k] * x[b, d, t - width + 1 + k])`` with zeros
    before the start of the sequence. x: (batch, dim, seqlen) in fp32/fp16/bf16, any strides;
    weight: (dim, width) with width 2, 3 or 4; bias: (dim,) or None; activation: None, "silu" or
    "swish". Returns (batch, dim, seqlen) in x's dtype. Differentiable in x, weight and bias.
    """
    silu = _check_args(x, weight, bias, activation)
    return causal_conv1d_fwd(x, weight, bias, silu)


def _launch_costs(dtype: str, batch: int, dim: int, seqlen: int, width: int) -> tuple[LaunchCost, LaunchCost]:
    """What the forward and backward launches must do (bias and SiLU), for the cost model: x and out
    (forward), x, dout and dx (backward) once, the weight and bias (and their gradients); the
    backward adds its fp32 dweight and dbias partials. SiLU (and its derivative) needs one
    exponential per element. The forward's loop walks the steps; the backward's loops run over a
    program's row blocks, inside each over seqlen + width - 1 steps, plus the compiler's copy of the
    row loop for an empty walk (seqlen + width - 1 <= 0: never run)."""
    shape = f"B{batch} D{dim} L{seqlen} W{width}"
    seq, params = tensor_bytes(dtype, batch, dim, seqlen), tensor_bytes(dtype, dim, width + 1)
    n_dblocks = triton.cdiv(dim, _block_d(dim))
    rows_per_program = triton.cdiv(batch, min(batch, BWD_MAX_PROGRAMS))
    n_programs = triton.cdiv(batch, rows_per_program)
    row_blocks = triton.cdiv(rows_per_program, BLOCK_B)
    exps = batch * dim * seqlen
    fwd = LaunchCost(shape, programs=triton.cdiv(batch, BLOCK_B) * n_dblocks, io_bytes=2 * seq + params,
                     exp_count=exps, loop_trips=(triton.cdiv(seqlen, STEPS),))
    bwd = LaunchCost(shape, programs=n_programs * n_dblocks, io_bytes=3 * seq + 2 * params, exp_count=exps,
                     extra_bytes=tensor_bytes("fp32", n_programs, width + 1, dim),
                     loop_trips=(row_blocks, row_blocks * triton.cdiv(seqlen + width - 1, STEPS), 0))
    return fwd, bwd


def compile_specs() -> list[KernelSpec]:
    """The forward and backward kernels at the MDAF shape (batch 2048, dim 128, seqlen 50, width 4,
    bias and SiLU), fp32 and bf16, for x laid out channel-first (batch, dim, seqlen contiguous) and
    channel-last (a transposed (batch, seqlen, dim) tensor), specialised as a JIT launch would be."""
    batch, dim, seqlen, width = 2048, 128, 50, 4
    rows_per_program = triton.cdiv(batch, min(batch, BWD_MAX_PROGRAMS))
    layouts = {"channel-first": (dim * seqlen, seqlen, 1), "channel-last": (seqlen * dim, 1, dim)}
    w_strides = (width, 1)
    flags = {"WIDTH": width, "HAS_BIAS": True, "USE_SILU": True, "INT64_OFFSETS": False, "BB": BLOCK_B,
             "BD": _block_d(dim), "STEPS": STEPS}
    specs = []
    for dtype in ("fp32", "bf16"):
        # The cost model's launches: the MDAF shape and a larger one compiled the same way.
        fwd_costs, bwd_costs = zip(*(_launch_costs(dtype, b, dim, length, width)
                                     for b, length in ((batch, seqlen), (batch, 200))), strict=True)
        for layout, xs in layouts.items():
            fwd_ints = dict(zip(
                ("batch", "seqlen", "dim", "stride_xb", "stride_xd", "stride_xl",
                 "stride_ob", "stride_od", "stride_ol", "stride_wd", "stride_wk"),
                (batch, seqlen, dim, *xs, *xs, *w_strides), strict=True))
            specs.append(jit_spec(
                f"causal_conv1d_fwd[{dtype},{layout}]", _causal_conv1d_fwd_kernel,
                pointers={"x_ptr": dtype, "w_ptr": dtype, "b_ptr": dtype, "out_ptr": dtype},
                ints=fwd_ints, num_warps=FWD_NUM_WARPS, constexprs=flags, costs=fwd_costs,
            ))
            bwd_ints = dict(zip(
                ("batch", "seqlen", "dim", "rows_per_program", "stride_xb", "stride_xd",
                 "stride_xl", "stride_gb", "stride_gd", "stride_gl", "stride_dxb", "stride_dxd", "stride_dxl",
                 "stride_wd", "stride_wk"),
                (batch, seqlen, dim, rows_per_program, *xs, *xs, *xs, *w_strides), strict=True))
            specs.append(jit_spec(
                f"causal_conv1d_bwd[{dtype},{layout}]", _causal_conv1d_bwd_kernel,
                pointers={"x_ptr": dtype, "w_ptr": dtype, "b_ptr": dtype, "dout_ptr": dtype, "dx_ptr": dtype,
                          "dw_part_ptr": "fp32", "db_part_ptr": "fp32"},
                ints=bwd_ints, num_warps=BWD_NUM_WARPS, constexprs=flags, costs=bwd_costs,
            ))
    return specs
