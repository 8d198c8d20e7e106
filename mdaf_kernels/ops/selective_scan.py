"""Mamba-1 selective scan: Triton kernels, torch.library registration and ``selective_scan_fn``.

``selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
return_last_state=False, *, lengths=None, last_only=False)`` is mamba_ssm's function (same layouts,
same semantics; see ``mdaf_kernels.reference.selective_scan`` for the maths) plus two options for CTR
models: per-row ``lengths`` (right padding: steps after a row's length leave the state unchanged and
output 0) and ``last_only`` (the output at each row's last valid position only, (batch, dim)). The
output has ``u``'s dtype; the last state, when asked for, is fp32 (float64 for float64 inputs) and is
differentiable.

Forward kernel: one program per (block of channels, batch element) keeps the (BLOCK_D, N) state in
fp32 registers and walks the sequence once (L is a runtime argument), fusing the discretisation
(one exp2 per state element and step, A pre-scaled by log2 e), the C readout, the D skip and the
SiLU(z) gate. It writes the output, optionally the last state, and the state at every ``CHUNK``-step
boundary (none when L <= CHUNK): the only thing kept for backward besides the inputs. With
``HAS_LENGTHS`` a program stops at its row's length (the host zero-fills the outputs after it); with
``LAST_ONLY`` it stores no per-step output, only one readout of the final state at the last step, and
the state at the end of every chunk, the row's final state included.

Backward kernel: one program per (batch element, B/C group) walks the group's channel blocks in
turn; for each it walks the chunks from last to first, each twice from its checkpoint, with the
(BLOCK_D, N) tile of chains in registers: forward (h, dC, dz) and in reverse (the adjoint
``dh_t = C_t dy_t + exp(delta_{t+1} A) dh_{t+1}``, dB, du, d delta). No per-step state is kept: the
gradient of the decay, ``exp(delta_t A) dh_t h_{t-1}``, is formed from suffix sums the two passes
share (see the kernel). The program sums dB and dC over its channels itself (each block adds its
share to what the earlier blocks stored, in fp32); sums over the batch (dA, dD, d delta_bias) are
written as fp32 partials per program and reduced afterwards in torch: deterministic, no atomics.

Last-position backward (``last_only``), its own kernel: the output gradient enters the adjoint once,
at the row's last step, so one reverse walk from the final state suffices: no forward pass and one
exp2 per element, the decay's gradient from ``dh_t h_t`` carried back by differences (see the
kernel). Same programs and reductions as the full backward.

CPU tensors run the compiled CPU kernel (``mdaf_kernels.cpu.selective_scan``, numba) when numba is
installed (backend ``cpu``, the ``auto`` choice), else the PyTorch path in
``mdaf_kernels.reference.selective_scan`` (backend ``torch``); float64 always runs the PyTorch path.

Padding: delta = 0 at a step leaves the state unchanged (exp(0) = 1, delta B u = 0), so zeroing the
effective delta (after bias and softplus) at padded positions makes the valid outputs independent of
left or right padding; ``mdaf_kernels.nn.Mamba`` does this from its ``mask`` argument.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from mdaf_kernels import backend
from mdaf_kernels._checks import check_shape, check_tensor
from mdaf_kernels.reference.selective_scan import (
    CHUNK,
    num_checkpoints,
    selective_scan_chunked_bwd,
    selective_scan_chunked_fwd,
)
from mdaf_kernels.tools.kernel_spec import KernelSpec, LaunchCost, jit_spec, tensor_bytes

# Largest state size the kernels support (the backward holds a (BLOCK_D, N) tile per accumulator).
MAX_DSTATE = 64
LOG2E = math.log2(math.e)
# Compiled kernels take exp2, log and division from libdevice's fast forms (see _exp2, _log,
# _fast_div); interpreted ones take tl's (the interpreter has no libdevice).
FAST_MATH = tl.constexpr(not backend.interpreter_active())
# The forward runs one thread per channel: up to 128 channels (4 warps) per program.
FWD_BLOCK_D = 128
# The backward's channel block, walked in turn by one program per row: a [32 channels, 32 states] tile
# on one warp, 32 elements per thread (4 states x 8 channels), sums over states and channels by
# shuffles without barriers (4 warps on 128 channels bound 5% higher in the cost model, 16 elements
# per thread 75% higher, 64 spill).
BWD_BLOCK_D = 32
BWD_NUM_WARPS = 1
# The backward forms the decay's gradient from sums over windows of this many steps (see the kernel):
# its fp32 rounding grows with the window (dA: ~6e-7 at 8 steps, ~3e-6 at a whole 32-step chunk).
BWD_WINDOW = 8


@triton.jit
def _softplus(x):
    """log(1 + e^x) accurate for very negative x (log1p by Goldberg's trick), x itself above 20."""
    e = _exp2(tl.minimum(x, 20.0) * 1.4426950408889634)
    w = 1.0 + e
    log1p = tl.where(w == 1.0, e, _fast_div(_log(w) * e, w - 1.0))
    return tl.where(x > 20.0, x, log1p)


@triton.jit
def _sigmoid(x):
    return _fast_div(1.0, 1.0 + _exp2(x * -1.4426950408889634))


@triton.jit
def _exp2(x):
    """2**x, flushing subnormal results to 0: on a GPU one MUFU.EX2 (libdevice under Triton's FTZ
    setting), where tl.exp2 adds three instructions to handle them; tl.exp2 in the interpreter,
    which has no libdevice."""
    if FAST_MATH:
        return libdevice.exp2(x)
    return tl.exp2(x)


@triton.jit
def _log(x):
    """Natural log as tl.log computes it (lg2.approx), without its subnormal handling on a GPU."""
    if FAST_MATH:
        return libdevice.fast_logf(x)
    return tl.log(x)


@triton.jit
def _fast_div(x, y):
    """x / y to about 2 ulp (div.approx: one MUFU.RCP and a multiply) on a GPU, where ``/`` is the
    IEEE-rounded division (a dozen instructions); exact in the interpreter."""
    if FAST_MATH:
        return libdevice.fast_dividef(x, y)
    return x / y


@triton.jit
def _readout(b_ch, b_u, b_D, z_ptrs, m_z, HAS_D: tl.constexpr, HAS_Z: tl.constexpr):
    """[BD] output of one step from its C . h (``b_ch``): (C . h + D u) * silu(z)."""
    b_y = b_ch
    if HAS_D:
        b_y += b_D * b_u
    if HAS_Z:
        b_z = tl.load(z_ptrs, mask=m_z, other=0.0).to(tl.float32)
        b_y *= b_z * _sigmoid(b_z)
    return b_y


@triton.jit
def _load_states(p, stride_n, DSTATE: tl.constexpr, PACKED: tl.constexpr):
    """The DSTATE values ``p[n * stride_n]`` as a tuple of fp32 scalars. PACKED (bf16, the N values
    adjacent and 8-byte aligned): four per 64-bit load, each widened by one shift or mask (a bf16 is
    the high half of an fp32), where a 16-bit load and a conversion per value cost twice as many
    instructions."""
    values = ()
    if PACKED:
        p64 = p.to(tl.pointer_type(tl.int64), bitcast=True)
        for q in tl.static_range(DSTATE // 4):
            b_w = tl.load(p64 + q)
            for half in tl.static_range(2):
                b_w32 = (b_w >> (32 * half)).to(tl.int32)
                values += ((b_w32 << 16).to(tl.float32, bitcast=True),
                           (b_w32 & -65536).to(tl.float32, bitcast=True))
    else:
        for n in tl.static_range(DSTATE):
            values += (tl.load(p + n * stride_n).to(tl.float32),)
    return values


@triton.jit
def _selective_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, delta_bias_ptr, lengths_ptr,
    out_ptr, last_state_ptr, ckpt_ptr,
    dim, seqlen, heads, n_ckpt, n_dblocks,
    stride_Bb, stride_Bg, stride_Bn, stride_Bl, stride_Cb, stride_Cg, stride_Cn, stride_Cl,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_DELTA_BIAS: tl.constexpr,
    DELTA_SOFTPLUS: tl.constexpr,
    STORE_LAST_STATE: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    LAST_ONLY: tl.constexpr,
    INT64_OFFSETS: tl.constexpr,
    PACKED_BC: tl.constexpr,
    CHUNK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DSTATE: tl.constexpr,
):
    # One thread per channel: its DSTATE states are a tuple of [BD] values, so each thread does the
    # per-channel work (loads, softplus, gate) once and sums C . h in its own registers. B_t and C_t
    # are the same for every channel (broadcast loads; with B and C laid out (batch, L, N), as
    # Mamba's x_proj makes them, the N values of a step are adjacent: immediate offsets).
    # One flat grid axis (no 65535 limit on the batch); consecutive programs share a batch element.
    i_b, i_d = tl.program_id(0) // n_dblocks, tl.program_id(0) % n_dblocks
    i_b64 = i_b.to(tl.int64)
    o_d = i_d * BLOCK_D + tl.arange(0, BLOCK_D)  # [BD]
    m_d = o_d < dim
    # A block of channels lies in one group of B/C (the host picks BLOCK_D so).
    i_g = (i_d * BLOCK_D) // heads
    if INT64_OFFSETS:
        o_d = o_d.to(tl.int64)

    # Scaled by log2(e) once, so that each step's decay is one exp2.
    b_A = ()  # DSTATE x [BD]
    for n in tl.static_range(DSTATE):
        b_A += (tl.load(A_ptr + o_d * DSTATE + n, mask=m_d, other=0.0).to(tl.float32) * 1.4426950408889634,)
    if HAS_D:
        b_D = tl.load(D_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)
    else:
        b_D = tl.zeros([BLOCK_D], dtype=tl.float32)  # unused
    if HAS_DELTA_BIAS:
        b_bias = tl.load(delta_bias_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)

    # 64-bit batch offsets in the scalar base pointers; offsets inside one batch element are 32-bit
    # unless the host asks for INT64_OFFSETS (when dim * L or the checkpoints pass 2**31).
    p_bdl = i_b64 * dim * seqlen  # offset of (b, 0, 0) in u, delta, z and the full out
    u_ptr += p_bdl
    delta_ptr += p_bdl
    if LAST_ONLY:
        out_ptr += i_b64 * dim  # out is (batch, dim)
    else:
        out_ptr += p_bdl
    if HAS_Z:
        z_ptr += p_bdl
    B_ptr += i_b64 * stride_Bb + i_g * stride_Bg
    C_ptr += i_b64 * stride_Cb + i_g * stride_Cg
    ckpt_ptr += i_b64 * n_ckpt * dim * DSTATE
    last_state_ptr += i_b64 * dim * DSTATE
    p_row = o_d * seqlen  # [BD] offset of (d, 0)
    # The row's steps: padding after lengths[b] would leave the state unchanged, so it is not walked
    # (the host zero-fills the outputs there).
    if HAS_LENGTHS:
        n_steps = tl.load(lengths_ptr + i_b).to(tl.int32)
    else:
        n_steps = seqlen
    b_h = (tl.zeros([BLOCK_D], dtype=tl.float32),) * DSTATE  # DSTATE x [BD]
    for t0 in range(0, n_steps, CHUNK_T):
        for t in range(t0, tl.minimum(t0 + CHUNK_T, n_steps)):
            if INT64_OFFSETS:
                t = tl.cast(t, tl.int64)  # (a plain int in the interpreter)
            b_u = tl.load(u_ptr + p_row + t, mask=m_d, other=0.0).to(tl.float32)  # [BD]
            b_dt = tl.load(delta_ptr + p_row + t, mask=m_d, other=0.0).to(tl.float32)  # [BD]
            if HAS_DELTA_BIAS:
                b_dt += b_bias
            if DELTA_SOFTPLUS:
                b_dt = _softplus(b_dt)
            b_dtu = b_dt * b_u
            b_y = tl.zeros([BLOCK_D], dtype=tl.float32)
            # B_t and C_t: DSTATE scalars each, the same for every channel.
            b_B = _load_states(B_ptr + t * stride_Bl, stride_Bn, DSTATE, PACKED_BC)
            if not LAST_ONLY:
                b_C = _load_states(C_ptr + t * stride_Cl, stride_Cn, DSTATE, PACKED_BC)
            b_h_next = ()
            for n in tl.static_range(DSTATE):
                b_hn = _exp2(b_dt * b_A[n]) * b_h[n] + b_dtu * b_B[n]
                b_h_next += (b_hn,)
                if not LAST_ONLY:
                    b_y += b_hn * b_C[n]
            b_h = b_h_next
            if not LAST_ONLY:
                b_y = _readout(b_y, b_u, b_D, z_ptr + p_row + t, m_d, HAS_D, HAS_Z)
                tl.store(out_ptr + p_row + t, b_y.to(out_ptr.dtype.element_ty), mask=m_d)
        # Checkpoint k holds the state after chunk k (entering chunk k + 1), for the backward; with
        # LAST_ONLY every chunk's, the row's last included (the backward starts from the final state).
        i_k = t0 // CHUNK_T
        if INT64_OFFSETS:
            i_k = tl.cast(i_k, tl.int64)
        store_ckpt = i_k < n_ckpt
        if not LAST_ONLY:
            store_ckpt = store_ckpt & (t0 + CHUNK_T <= n_steps)
        if store_ckpt:
            for n in tl.static_range(DSTATE):
                tl.store(ckpt_ptr + (i_k * dim + o_d) * DSTATE + n, b_h[n], mask=m_d)
    if LAST_ONLY:
        # One readout at the row's last step (all loads masked off for an empty row: y = 0).
        t_last = n_steps - 1
        if INT64_OFFSETS:
            t_last = tl.cast(t_last, tl.int64)
        m_dl = tl.where(t_last >= 0, m_d, False)  # [BD] (the interpreter cannot AND a scalar into a block)
        b_u = tl.load(u_ptr + p_row + t_last, mask=m_dl, other=0.0).to(tl.float32)  # [BD]
        b_y = tl.zeros([BLOCK_D], dtype=tl.float32)
        for n in tl.static_range(DSTATE):
            b_Cn = tl.load(C_ptr + t_last * stride_Cl + n * stride_Cn, mask=t_last >= 0, other=0.0)
            b_y += b_h[n] * b_Cn.to(tl.float32)
        b_y = _readout(b_y, b_u, b_D, z_ptr + p_row + t_last, m_dl, HAS_D, HAS_Z)
        tl.store(out_ptr + o_d, b_y.to(out_ptr.dtype.element_ty), mask=m_d)
    if STORE_LAST_STATE:
        for n in tl.static_range(DSTATE):
            tl.store(last_state_ptr + o_d * DSTATE + n, b_h[n], mask=m_d)


@triton.jit
def _step_delta(delta_ptrs, m_d, b_bias, HAS_DELTA_BIAS: tl.constexpr, DELTA_SOFTPLUS: tl.constexpr):
    """[BD] effective delta of one step (after bias and softplus) and the softplus' derivative (1
    without)."""
    b_dt = tl.load(delta_ptrs, mask=m_d, other=0.0).to(tl.float32)
    if HAS_DELTA_BIAS:
        b_dt += b_bias
    b_dsoftplus = tl.full(b_dt.shape, 1.0, tl.float32)
    if DELTA_SOFTPLUS:
        b_dsoftplus = _sigmoid(b_dt)
        b_dt = _softplus(b_dt)
    return b_dt, b_dsoftplus


@triton.jit
def _step_dy(b_dout, z_ptrs, m_d, HAS_Z: tl.constexpr):
    """[BD] z, sigmoid(z) and dy = dout * silu(z), the gradient of one step's readout C . h + D u."""
    b_dy = b_dout
    b_z = b_dout  # unused without z
    b_sig = b_dout
    if HAS_Z:
        b_z = tl.load(z_ptrs, mask=m_d, other=0.0).to(tl.float32)
        b_sig = _sigmoid(b_z)
        b_dy = b_dout * b_z * b_sig
    return b_z, b_sig, b_dy


@triton.jit
def _readout_grads(b_h, b_Ct, b_A2, b_dy, b_cum):
    """What one step's readout gives the backward from its state h_t: [BD, BN] its share of dA
    (Delta_t dy_t C_t h_t), [BD] phi_t (sum_n A C_t h_t dy_t, A in log2(e) units), [BN] this block's
    share of dC_t and [BD] C_t . h_t."""
    b_ch = b_h * b_Ct[None, :]  # [BD, BN]
    return (b_ch * (b_dy * b_cum)[:, None], b_dy * tl.sum(b_ch * b_A2, axis=1),
            tl.sum(b_h * b_dy[:, None], axis=0), tl.sum(b_ch, axis=1))


@triton.jit
def _store_dB(dB_ptrs, b_dh, b_dtu, m_acc, m_n):
    """Store one step's dB: this block's share, sum_d dh delta u, plus the earlier blocks' sums."""
    b_dB = tl.sum(b_dh * b_dtu[:, None], axis=0)  # [BN]
    b_dB += tl.load(dB_ptrs, mask=m_acc, other=0.0)
    tl.store(dB_ptrs, b_dB, mask=m_n)


@triton.jit
def _store_block_partials(dA_part_ptr, dD_part_ptr, dbias_part_ptr, o_dn, m_dn, o_d, m_d, b_dA, b_dD,
                          b_dbias, HAS_D: tl.constexpr, HAS_DELTA_BIAS: tl.constexpr):
    """A channel block's row partials of dA, dD and d delta_bias; then a barrier, as the next block
    reads dB and dC as stored by any thread of this one."""
    tl.store(dA_part_ptr + o_dn, b_dA, mask=m_dn)
    if HAS_D:
        tl.store(dD_part_ptr + o_d, b_dD, mask=m_d)
    if HAS_DELTA_BIAS:
        tl.store(dbias_part_ptr + o_d, b_dbias, mask=m_d)
    tl.debug_barrier()


@triton.jit
def _channel_block(A_ptr, D_ptr, delta_bias_ptr, i_g, i_blk, heads, dim, seqlen, dstate, o_n, m_n,
                   HAS_D: tl.constexpr, HAS_DELTA_BIAS: tl.constexpr, INT64_OFFSETS: tl.constexpr,
                   BLOCK_D: tl.constexpr):
    """A backward channel block's indices and parameters: [BD] channels, their mask and (d, 0) offset
    in a (dim, L) array, the [BD, BN] mask and (d, n) offset in a (dim, N) array, A (scaled by
    log2(e) once, so that each step's decay is one exp2), D and delta_bias (0 when absent)."""
    o_d = i_g * heads + i_blk * BLOCK_D + tl.arange(0, BLOCK_D)  # [BD]
    m_d = o_d < dim
    m_dn = m_d[:, None] & m_n[None, :]
    if INT64_OFFSETS:
        o_d = o_d.to(tl.int64)
    o_dn = o_d[:, None] * dstate + o_n[None, :]  # [BD, BN]
    b_A2 = tl.load(A_ptr + o_dn, mask=m_dn, other=0.0).to(tl.float32) * 1.4426950408889634  # [BD, BN]
    b_D = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        b_D = tl.load(D_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)
    b_bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_DELTA_BIAS:
        b_bias = tl.load(delta_bias_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)
    return o_d, m_d, o_d * seqlen, m_dn, o_dn, b_A2, b_D, b_bias


@triton.jit
def _store_dC_dz(dC_ptrs, b_dC, m_acc, m_n, dz_ptrs, b_dout, b_y, b_z, b_sig, m_d, HAS_Z: tl.constexpr):
    """Store one step's dC (plus the earlier channel blocks' sums) and dz (``b_y`` = C . h + D u)."""
    b_dC += tl.load(dC_ptrs, mask=m_acc, other=0.0)
    tl.store(dC_ptrs, b_dC, mask=m_n)
    if HAS_Z:
        b_dz = b_dout * b_y * b_sig * (1.0 + b_z * (1.0 - b_sig))
        tl.store(dz_ptrs, b_dz.to(dz_ptrs.dtype.element_ty), mask=m_d)


@triton.jit
def _bwd_row(B_ptr, C_ptr, dB_ptr, dC_ptr, dlast_ptr, ckpt_ptr, dA_part_ptr, dD_part_ptr, dbias_part_ptr,
             lengths_ptr, i_b, i_g, dim, seqlen, dstate, groups, n_ckpt,
             stride_Bb, stride_Bg, stride_Cb, stride_Cg, HAS_LENGTHS: tl.constexpr):
    """A backward program's base pointers for its (batch element, group) in the arrays indexed by
    state (64-bit offsets), and the row's step count (the forward walked no further; the host
    zero-fills the gradients after it)."""
    i_b64 = i_b.to(tl.int64)
    p_bc = (i_b64 * groups + i_g) * dstate * seqlen  # offset of (b, g, 0, 0) in dB and dC
    if HAS_LENGTHS:
        n_steps = tl.load(lengths_ptr + i_b).to(tl.int32)
    else:
        n_steps = seqlen
    return (B_ptr + i_b64 * stride_Bb + i_g * stride_Bg, C_ptr + i_b64 * stride_Cb + i_g * stride_Cg,
            dB_ptr + p_bc, dC_ptr + p_bc, dlast_ptr + i_b64 * dim * dstate,
            ckpt_ptr + i_b64 * n_ckpt * dim * dstate, dA_part_ptr + i_b64 * dim * dstate,
            dD_part_ptr + i_b64 * dim, dbias_part_ptr + i_b64 * dim, n_steps)


@triton.jit
def _selective_scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, delta_bias_ptr, lengths_ptr,
    dout_ptr, dlast_ptr, ckpt_ptr,
    du_ptr, ddelta_ptr, dz_ptr, scratch_ptr,
    dA_part_ptr, dB_ptr, dC_ptr, dD_part_ptr, dbias_part_ptr,
    dim, seqlen, dstate, heads, groups, n_ckpt, n_dblocks, scratch_size,
    stride_Bb, stride_Bg, stride_Bn, stride_Bl, stride_Cb, stride_Cg, stride_Cn, stride_Cl,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_DELTA_BIAS: tl.constexpr,
    DELTA_SOFTPLUS: tl.constexpr,
    HAS_DLAST: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    INT64_OFFSETS: tl.constexpr,
    CHUNK_T: tl.constexpr,
    WINDOW_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    # One program per (batch element, group of B/C) walks the group's n_dblocks channel blocks one
    # after the other, so it alone sums dB and dC over the group's channels (no partials). A block is
    # a [BD, BN] tile of (channel, state) chains; its chunks of CHUNK_T steps, last to first, are each
    # walked twice from the forward's checkpoint, keeping no per-step state:
    #   forward, t = t0 .. t1-1: h_t = a_t h_{t-1} + x_t (a_t = exp(delta_t A), x_t = delta_t u_t B_t),
    #     with everything that needs h: dC, dz, and the h side of dA and d delta;
    #   reverse, t = t1-1 .. t0: dh_t = C_t dy_t + e_{t+1}, e_t = a_t dh_t, with everything that needs
    #     dh: dB, du, d delta and the dh side of dA.
    # The decay's gradient g_k = dL/d(delta_k A) = e_k h_{k-1} needs both at the same step; by the
    # adjoint identity (per chain, over any window [w0, w1) of steps) it is also
    #   g_k = sum_{w1 > t >= k} (c_t h_t - dh_t x_t) + e_w1 h_{w1-1},   c_t = C_t dy_t,
    # e_w1 the adjoint entering from the later window. So the window's share of dA, sum_k delta_k g_k,
    # is delta_w0 g_w0 (taken directly: e_w0 times the state entering the window, exactly 0 from a zero
    # state) plus sum_t Delta_t (c_t h_t - dh_t x_t) + Delta_{w1-1} e_w1 h_{w1-1}, Delta_t the sum of
    # delta over (w0, t]: the forward pass adds the c h terms, the reverse pass the others. Likewise
    # sum_n A g_k is a suffix sum of phi_t - psi_t: phi_t = sum_n A c_t h_t (forward pass),
    # psi_t = sum_n A dh_t x_t (reverse pass). The forward pass leaves phi, each window's delta sum
    # and the states between windows in a per-program scratch. Two exp2 per element. The two sides
    # are larger than their difference (up to about WINDOW_T / 2 times), which costs dA and d delta
    # some fp32 rounding (dA ~6e-7 relative at 8-step windows where the direct e_k h_{k-1} has 2e-7),
    # bounded by the window, not by L.
    # One flat grid axis (no 65535 limit on the batch); consecutive programs share a batch element.
    i_b, i_g = tl.program_id(0) // groups, tl.program_id(0) % groups
    i_b64 = i_b.to(tl.int64)
    o_n = tl.arange(0, BLOCK_N)  # [BN]
    m_n = o_n < dstate

    # 64-bit batch offsets in the scalar base pointers.
    p_bdl = i_b64 * dim * seqlen  # offset of (b, 0, 0) in u, delta, z, the full dout and the gradients
    u_ptr += p_bdl
    delta_ptr += p_bdl
    dout_ptr += p_bdl
    du_ptr += p_bdl
    ddelta_ptr += p_bdl
    # This program's scratch, rewritten for every chunk of every block (so it stays in cache): phi
    # [BD, CHUNK_T], per window its delta sum [BD], then the states [BD, BN] entering each window
    # and leaving the last.
    scratch_ptr += (i_b64 * groups + i_g) * scratch_size
    o_phi = tl.arange(0, BLOCK_D) * CHUNK_T  # [BD] offset of (d, 0) in phi
    o_win = tl.arange(0, BLOCK_D)  # [BD] offset of d in a window's delta sum
    o_win_dn = o_win[:, None] * BLOCK_N + o_n[None, :]  # [BD, BN] offset of (d, n) in its state
    p_win_cum = scratch_ptr + BLOCK_D * CHUNK_T  # window i's delta sum at + i * BLOCK_D
    p_win_h = p_win_cum + (CHUNK_T // WINDOW_T) * BLOCK_D  # state entering window i: + i * BLOCK_D * BLOCK_N
    if HAS_Z:
        z_ptr += p_bdl
        dz_ptr += p_bdl
    (B_ptr, C_ptr, dB_ptr, dC_ptr, dlast_ptr, ckpt_ptr, dA_part_ptr, dD_part_ptr, dbias_part_ptr,
     n_steps) = _bwd_row(B_ptr, C_ptr, dB_ptr, dC_ptr, dlast_ptr, ckpt_ptr, dA_part_ptr, dD_part_ptr,
                         dbias_part_ptr, lengths_ptr, i_b, i_g, dim, seqlen, dstate, groups, n_ckpt,
                         stride_Bb, stride_Bg, stride_Cb, stride_Cg, HAS_LENGTHS)
    o_nl = o_n * seqlen  # [BN] offset of (n, 0) in dB and dC
    if INT64_OFFSETS:
        o_nl = o_n.to(tl.int64) * seqlen
    p_Bn = B_ptr + o_n * stride_Bn  # [BN] pointers to (n, 0)
    p_Cn = C_ptr + o_n * stride_Cn
    for i_blk in range(0, n_dblocks):
        o_d, m_d, p_row, m_dn, o_dn, b_A2, b_D, b_bias = _channel_block(
            A_ptr, D_ptr, delta_bias_ptr, i_g, i_blk, heads, dim, seqlen, dstate, o_n, m_n, HAS_D,
            HAS_DELTA_BIAS, INT64_OFFSETS, BLOCK_D)
        m_acc = m_n & (i_blk > 0)  # [BN] earlier blocks' dB and dC sums to add to

        # The adjoint entering the last step of the chunk walked next (the last state's gradient first).
        b_e = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
        if HAS_DLAST:
            b_e = tl.load(dlast_ptr + o_dn, mask=m_dn, other=0.0).to(tl.float32)
        b_dA = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
        b_dD = tl.zeros([BLOCK_D], dtype=tl.float32)
        b_dbias = tl.zeros([BLOCK_D], dtype=tl.float32)
        n_chunks = tl.cdiv(n_steps, CHUNK_T)
        for i_rev in range(0, n_chunks):
            i_c = n_chunks - 1 - i_rev
            t0 = i_c * CHUNK_T
            t1 = tl.minimum(t0 + CHUNK_T, n_steps)
            n_windows = tl.cdiv(t1 - t0, WINDOW_T)
            if INT64_OFFSETS:
                i_c = tl.cast(i_c, tl.int64)
            # Forward: h from the checkpoint (zero for the first chunk), dC, dz, the h side of dA and
            # phi (in A log2(e) units); each window's last state and delta sum go to the scratch.
            m_h0 = tl.where(i_c > 0, m_dn, False)  # (the interpreter cannot AND a scalar into a block)
            b_h = tl.load(ckpt_ptr + (i_c - 1) * dim * dstate + o_dn, mask=m_h0, other=0.0)
            tl.store(p_win_h + o_win_dn, b_h)
            for i_w in range(0, n_windows):
                w0 = t0 + i_w * WINDOW_T
                b_cum = tl.zeros([BLOCK_D], dtype=tl.float32)  # Delta_t: delta summed over (w0, t]
                for t in range(w0, tl.minimum(w0 + WINDOW_T, t1)):
                    if INT64_OFFSETS:
                        t = tl.cast(t, tl.int64)  # (a plain int in the interpreter)
                    o_t = p_row + t  # [BD] (one offset for every (d, t) array: no hoisted pointer blocks)
                    b_u = tl.load(u_ptr + o_t, mask=m_d, other=0.0).to(tl.float32)  # [BD]
                    b_dt, _ = _step_delta(delta_ptr + o_t, m_d, b_bias, HAS_DELTA_BIAS, DELTA_SOFTPLUS)
                    b_dout = tl.load(dout_ptr + o_t, mask=m_d, other=0.0).to(tl.float32)
                    b_z, b_sig, b_dy = _step_dy(b_dout, z_ptr + o_t, m_d, HAS_Z)
                    b_cum += tl.where(t > w0, b_dt, 0.0)
                    b_Bt = tl.load(p_Bn + t * stride_Bl, mask=m_n, other=0.0).to(tl.float32)  # [BN]
                    b_Ct = tl.load(p_Cn + t * stride_Cl, mask=m_n, other=0.0).to(tl.float32)
                    b_h = _exp2(b_dt[:, None] * b_A2) * b_h + (b_dt * b_u)[:, None] * b_Bt[None, :]
                    b_dA_t, b_phi, b_dC, b_ch = _readout_grads(b_h, b_Ct, b_A2, b_dy, b_cum)
                    b_dA += b_dA_t
                    tl.store(scratch_ptr + o_phi + (t - t0), b_phi, mask=m_d)
                    _store_dC_dz(dC_ptr + o_nl + t, b_dC, m_acc, m_n, dz_ptr + o_t, b_dout,
                                 b_ch + b_D * b_u, b_z, b_sig, m_d, HAS_Z)
                tl.store(p_win_cum + i_w * BLOCK_D + o_win, b_cum)
                tl.store(p_win_h + (i_w + 1) * BLOCK_D * BLOCK_N + o_win_dn, b_h)
            # The reverse pass reads the scratch as stored by any thread.
            tl.debug_barrier()

            # Reverse: dh, dB, du, d delta and the dh side of dA, window by window.
            for i_wr in range(0, n_windows):
                i_w = n_windows - 1 - i_wr
                w0 = t0 + i_w * WINDOW_T
                # The adjoint from the later window closes every suffix sum of this one.
                b_cum = tl.load(p_win_cum + i_w * BLOCK_D + o_win)
                b_h = tl.load(p_win_h + (i_w + 1) * BLOCK_D * BLOCK_N + o_win_dn)
                b_dA += b_e * b_h * b_cum[:, None]
                b_Ag = tl.sum(b_e * b_h * b_A2, axis=1)  # sum_n A g_t (A log2(e) units)
                for i_t in range(0, tl.minimum(w0 + WINDOW_T, t1) - w0):
                    t = tl.minimum(w0 + WINDOW_T, t1) - 1 - i_t
                    if INT64_OFFSETS:
                        t = tl.cast(t, tl.int64)
                    o_t = p_row + t
                    b_u = tl.load(u_ptr + o_t, mask=m_d, other=0.0).to(tl.float32)  # [BD]
                    b_dout = tl.load(dout_ptr + o_t, mask=m_d, other=0.0).to(tl.float32)
                    _, _, b_dy = _step_dy(b_dout, z_ptr + o_t, m_d, HAS_Z)
                    b_dt, b_dsoftplus = _step_delta(delta_ptr + o_t, m_d, b_bias, HAS_DELTA_BIAS,
                                                    DELTA_SOFTPLUS)
                    b_dtu = b_dt * b_u
                    b_Bt = tl.load(p_Bn + t * stride_Bl, mask=m_n, other=0.0).to(tl.float32)  # [BN]
                    b_Ct = tl.load(p_Cn + t * stride_Cl, mask=m_n, other=0.0).to(tl.float32)
                    b_dh = b_e + b_dy[:, None] * b_Ct[None, :]  # [BD, BN]
                    b_dhB = b_dh * b_Bt[None, :]  # dh_t x_t / (delta_t u_t)
                    b_dhBu = tl.sum(b_dhB, axis=1)  # [BD] B_t . dh_t
                    b_psi = b_dtu * tl.sum(b_dhB * b_A2, axis=1)
                    b_Ag += tl.load(scratch_ptr + o_phi + (t - t0), mask=m_d, other=0.0) - b_psi
                    # (Delta_w0 is 0 exactly: the window's first step's share comes directly, below)
                    b_dA -= b_dhB * (b_dtu * tl.where(t > w0, b_cum, 0.0))[:, None]
                    _store_dB(dB_ptr + o_nl + t, b_dh, b_dtu, m_acc, m_n)
                    b_e = _exp2(b_dt[:, None] * b_A2) * b_dh
                    b_ddt = b_Ag * 0.6931471805599453 + b_u * b_dhBu
                    b_du = b_dt * b_dhBu
                    if HAS_D:
                        b_du += b_D * b_dy
                        b_dD += b_dy * b_u
                    b_ddt *= b_dsoftplus
                    b_dbias += b_ddt
                    tl.store(du_ptr + o_t, b_du.to(du_ptr.dtype.element_ty), mask=m_d)
                    tl.store(ddelta_ptr + o_t, b_ddt.to(ddelta_ptr.dtype.element_ty), mask=m_d)
                    b_cum -= b_dt
                # The window's first step's share of dA directly: delta_w0 e_w0 h_{w0-1} (exactly 0
                # from a zero state).
                b_h0 = tl.load(p_win_h + i_w * BLOCK_D * BLOCK_N + o_win_dn)
                b_dt, _ = _step_delta(delta_ptr + (p_row + w0), m_d, b_bias, HAS_DELTA_BIAS, DELTA_SOFTPLUS)
                b_dA += b_e * b_h0 * b_dt[:, None]
            # The next chunk's forward pass rewrites the scratch.
            tl.debug_barrier()

        _store_block_partials(dA_part_ptr, dD_part_ptr, dbias_part_ptr, o_dn, m_dn, o_d, m_d, b_dA, b_dD,
                              b_dbias, HAS_D, HAS_DELTA_BIAS)


@triton.jit
def _selective_scan_bwd_last_only_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, delta_bias_ptr, lengths_ptr,
    dout_ptr, dlast_ptr, ckpt_ptr,
    du_ptr, ddelta_ptr, dz_ptr,
    dA_part_ptr, dB_ptr, dC_ptr, dD_part_ptr, dbias_part_ptr,
    dim, seqlen, dstate, heads, groups, n_ckpt, n_dblocks,
    stride_Bb, stride_Bg, stride_Bn, stride_Bl, stride_Cb, stride_Cg, stride_Cn, stride_Cl,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_DELTA_BIAS: tl.constexpr,
    DELTA_SOFTPLUS: tl.constexpr,
    HAS_DLAST: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    INT64_OFFSETS: tl.constexpr,
    CHUNK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    # The backward of the last-position output: one reverse walk per channel block, no forward pass.
    # The output was read at the row's last step T only, so the adjoint is injected there once
    # (dh_T = C_T dy_T + d last_state) and then only decays: dh_{t-1} = a_t dh_t, a_t = exp(delta_t A).
    # The decay's gradient at step t, g_t = dh_t a_t h_{t-1} = dh_t (h_t - x_t) (x_t = delta_t u_t B_t),
    # needs the state, but S_t = dh_t h_t walks back without it: S_{t-1} = dh_{t-1} h_{t-1} = g_t, so
    #   g_t = S_t - dh_t x_t,   S_{t-1} = g_t,
    # one multiply-add per element and step, started at each chunk's last step from the state the
    # forward stored there (checkpoint k: the state at the end of chunk k, the last one ending at T).
    # Restarting at every chunk bounds the rounding of the differences (dA ~1e-6 relative, not growing
    # with L). One exp2 per element; the per-step work is the reverse pass of the full kernel plus S.
    # The program sums dB and dC over its group's channel blocks itself, as the full kernel does.
    i_b, i_g = tl.program_id(0) // groups, tl.program_id(0) % groups
    i_b64 = i_b.to(tl.int64)
    o_n = tl.arange(0, BLOCK_N)  # [BN]
    m_n = o_n < dstate

    # 64-bit batch offsets in the scalar base pointers.
    p_bdl = i_b64 * dim * seqlen  # offset of (b, 0, 0) in u, delta, z and the gradients
    u_ptr += p_bdl
    delta_ptr += p_bdl
    dout_ptr += i_b64 * dim  # dout is (batch, dim)
    du_ptr += p_bdl
    ddelta_ptr += p_bdl
    if HAS_Z:
        z_ptr += p_bdl
        dz_ptr += p_bdl
    (B_ptr, C_ptr, dB_ptr, dC_ptr, dlast_ptr, ckpt_ptr, dA_part_ptr, dD_part_ptr, dbias_part_ptr,
     n_steps) = _bwd_row(B_ptr, C_ptr, dB_ptr, dC_ptr, dlast_ptr, ckpt_ptr, dA_part_ptr, dD_part_ptr,
                         dbias_part_ptr, lengths_ptr, i_b, i_g, dim, seqlen, dstate, groups, n_ckpt,
                         stride_Bb, stride_Bg, stride_Cb, stride_Cg, HAS_LENGTHS)
    n_chunks = tl.cdiv(n_steps, CHUNK_T)
    t_last = n_steps - 1
    o_nl = o_n * seqlen  # [BN] offset of (n, 0) in dB and dC
    if INT64_OFFSETS:
        o_nl = o_n.to(tl.int64) * seqlen
        t_last = tl.cast(t_last, tl.int64)
    m_n_last = tl.where(t_last >= 0, m_n, False)  # [BN] (none for an empty row)
    p_Bn = B_ptr + o_n * stride_Bn  # [BN] pointers to (n, 0)
    b_C_last = tl.load(C_ptr + o_n * stride_Cn + t_last * stride_Cl, mask=m_n_last, other=0.0).to(tl.float32)
    for i_blk in range(0, n_dblocks):
        o_d, m_d, p_row, m_dn, o_dn, b_A2, b_D, b_bias = _channel_block(
            A_ptr, D_ptr, delta_bias_ptr, i_g, i_blk, heads, dim, seqlen, dstate, o_n, m_n, HAS_D,
            HAS_DELTA_BIAS, INT64_OFFSETS, BLOCK_D)
        m_acc = m_n & (i_blk > 0)  # [BN] earlier blocks' dB and dC sums to add to
        m_last = tl.where(t_last >= 0, m_d, False)  # [BD]
        o_last = p_row + t_last
        # The readout at T: dC and dz there from the final state, D's share, the adjoint's injection.
        b_h = tl.load(ckpt_ptr + (n_chunks - 1) * dim * dstate + o_dn, mask=m_dn & m_n_last[None, :],
                      other=0.0)  # [BD, BN] h_T
        b_dout = tl.load(dout_ptr + o_d, mask=m_d, other=0.0).to(tl.float32)
        b_z, b_sig, b_dy = _step_dy(b_dout, z_ptr + o_last, m_last, HAS_Z)
        b_u = tl.load(u_ptr + o_last, mask=m_last, other=0.0).to(tl.float32)
        b_ch = tl.sum(b_h * b_C_last[None, :], axis=1)  # [BD] C_T . h_T
        _store_dC_dz(dC_ptr + o_nl + t_last, tl.sum(b_h * b_dy[:, None], axis=0), m_acc & m_n_last, m_n_last,
                     dz_ptr + o_last, b_dout, b_ch + b_D * b_u, b_z, b_sig, m_last, HAS_Z)
        b_dh = b_dy[:, None] * b_C_last[None, :]  # [BD, BN]
        if HAS_DLAST:
            b_dh += tl.load(dlast_ptr + o_dn, mask=m_dn, other=0.0).to(tl.float32)
        b_Ddy = b_D * b_dy  # du's skip term at T
        b_dD = b_dy * b_u
        b_dA = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
        b_dbias = tl.zeros([BLOCK_D], dtype=tl.float32)
        for i_rev in range(0, n_chunks):
            i_c = n_chunks - 1 - i_rev
            t0 = i_c * CHUNK_T
            t1 = tl.minimum(t0 + CHUNK_T, n_steps)
            if INT64_OFFSETS:
                i_c = tl.cast(i_c, tl.int64)
            b_S = b_dh * tl.load(ckpt_ptr + i_c * dim * dstate + o_dn, mask=m_dn, other=0.0)  # [BD, BN]
            for i_t in range(0, t1 - t0):
                t = t1 - 1 - i_t
                if INT64_OFFSETS:
                    t = tl.cast(t, tl.int64)
                o_t = p_row + t
                b_u = tl.load(u_ptr + o_t, mask=m_d, other=0.0).to(tl.float32)  # [BD]
                b_dt, b_dsoftplus = _step_delta(delta_ptr + o_t, m_d, b_bias, HAS_DELTA_BIAS, DELTA_SOFTPLUS)
                b_dtu = b_dt * b_u
                b_Bt = tl.load(p_Bn + t * stride_Bl, mask=m_n, other=0.0).to(tl.float32)  # [BN]
                b_dhB = b_dh * b_Bt[None, :]  # [BD, BN] dh_t x_t / (delta_t u_t)
                b_dhBu = tl.sum(b_dhB, axis=1)  # [BD] B_t . dh_t
                b_S -= b_dhB * b_dtu[:, None]  # g_t
                # The state before step 0 is 0: no decay gradient there (exactly, not as a difference).
                has_g = tl.where(t > 0, 1.0, 0.0)
                b_dA += b_S * (b_dt * has_g)[:, None]
                b_Ag = tl.sum(b_S * b_A2, axis=1)  # [BD] sum_n A g_t (A log2(e) units)
                _store_dB(dB_ptr + o_nl + t, b_dh, b_dtu, m_acc, m_n)
                b_dh = _exp2(b_dt[:, None] * b_A2) * b_dh
                b_ddt = (b_Ag * (0.6931471805599453 * has_g) + b_u * b_dhBu) * b_dsoftplus
                b_du = b_dt * b_dhBu
                if HAS_D:
                    b_du += tl.where(t == t_last, b_Ddy, 0.0)
                b_dbias += b_ddt
                tl.store(du_ptr + o_t, b_du.to(du_ptr.dtype.element_ty), mask=m_d)
                tl.store(ddelta_ptr + o_t, b_ddt.to(ddelta_ptr.dtype.element_ty), mask=m_d)

        _store_block_partials(dA_part_ptr, dD_part_ptr, dbias_part_ptr, o_dn, m_dn, o_d, m_d, b_dA, b_dD,
                              b_dbias, HAS_D, HAS_DELTA_BIAS)


def _fwd_warps(block_d: int) -> int:
    """One thread per channel (a block of fewer than 32 channels still takes a whole warp)."""
    return max(1, block_d // 32)


def _bc_strides(t: torch.Tensor) -> tuple[int, int, int, int]:
    """(batch, group, state, time) strides of B or C, (batch, N, L) or (batch, G, N, L)."""
    if t.dim() == 3:
        return t.stride(0), 0, t.stride(1), t.stride(2)
    return t.stride()


def _needs_int64_offsets(dim: int, seqlen: int, dstate: int) -> bool:
    """Whether an offset inside one batch element can pass 2**31 - 1 in either kernel: (dim, L) in u,
    delta, z and their gradients, (N, L) in one group of B and C or one block of dB/dC partials,
    (n_ckpt, dim, N) in the checkpoints. The batch and group offsets are always 64-bit."""
    reach = max(dim * seqlen, dstate * seqlen, (num_checkpoints(seqlen) + 1) * dim * dstate)
    return reach >= 2**31


def _packed_bc(B: torch.Tensor, C: torch.Tensor) -> bool:
    """Whether the forward can read B and C four bf16 values per 64-bit load: a step's N values
    adjacent (N a multiple of 4) and every row of them 8-byte aligned."""
    def packed(t: torch.Tensor) -> bool:
        stride_b, stride_g, stride_n, stride_l = _bc_strides(t)
        return (t.dtype == torch.bfloat16 and stride_n == 1 and t.shape[-2] % 4 == 0 and t.data_ptr() % 8 == 0
                and stride_b % 4 == 0 and stride_g % 4 == 0 and stride_l % 4 == 0)

    return packed(B) and packed(C)


def _block_d(cap: int, dim: int, groups: int) -> int:
    """Channels per program: a block must not straddle two B/C groups, so with groups it divides
    ``dim // groups`` (the largest power of two that does, up to ``cap``)."""
    if groups == 1:
        return min(cap, triton.next_power_of_2(dim))
    heads = dim // groups
    return min(cap, heads & -heads)


def _layout(u: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> tuple[int, int, int, int, int]:
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    groups = 1 if B.dim() == 3 else B.shape[1]
    return batch, dim, seqlen, dstate, groups


def _dummy(t: torch.Tensor) -> torch.Tensor:
    """A placeholder pointer for an absent optional tensor (its kernel branch is compiled out)."""
    return t.new_empty(0)


def _triton_fwd(u, delta, A, B, C, D, z, delta_bias, lengths, delta_softplus, return_last_state, last_only,
                store_checkpoints):
    batch, dim, seqlen, dstate, groups = _layout(u, A, B)
    n_ckpt = _triton_checkpoints(seqlen, last_only) if store_checkpoints else 0
    if last_only:
        out = u.new_empty(batch, dim)
    else:
        # The kernel writes each row's steps only; padded steps' outputs are 0.
        out = torch.empty_like(u) if lengths is None else torch.zeros_like(u)
    last_state = u.new_empty((batch, dim, dstate) if return_last_state else (0,), dtype=torch.float32)
    ckpt = u.new_empty((batch, n_ckpt, dim, dstate), dtype=torch.float32)
    block_d = _block_d(FWD_BLOCK_D, dim, groups)
    n_dblocks = triton.cdiv(dim, block_d)
    # The forward loads a step's N values of B and C at immediate offsets when they are adjacent
    # (a (batch, L, N) layout, as nn.Mamba's x_proj makes them); other layouts are copied to it.
    B, C = (t if t.stride(-2) == 1 else t.transpose(-1, -2).contiguous().transpose(-1, -2) for t in (B, C))
    _selective_scan_fwd_kernel[(n_dblocks * batch,)](
        u, delta, A, B, C,
        _dummy(u) if D is None else D, _dummy(u) if z is None else z,
        _dummy(u) if delta_bias is None else delta_bias, _dummy(u) if lengths is None else lengths,
        out, last_state, ckpt,
        dim, seqlen, dim // groups, n_ckpt, n_dblocks, *_bc_strides(B), *_bc_strides(C),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_DELTA_BIAS=delta_bias is not None,
        DELTA_SOFTPLUS=delta_softplus, STORE_LAST_STATE=return_last_state,
        HAS_LENGTHS=lengths is not None, LAST_ONLY=last_only,
        INT64_OFFSETS=_needs_int64_offsets(dim, seqlen, dstate), PACKED_BC=_packed_bc(B, C),
        CHUNK_T=CHUNK, BLOCK_D=block_d, DSTATE=dstate, num_warps=_fwd_warps(block_d),
    )
    return out, last_state, ckpt


def _triton_checkpoints(seqlen: int, last_only: bool) -> int:
    """States the Triton forward stores for its backward: the state entering every chunk after the
    first, or, with ``last_only``, the state at the end of every chunk (the last ending at the final
    step: the last-position backward walks back from it)."""
    return triton.cdiv(seqlen, CHUNK) if last_only else num_checkpoints(seqlen)


def _bwd_scratch_elements(block_d: int, dstate: int) -> int:
    """fp32 elements of one backward program's scratch: phi for a chunk, per window of the chunk its
    delta sum, and the states between the windows (the chunk's first and last included)."""
    windows = CHUNK // BWD_WINDOW
    return block_d * (CHUNK + windows + (windows + 1) * triton.next_power_of_2(dstate))


def _triton_bwd(dout, dlast_state, u, delta, A, B, C, D, z, delta_bias, ckpt, delta_softplus, *, lengths=None,
                last_only=False):
    batch, dim, seqlen, dstate, groups = _layout(u, A, B)
    block_d = _block_d(BWD_BLOCK_D, dim, groups)
    f32 = dict(dtype=torch.float32, device=u.device)
    # The kernel writes each row's steps only; the gradients at padded steps are 0. With last_only it
    # writes dz and dC at the row's last step only; they are 0 elsewhere.
    per_step = torch.empty if lengths is None else torch.zeros
    read_out = torch.zeros if last_only else per_step
    du, ddelta = per_step(u.shape, dtype=u.dtype, device=u.device), per_step(delta.shape, dtype=delta.dtype,
                                                                              device=u.device)
    dz = read_out(z.shape, dtype=z.dtype, device=u.device) if z is not None else _dummy(u)
    dA_part = torch.empty(batch, dim, dstate, **f32)
    # dB and dC summed over each group's channels by its program, in fp32.
    dB = per_step(batch, groups, dstate, seqlen, **f32)
    dC = read_out(batch, groups, dstate, seqlen, **f32)
    dD_part = torch.empty(batch, dim, **f32) if D is not None else _dummy(dA_part)
    dbias_part = torch.empty(batch, dim, **f32) if delta_bias is not None else _dummy(dA_part)
    args = [u, delta, A, B, C, _dummy(u) if D is None else D, _dummy(u) if z is None else z,
            _dummy(u) if delta_bias is None else delta_bias, _dummy(u) if lengths is None else lengths,
            dout, _dummy(dA_part) if dlast_state is None else dlast_state, ckpt, du, ddelta, dz]
    sizes = [dim, seqlen, dstate, dim // groups, groups, ckpt.shape[1], triton.cdiv(dim // groups, block_d)]
    if last_only:
        kernel, windows = _selective_scan_bwd_last_only_kernel, {}
    else:
        # What the kernel's forward pass leaves for its reverse pass: one chunk's worth per program.
        scratch = torch.empty(groups * batch, _bwd_scratch_elements(block_d, dstate), **f32)
        kernel, windows = _selective_scan_bwd_kernel, dict(WINDOW_T=BWD_WINDOW)
        args.append(scratch)
        sizes.append(scratch.shape[1])
    kernel[(groups * batch,)](
        *args, dA_part, dB, dC, dD_part, dbias_part, *sizes, *_bc_strides(B), *_bc_strides(C),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_DELTA_BIAS=delta_bias is not None,
        DELTA_SOFTPLUS=delta_softplus, HAS_DLAST=dlast_state is not None, HAS_LENGTHS=lengths is not None,
        INT64_OFFSETS=_needs_int64_offsets(dim, seqlen, dstate), CHUNK_T=CHUNK, BLOCK_D=block_d,
        BLOCK_N=triton.next_power_of_2(dstate), num_warps=BWD_NUM_WARPS, **windows,
    )
    # Deterministic reductions of the fp32 partials over the batch: dA, dD, d delta_bias.
    dA = dA_part.sum(0).to(A.dtype)
    dB, dC = dB.view(B.shape).to(B.dtype), dC.view(C.shape).to(C.dtype)
    dD = dD_part.sum(0).to(D.dtype) if D is not None else None
    ddelta_bias = dbias_part.sum(0).to(delta_bias.dtype) if delta_bias is not None else None
    return du, ddelta, dA, dB, dC, dD, (dz if z is not None else None), ddelta_bias


def _state_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _backend_for(u: torch.Tensor) -> backend.Backend:
    """Where a call runs. The compiled CPU kernel computes in fp32, so float64 runs the PyTorch path."""
    be = backend.select(u.device, "selective_scan_fn", cpu_kernel=True)
    return "torch" if be == "cpu" and u.dtype == torch.float64 else be


def _num_saved_checkpoints(u: torch.Tensor, store_checkpoints: bool, last_only: bool) -> int:
    """States the forward keeps for backward; the compiled CPU backward recomputes from the start."""
    be = _backend_for(u)
    if not store_checkpoints or be == "cpu":
        return 0
    return _triton_checkpoints(u.shape[2], last_only) if be == "triton" else num_checkpoints(u.shape[2])


# ----------------------------------------------------------------------------- torch.library ops
@torch.library.custom_op("mdaf_kernels::selective_scan_fwd", mutates_args=())
def selective_scan_fwd(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None, z: torch.Tensor | None, delta_bias: torch.Tensor | None,
    lengths: torch.Tensor | None, delta_softplus: bool, return_last_state: bool, last_only: bool,
    store_checkpoints: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out, last_state or an empty tensor, checkpoints (batch, n_ckpt, dim, N) for the backward).

    ``out`` is (batch, dim, L), or (batch, dim) with ``last_only``. ``store_checkpoints`` False (no
    gradient will be asked for) skips the checkpoints: n_ckpt = 0.
    """
    be = _backend_for(u)
    if be == "triton":
        _check_triton_dtypes(u, delta, A, B, C, D, z, delta_bias)
        return _triton_fwd(u, delta, A, B, C, D, z, delta_bias, lengths, delta_softplus, return_last_state,
                           last_only, store_checkpoints)
    if be == "cpu":
        from mdaf_kernels.cpu.selective_scan import selective_scan_cpu_fwd

        out, last_state = selective_scan_cpu_fwd(u, delta, A, B, C, D, z, delta_bias, lengths, delta_softplus,
                                                 return_last_state, last_only)
        batch, dim, _, dstate, _ = _layout(u, A, B)
        return out, last_state, u.new_empty(batch, 0, dim, dstate, dtype=torch.float32)
    out, last_state, ckpt = selective_scan_chunked_fwd(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, store_checkpoints, lengths=lengths,
        last_only=last_only)
    if not return_last_state:
        last_state = last_state.new_empty(0)
    return out, last_state, ckpt


@selective_scan_fwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, lengths, delta_softplus, return_last_state, last_only,
      store_checkpoints):
    batch, dim, seqlen, dstate, _ = _layout(u, A, B)
    sdt = _state_dtype(u.dtype)
    out = u.new_empty(batch, dim) if last_only else torch.empty_like(u)
    last = u.new_empty((batch, dim, dstate) if return_last_state else (0,), dtype=sdt)
    n_ckpt = _num_saved_checkpoints(u, store_checkpoints, last_only)
    ckpt = u.new_empty((batch, n_ckpt, dim, dstate), dtype=sdt)
    return out, last, ckpt


@torch.library.custom_op("mdaf_kernels::selective_scan_bwd", mutates_args=())
def selective_scan_bwd(
    dout: torch.Tensor, dlast_state: torch.Tensor | None,
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None, z: torch.Tensor | None, delta_bias: torch.Tensor | None,
    lengths: torch.Tensor | None, checkpoints: torch.Tensor, delta_softplus: bool, last_only: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
           torch.Tensor]:
    """(du, ddelta, dA, dB, dC, dD, dz, ddelta_bias); an absent input's gradient is an empty tensor.

    ``dout`` is the gradient of the forward's ``out`` ((batch, dim) with ``last_only``).
    """
    be = _backend_for(u)
    dout = _dense_unless_cpu(dout, be)
    if dlast_state is not None:
        dlast_state = dlast_state.contiguous()
    if be == "cpu":
        from mdaf_kernels.cpu.selective_scan import selective_scan_cpu_bwd

        grads = selective_scan_cpu_bwd(dout, dlast_state, u, delta, A, B, C, D, z, delta_bias, lengths,
                                       delta_softplus, last_only)
    else:
        if be == "triton":
            _check_triton_dtypes(u, delta, A, B, C, D, z, delta_bias)
        bwd = _triton_bwd if be == "triton" else selective_scan_chunked_bwd
        grads = bwd(dout, dlast_state, u, delta, A, B, C, D, z, delta_bias, checkpoints, delta_softplus,
                    lengths=lengths, last_only=last_only)
    return tuple(u.new_empty(0) if g is None else g for g in grads)


@selective_scan_bwd.register_fake
def _(dout, dlast_state, u, delta, A, B, C, D, z, delta_bias, lengths, checkpoints, delta_softplus,
      last_only):
    def like(t):
        return u.new_empty(0) if t is None else torch.empty_like(t)

    return (torch.empty_like(u), torch.empty_like(delta), torch.empty_like(A), torch.empty_like(B),
            torch.empty_like(C), like(D), like(z), like(delta_bias))


def _setup_context(ctx, inputs, output) -> None:
    (u, delta, A, B, C, D, z, delta_bias, lengths, delta_softplus, return_last_state, last_only,
     store_checkpoints) = inputs
    if not store_checkpoints and _num_saved_checkpoints(u, True, last_only) > 0:
        raise RuntimeError("selective_scan_fwd: a gradient was required of a call made with "
                           "store_checkpoints=False")
    ctx.delta_softplus = delta_softplus
    ctx.return_last_state = return_last_state
    ctx.last_only = last_only
    ctx.backend = _backend_for(u)
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, lengths, output[2])
    ctx.mark_non_differentiable(output[2])


def _backward(ctx, dout, dlast_state, _dckpt):
    u, delta, A, B, C, D, z, delta_bias, lengths, ckpt = ctx.saved_tensors
    if not ctx.return_last_state or (dlast_state is not None and dlast_state.numel() == 0):
        dlast_state = None
    with backend.use(ctx.backend):  # the backward runs where its forward ran
        du, ddelta, dA, dB, dC, dD, dz, ddelta_bias = selective_scan_bwd(
            dout, dlast_state, u, delta, A, B, C, D, z, delta_bias, lengths, ckpt, ctx.delta_softplus,
            ctx.last_only)
    return (du, ddelta, dA, dB, dC, dD if D is not None else None, dz if z is not None else None,
            ddelta_bias if delta_bias is not None else None, None, None, None, None, None)


selective_scan_fwd.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------- checks and public API
_IO_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


_LENGTH_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _dense_unless_cpu(t: torch.Tensor, be: backend.Backend) -> torch.Tensor:
    """A (batch, dim, L) operand as the backend reads it: the compiled CPU kernel reads any strides
    (nn.Mamba's channel-last views are not copied, and its outputs and gradients keep their layout);
    the Triton kernels and the PyTorch path take contiguous tensors."""
    return t if be == "cpu" else t.contiguous()


def _check_args(u, delta, A, B, C, D, z, delta_bias, lengths) -> None:
    check_tensor("u", u, ndim=3, dtypes=_IO_DTYPES)
    batch, dim, seqlen = u.shape
    dev = u.device
    check_tensor("delta", delta, ndim=3, dtypes=_IO_DTYPES, device=dev)
    check_shape("delta", delta, u.shape, "(batch, dim, L) like u")
    check_tensor("A", A, ndim=2, dtypes=(torch.float32, torch.float64), device=dev)
    if A.shape[0] != dim:
        raise ValueError(f"A: expected shape (dim={dim}, N), got {tuple(A.shape)}")
    dstate = A.shape[1]
    if not 1 <= dstate <= MAX_DSTATE:
        raise ValueError(f"A: state size N = A.shape[1] = {dstate} is outside the supported range "
                         f"1..{MAX_DSTATE}")
    for name, t in (("B", B), ("C", C)):
        check_tensor(name, t, ndim=(3, 4), dtypes=_IO_DTYPES, device=dev)
        if t.dim() == 3:
            check_shape(name, t, (batch, dstate, seqlen), "(batch, N, L)")
        else:
            groups = t.shape[1]
            check_shape(name, t, (batch, groups, dstate, seqlen), "(batch, G, N, L)")
            if groups < 1 or dim % groups != 0:
                raise ValueError(f"{name}: the number of groups G = {groups} must divide dim = {dim}")
    if B.dim() != C.dim() or B.shape != C.shape:
        raise ValueError(f"B and C: expected the same layout, got {tuple(B.shape)} and {tuple(C.shape)}")
    if z is not None:
        check_tensor("z", z, ndim=3, dtypes=_IO_DTYPES, device=dev)
        check_shape("z", z, u.shape, "(batch, dim, L) like u")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None:
            check_tensor(name, t, ndim=1, dtypes=_IO_DTYPES, device=dev)
            check_shape(name, t, (dim,), "(dim,)")
    if lengths is not None:
        check_tensor("lengths", lengths, ndim=1, dtypes=_LENGTH_DTYPES, device=dev)
        check_shape("lengths", lengths, (batch,), "(batch,)")
        # A value check reads the tensor (a device sync); a compiled graph skips it.
        if not torch.compiler.is_compiling() and batch > 0:
            lo, hi = int(lengths.min()), int(lengths.max())
            if lo < 0 or hi > seqlen:
                raise ValueError(f"lengths: expected values in [0, L={seqlen}], got values in [{lo}, {hi}]")


def _check_triton_dtypes(*tensors: torch.Tensor | None) -> None:
    for t in tensors:
        if t is not None and t.dtype == torch.float64:
            raise TypeError("selective_scan_fn: float64 inputs run on the torch backend only "
                            "(use mdaf_kernels.backend.use('torch')); the Triton kernels compute in fp32")


def selective_scan_fn(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    lengths: torch.Tensor | None = None,
    last_only: bool = False,
):
    """Mamba-1 selective scan with mamba_ssm's signature and semantics, plus per-row lengths and a
    last-position output.

    u, delta, z: (batch, dim, L); A: (dim, N) real; B, C: (batch, N, L) or (batch, G, N, L) with
    ``dim % G == 0``; D, delta_bias: (dim,). Returns ``out`` (batch, dim, L) in ``u``'s dtype, or
    ``(out, last_state)`` with ``last_state`` (batch, dim, N) fp32 when ``return_last_state``.
    Every input gets a gradient, the last state included. N is limited to ``MAX_DSTATE``.

    ``lengths`` (batch,) integer, values in [0, L]: steps ``t >= lengths[b]`` of row ``b`` are
    padding (right padding): they leave the state unchanged and their output is 0; ``last_state``
    is the state after ``lengths[b]`` steps. ``last_only``: ``out`` is (batch, dim), the output at
    position ``lengths[b] - 1`` (``L - 1`` without lengths), 0 for rows of length 0; only that
    position is read out, and its gradients equal the full path's read there.

    Padding without lengths: a step with effective delta 0 (after delta_bias and softplus) leaves
    the state as it was, so zero it at padded positions for padding-independent valid outputs.
    """
    _check_args(u, delta, A, B, C, D, z, delta_bias, lengths)
    # Under torch.compile the layout is decided without tracing the backend choice (dense inputs suit
    # every backend).
    be = "torch" if torch.compiler.is_compiling() else _backend_for(u)
    out, last_state, _ = selective_scan_fwd(
        # B and C are read through their strides: (batch, L, N) views such as Mamba's x_proj output
        # need no copy (and give the forward immediate-offset loads).
        _dense_unless_cpu(u, be), _dense_unless_cpu(delta, be), A.contiguous(), B, C,
        None if D is None else D.contiguous(), None if z is None else _dense_unless_cpu(z, be),
        None if delta_bias is None else delta_bias.contiguous(),
        None if lengths is None else lengths.contiguous(),
        bool(delta_softplus), bool(return_last_state), bool(last_only),
        torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                        for t in (u, delta, A, B, C, D, z, delta_bias)),
    )
    return (out, last_state) if return_last_state else out


# ----------------------------------------------------------------------------- compile report
def _launch_costs(dtype: str, batch: int, dim: int, seqlen: int, dstate: int, fwd_block_d: int,
                  bwd_block_d: int, last_only: bool = False) -> tuple[LaunchCost, LaunchCost]:
    """What the forward and backward launches must do at this shape (D, z, delta_bias, softplus; one
    group), for the cost model: inputs and outputs once, plus the checkpoints, the fp32 partials and,
    for 16-bit I/O, the backward's dB and dC written in fp32. With ``last_only``, out and dout are
    (batch, dim)."""
    shape = f"B{batch} D{dim} L{seqlen} N{dstate}"
    seq = tensor_bytes(dtype, batch, dim, seqlen)  # u, delta, z, out, dout and their gradients
    out = tensor_bytes(dtype, batch, dim) if last_only else seq  # out, dout
    bc = tensor_bytes(dtype, batch, 1, dstate, seqlen)  # B, C and their gradients
    params = tensor_bytes("fp32", dim, dstate) + 2 * tensor_bytes("fp32", dim)  # A, D, delta_bias
    ckpt = tensor_bytes("fp32", batch, _triton_checkpoints(seqlen, last_only), dim, dstate)
    fwd_blocks, bwd_blocks = triton.cdiv(dim, fwd_block_d), triton.cdiv(dim, bwd_block_d)
    # dA, dD and d delta_bias per batch element; dB and dC in fp32 (re-reads of a program's own
    # earlier blocks' sums are cache hits, not counted)
    partials = (tensor_bytes("fp32", batch, dim, dstate) + 2 * tensor_bytes("fp32", batch, dim)
                + 2 * (tensor_bytes("fp32", batch, 1, dstate, seqlen) - bc))
    exps = batch * dim * seqlen * dstate  # one exp2 per state element and step
    n_chunks = triton.cdiv(seqlen, CHUNK)
    # Forward loops: the chunks, and inside them the steps.
    fwd = LaunchCost(shape, programs=fwd_blocks * batch, io_bytes=3 * seq + out + 2 * bc + params,
                     extra_bytes=ckpt, exp_count=exps, loop_trips=(n_chunks, seqlen))
    # Backward loops: one program per batch element walks the channel blocks (no loop for a single
    # block: the JIT specialises it away), in each the chunks (last to first), in each its windows
    # and their steps forward, then in reverse; with last_only, each chunk's steps in reverse only.
    # It reads the checkpoints; the full kernel's scratch, rewritten for each chunk, is written to
    # memory once at most.
    bwd_steps, bwd_windows = bwd_blocks * seqlen, bwd_blocks * triton.cdiv(seqlen, BWD_WINDOW)
    block_loop = (bwd_blocks,) if bwd_blocks > 1 else ()
    io_bytes = 6 * seq + out + 4 * bc + 2 * params
    if last_only:
        bwd = LaunchCost(shape, programs=batch, io_bytes=io_bytes, extra_bytes=ckpt + partials,
                         exp_count=exps, loop_trips=(*block_loop, bwd_blocks * n_chunks, bwd_steps))
    else:
        scratch = tensor_bytes("fp32", batch, _bwd_scratch_elements(bwd_block_d, dstate))
        bwd = LaunchCost(shape, programs=batch, io_bytes=io_bytes, extra_bytes=ckpt + partials + scratch,
                         exp_count=exps, loop_trips=(*block_loop, bwd_blocks * n_chunks, bwd_windows,
                                                     bwd_steps, bwd_windows, bwd_steps))
    return fwd, bwd


def compile_specs() -> list[KernelSpec]:
    """Both kernels at the MDAF shape (batch 2048, dim 128, L 50, N 32) with D, z, delta_bias and
    softplus, fp32 and bf16 I/O, specialised as a JIT launch at that shape would be: the full output
    without lengths, and the CTR variant (per-row lengths, last position only)."""
    batch, dim, seqlen, dstate = 2048, 128, 50, 32
    fwd_block_d = _block_d(FWD_BLOCK_D, dim, 1)
    bwd_block_d = _block_d(BWD_BLOCK_D, dim, 1)
    ints = {"dim": dim, "seqlen": seqlen, "dstate": dstate, "heads": dim, "groups": 1,
            "n_dblocks": triton.cdiv(dim, bwd_block_d),
            "scratch_size": _bwd_scratch_elements(bwd_block_d, dstate)}
    # B and C as the forward reads them: (batch, L, N) transposed to (batch, N, L), as nn.Mamba's
    # x_proj makes them (other layouts are copied to it first).
    bc_ints = dict(zip(("stride_Bb", "stride_Bg", "stride_Bn", "stride_Bl", "stride_Cb", "stride_Cg",
                        "stride_Cn", "stride_Cl"), (seqlen * dstate, 0, 1, dstate) * 2, strict=True))
    flags = dict(HAS_D=True, HAS_Z=True, HAS_DELTA_BIAS=True, DELTA_SOFTPLUS=True, CHUNK_T=CHUNK,
                 INT64_OFFSETS=False)
    variants = {"": dict(HAS_LENGTHS=False, LAST_ONLY=False),
                ",lengths,last_only": dict(HAS_LENGTHS=True, LAST_ONLY=True)}
    specs = []
    for dtype in ("fp32", "bf16"):
        io = ("u_ptr", "delta_ptr", "B_ptr", "C_ptr", "z_ptr", "out_ptr", "dout_ptr", "du_ptr", "ddelta_ptr",
              "dz_ptr")
        pointers = {name: dtype if name in io else "fp32" for name in (
            *io, "A_ptr", "D_ptr", "delta_bias_ptr", "last_state_ptr", "ckpt_ptr", "dlast_ptr", "dA_part_ptr",
            "scratch_ptr", "dB_ptr", "dC_ptr", "dD_part_ptr", "dbias_part_ptr")}
        pointers["lengths_ptr"] = "i64"
        for suffix, variant in variants.items():
            last_only = variant["LAST_ONLY"]
            n_ckpt = _triton_checkpoints(seqlen, last_only)
            fwd_ints = {k: v for k, v in ints.items() if k != "groups"}
            fwd_ints.update(n_ckpt=n_ckpt, n_dblocks=triton.cdiv(dim, fwd_block_d))
            # The cost model's launches: the MDAF shape and a larger one compiled the same way.
            fwd_costs, bwd_costs = zip(*(
                _launch_costs(dtype, b, dim, length, dstate, fwd_block_d, bwd_block_d, last_only)
                for b, length in ((batch, seqlen), (batch, 200))), strict=True)
            specs.append(jit_spec(
                f"selective_scan_fwd[{dtype}{suffix}]", _selective_scan_fwd_kernel,
                pointers=pointers, ints={**fwd_ints, **bc_ints},
                constexprs=dict(flags, **variant, STORE_LAST_STATE=False, PACKED_BC=dtype == "bf16",
                                BLOCK_D=fwd_block_d, DSTATE=dstate),
                num_warps=_fwd_warps(fwd_block_d), costs=fwd_costs))
            specs.append(jit_spec(
                f"selective_scan_bwd[{dtype}{suffix}]",
                _selective_scan_bwd_last_only_kernel if last_only else _selective_scan_bwd_kernel,
                pointers=pointers, ints={**ints, **bc_ints, "n_ckpt": n_ckpt},
                constexprs=dict(flags, HAS_LENGTHS=variant["HAS_LENGTHS"], HAS_DLAST=False,
                                BLOCK_D=bwd_block_d, BLOCK_N=triton.next_power_of_2(dstate),
                                **({} if last_only else {"WINDOW_T": BWD_WINDOW})),
                num_warps=BWD_NUM_WARPS, costs=bwd_costs))
    return specs
