"""Fused DCN cross layers (MDAF and DCNv3 formulas): Triton kernels, torch.library ops, public functions.

Public functions (formulas in ``mdaf_kernels.reference.cross_layer``):

- ``cross_layer(x, x0, weight, bias=None, *, kind, formula, ln_weight=None, ln_bias=None, eps=1e-5,
  allow_tf32=True)``: one layer ``y = x + gate * f(x @ W.T + b)``.
- ``cross_stack(x, weight, bias=None, *, kind, formula, ln_weight=None, ln_bias=None, eps=1e-5,
  allow_tf32=True)``: ``weight.shape[0]`` layers over ``x`` (which is also ``x0``) in ONE launch.

Forward: one program per block of at most ``BLOCK_B`` rows (the batch split evenly over one program
per SM when 16-row blocks would leave SMs idle) computes the GEMM (``tl.dot``, fp32 accumulation,
a K-loop over weight tiles that stream from L2) and the whole epilogue (bias, ReLU, the DCNv3
LayerNorm mask and concatenation, gate product, residual) in registers. The stack kernel loops over
the layers inside the program: each layer's output block is written once (it is the next layer's
input and is saved for the backward) and, after a CTA barrier, re-read by the same program from L2
(``.cg`` loads), so the intermediates never make a round trip through another launch. The MDAF
formula's output columns go in 64-wide tiles where the width is a multiple of 64 (192: 3 tiles, no
padding); other widths, DCNv3 (whose LayerNorm needs the whole row) and the backward are padded to
the next power of two with masks (100 -> 128; DCNv3's half
width 96 -> 128).

Backward, per layer from the last to the first (2 launches per layer): a row kernel recomputes the
pre-activation from the saved layer input, computes ``dc`` (the gradient of the GEMM output, fp32,
written for the dW GEMM and re-read by the same program), ``dx = (element-wise part) + dc @ W`` (a
second K-loop GEMM with W streaming from L2), the gate's gradient ``dx0`` (fp32, accumulated over the
layers of a stack and folded into dx by layer 0) and per-block fp32 partials of ``db`` and the
LayerNorm parameter grads; then a split-K GEMM kernel writes per-split partials of
``dW = dc.T @ x``. All partials are summed afterwards (deterministic, no atomics). Saved for the
backward: the op's inputs plus, for the stack, the inputs of layers 1..L-1 (in the I/O dtype, exactly
the values the forward consumed; (L-1) * batch * width elements).

Precision: everything is fp32 inside; inputs of any of fp32/fp16/bf16 are upcast right after loading.
``allow_tf32=True`` (the default) runs the GEMMs on tf32 tensor cores; ``allow_tf32=False`` gives
exact fp32 GEMMs (IEEE). For fp16/bf16 inputs the forward tf32 products are exact anyway (their
values are representable in tf32). Grad outputs have the dtype of the tensor they belong to.
"""

from __future__ import annotations

import functools
import itertools

import torch
import triton
import triton.language as tl

from mdaf_kernels import backend
from mdaf_kernels._checks import FLOAT_DTYPES, check_shape, check_tensor
from mdaf_kernels.reference.cross_layer import (
    DEFAULT_EPS,
    FORMULAS,
    KINDS,
    cross_layer_ref,
    cross_stack_ref,
    gates_with_x0,
    projection_size,
)
from mdaf_kernels.tools.cost_model import A100_80GB, H100_SXM
from mdaf_kernels.tools.kernel_spec import KernelSpec, LaunchCost, jit_spec, tensor_bytes

# Tile sizes. The row kernels hold [BLOCK_B, BLOCK_N] fp32 tiles: whole (padded) rows in the
# backward, BLOCK_N up to 256 at width 192, so the row block stays small; the weight streams
# through BLOCK_K-wide tiles. The backward row kernel keeps about twice as many tiles live (no
# spills at 8 warps on sm_80/sm_90 at width 192 with 16 rows; 32 rows would need 254-255 registers).
# The forward's row block: 32 rows, or 16 (tl.dot's least) where a batch spread over one program per
# SM gives each at most 16 rows (batch 2048 on an H100).
BLOCK_B_FWD = 32
BLOCK_B_FWD_SMALL = 16
# The forward's column tile where a width is a multiple of it but not a power of two.
FWD_TILE_N = 64
BLOCK_B_BWD = 16
BLOCK_B_INTERPRETER = 16  # several programs even on the tiny test batches
BLOCK_K = 32
# Exact fp32 (IEEE FMA dots, allow_tf32=False) holds more in registers: 16 rows, 16-wide K tiles and
# no software pipelining of the K-loop (32 rows, 32-wide K tiles or 3 stages spill at width 192).
BLOCK_B_IEEE = 16
BLOCK_K_IEEE = 16
ROW_STAGES = 3
ROW_STAGES_IEEE = 1
# The backward's dW = dc.T @ x GEMM: 64 x 64 output tiles (32 x 64 for exact fp32, whose IEEE dot
# needs more registers), K-loop of 32.
GEMM_BLOCK_M = 64
GEMM_BLOCK_N = 64
GEMM_BLOCK_K = 32
# dW reduces over the batch: each split-K program covers this many rows, writing an fp32 partial.
DW_ROWS_PER_SPLIT = 512
DW_ROWS_PER_SPLIT_INTERPRETER = 32  # so that the tests exercise several splits
# Whole rows live in registers. Spill-free on sm_80/sm_90 up to width 512 (mdaf) and 256 (dcnv3);
# wider rows, up to this bound, stay correct but spill registers (slower).
MAX_WIDTH = 1024
# float64 is accepted for checks and gradcheck; the Triton kernels compute it in fp32 like the rest.
DTYPES = (*FLOAT_DTYPES, torch.float64)


def _row_warps(block_n: int) -> int:
    return 16 if block_n >= 1024 else 8 if block_n >= 128 else 4


def _row_stages(allow_tf32: bool) -> int:
    return ROW_STAGES if allow_tf32 else ROW_STAGES_IEEE


# ----------------------------------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------------------------------


@triton.jit
def _project(
    in_ptr, w_ptr, o_row, m_b, o_n, m_n, width,
    BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, INPUT_PRECISION: tl.constexpr,
):
    """``in[rows] @ W.T`` for one row block: [BLOCK_B, BLOCK_N] fp32, zero in padded columns."""
    b_acc = tl.zeros([BLOCK_B, BLOCK_N], dtype=tl.float32)  # [BB, BN]
    for k0 in range(0, width, BLOCK_K):
        o_k = k0 + tl.arange(0, BLOCK_K)  # [BK]
        m_k = o_k < width
        p_x = in_ptr + o_row[:, None] + o_k[None, :]  # [BB, BK]
        # .cg (L2, not L1): in the stack kernel these rows were just written by this program
        b_x = tl.load(p_x, mask=m_b[:, None] & m_k[None, :], other=0.0, cache_modifier=".cg").to(tl.float32)
        p_w = w_ptr + o_n[None, :] * width + o_k[:, None]  # [BK, BN]: W.T tile
        b_w = tl.load(p_w, mask=m_n[None, :] & m_k[:, None], other=0.0).to(tl.float32)
        b_acc = tl.dot(b_x, b_w, b_acc, input_precision=INPUT_PRECISION)
    return b_acc


@triton.jit
def _layer_norm_mask(b_c, m_n, lnw_ptr, lnb_ptr, o_n, n_feat, eps):
    """DCNv3's mask pieces for c [BB, BN]: (normalised c, LayerNorm output a, 1 / std)."""
    b_mean = tl.sum(b_c, axis=1) / n_feat  # [BB]; padded columns of c are zero
    b_diff = tl.where(m_n[None, :], b_c - b_mean[:, None], 0.0)  # [BB, BN]
    b_rstd = 1.0 / tl.sqrt(tl.sum(b_diff * b_diff, axis=1) / n_feat + eps)  # [BB]
    b_nrm = b_diff * b_rstd[:, None]
    b_lnw = tl.load(lnw_ptr + o_n, mask=m_n, other=0.0).to(tl.float32)  # [BN]
    b_lnb = tl.load(lnb_ptr + o_n, mask=m_n, other=0.0).to(tl.float32)
    b_a = b_nrm * b_lnw[None, :] + b_lnb[None, :]
    return b_nrm, b_a, b_rstd, b_lnw


@triton.jit(do_not_specialize=["rows_per_program", "n_longer"])
def _cross_fwd_kernel(
    x_ptr, x0_ptr, w_ptr, b_ptr, lnw_ptr, lnb_ptr, y_ptr, saved_ptr,
    batch, width, n_feat, num_layers, rows_per_program, n_longer, eps,
    BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, N_TILES: tl.constexpr, BLOCK_K: tl.constexpr,
    IS_DCNV3: tl.constexpr, IS_ECN: tl.constexpr, GATE_X0: tl.constexpr, HAS_BIAS: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    """``num_layers`` cross layers over the program's share of the rows: ``rows_per_program`` rows,
    one more for the first ``n_longer`` programs (at most BLOCK_B). Layer l reads its input from x
    (l = 0) or from the previous layer's output, written by this same program; the last layer writes
    y, the others write ``saved[l]`` (the backward's saved layer inputs). The output columns are
    N_TILES tiles of BLOCK_N (one for DCNv3, whose LayerNorm needs the whole row)."""
    i_b = tl.program_id(0)
    o_bb = tl.arange(0, BLOCK_B)  # [BB]
    o_b = i_b * rows_per_program + tl.minimum(i_b, n_longer) + o_bb  # [BB]
    m_b = (o_bb < rows_per_program + (i_b < n_longer)) & (o_b < batch)
    o_row = o_b.to(tl.int64) * width  # [BB] row offsets

    in_ptr = x_ptr
    for layer in range(num_layers):
        w_layer = w_ptr + layer * n_feat * width
        if layer == num_layers - 1:
            out_ptr = y_ptr
        else:
            out_ptr = saved_ptr + (layer * batch).to(tl.int64) * width
        for i_n in tl.static_range(N_TILES):
            o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
            m_n = o_n < n_feat
            m_tile = m_b[:, None] & m_n[None, :]  # [BB, BN]
            p_lo = o_row[:, None] + o_n[None, :]  # [BB, BN]: columns o_n of the width
            b_c = _project(in_ptr, w_layer, o_row, m_b, o_n, m_n, width, BLOCK_B, BLOCK_N, BLOCK_K,
                           INPUT_PRECISION)  # [BB, BN]
            b_x = tl.load(in_ptr + p_lo, mask=m_tile, other=0.0, cache_modifier=".cg").to(tl.float32)
            if GATE_X0:
                b_g = tl.load(x0_ptr + p_lo, mask=m_tile, other=0.0).to(tl.float32)
            else:
                b_g = b_x
            if IS_DCNV3:
                p_hi = p_lo + n_feat  # DCNv3's second half: columns [n_feat, 2 n_feat)
                b_nrm, b_a, b_rstd, b_lnw = _layer_norm_mask(
                    b_c, m_n, lnw_ptr + layer * n_feat, lnb_ptr + layer * n_feat, o_n, n_feat, eps)
                b_h = b_c
                b_h2 = b_c * tl.maximum(b_a, 0.0)
                if HAS_BIAS:
                    p_b = b_ptr + layer * width + o_n  # [BN]
                    b_h += tl.load(p_b, mask=m_n, other=0.0).to(tl.float32)[None, :]
                    b_h2 += tl.load(p_b + n_feat, mask=m_n, other=0.0).to(tl.float32)[None, :]
                b_x2 = tl.load(in_ptr + p_hi, mask=m_tile, other=0.0, cache_modifier=".cg").to(tl.float32)
                if GATE_X0:
                    b_g2 = tl.load(x0_ptr + p_hi, mask=m_tile, other=0.0).to(tl.float32)
                else:
                    b_g2 = b_x2
                tl.store(out_ptr + p_hi, (b_x2 + b_g2 * b_h2).to(y_ptr.dtype.element_ty), mask=m_tile)
            else:
                b_h = b_c
                if HAS_BIAS:
                    b_h += tl.load(b_ptr + layer * width + o_n, mask=m_n, other=0.0).to(tl.float32)[None, :]
                if IS_ECN:
                    b_h = tl.maximum(b_h, 0.0)
            tl.store(out_ptr + p_lo, (b_x + b_g * b_h).to(y_ptr.dtype.element_ty), mask=m_tile)
        # The next layer reads this block back, in other threads' layout.
        tl.debug_barrier()
        in_ptr = out_ptr


@triton.jit
def _cross_bwd_rows_kernel(
    x_ptr, x0_ptr, w_ptr, b_ptr, lnw_ptr, lnb_ptr, dy_ptr,
    dc_ptr, dx_ptr, dx0_ptr, db_part_ptr, dlnw_part_ptr, dlnb_part_ptr,
    batch, width, n_feat, eps,
    BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    IS_DCNV3: tl.constexpr, IS_ECN: tl.constexpr, GATE_X0: tl.constexpr, HAS_BIAS: tl.constexpr,
    ACCUMULATE_DX0: tl.constexpr, FOLD_DX0: tl.constexpr, INPUT_PRECISION: tl.constexpr,
):
    """One layer's backward over a block of rows, all but dW (a reduction over the batch, done after).

    Recomputes c = x @ W.T, writes dc = d(loss)/dc (fp32, also dW's input), dx = (element-wise part)
    + dc @ W in dx's dtype, and this block's fp32 partial sums of db, d(ln_weight), d(ln_bias). The
    gate's grad dy * h goes to dx0 (``ACCUMULATE_DX0``: added to what earlier layers left there) or,
    with ``FOLD_DX0`` (layer 0 of a stack, where x0 is x), into dx together with dx0's content."""
    i_b = tl.program_id(0)
    o_b = i_b * BLOCK_B + tl.arange(0, BLOCK_B)  # [BB]
    m_b = o_b < batch
    o_row = o_b.to(tl.int64) * width  # [BB]
    o_n = tl.arange(0, BLOCK_N)  # [BN]
    m_n = o_n < n_feat
    m_tile = m_b[:, None] & m_n[None, :]  # [BB, BN]
    p_lo = o_row[:, None] + o_n[None, :]  # [BB, BN]
    p_hi = p_lo + n_feat
    o_dc_row = o_b.to(tl.int64) * n_feat  # [BB]

    # 1. element-wise: recompute the layer, then dc, the partial sums and the element-wise part of dx
    b_c = _project(x_ptr, w_ptr, o_row, m_b, o_n, m_n, width, BLOCK_B, BLOCK_N, BLOCK_K,
                   INPUT_PRECISION)  # [BB, BN]
    b_dy = tl.load(dy_ptr + p_lo, mask=m_tile, other=0.0).to(tl.float32)  # [BB, BN]; 0 in padding
    if GATE_X0:
        b_g = tl.load(x0_ptr + p_lo, mask=m_tile, other=0.0).to(tl.float32)
    else:
        b_g = tl.load(x_ptr + p_lo, mask=m_tile, other=0.0).to(tl.float32)
    if IS_DCNV3:
        b_nrm, b_a, b_rstd, b_lnw = _layer_norm_mask(b_c, m_n, lnw_ptr, lnb_ptr, o_n, n_feat, eps)
        b_m = tl.maximum(b_a, 0.0)
        b_h = b_c
        b_h2 = b_c * b_m
        if HAS_BIAS:
            b_h += tl.load(b_ptr + o_n, mask=m_n, other=0.0).to(tl.float32)[None, :]
            b_h2 += tl.load(b_ptr + n_feat + o_n, mask=m_n, other=0.0).to(tl.float32)[None, :]
        b_dy2 = tl.load(dy_ptr + p_hi, mask=m_tile, other=0.0).to(tl.float32)
        if GATE_X0:
            b_g2 = tl.load(x0_ptr + p_hi, mask=m_tile, other=0.0).to(tl.float32)
        else:
            b_g2 = tl.load(x_ptr + p_hi, mask=m_tile, other=0.0).to(tl.float32)
        b_dh = b_dy * b_g  # [BB, BN]: grad of h = [c || c * m] + b, first half
        b_dh2 = b_dy2 * b_g2  # second half
        b_da = tl.where(b_a > 0.0, b_dh2 * b_c, 0.0)  # grad of the LayerNorm output a
        b_dn = b_da * b_lnw[None, :]  # grad of the normalised c (0 in padded columns)
        b_dn_mean = tl.sum(b_dn, axis=1) / n_feat  # [BB]
        b_dnn_mean = tl.sum(b_dn * b_nrm, axis=1) / n_feat
        # the LayerNorm backward: rstd * (dn - mean(dn) - n * mean(dn * n))
        b_dc_ln = b_rstd[:, None] * (b_dn - b_dn_mean[:, None] - b_nrm * b_dnn_mean[:, None])
        b_dc = tl.where(m_n[None, :], b_dh + b_dh2 * b_m + b_dc_ln, 0.0)
        o_part = i_b * n_feat + o_n
        tl.store(dlnw_part_ptr + o_part, tl.sum(b_da * b_nrm, axis=0), mask=m_n)
        tl.store(dlnb_part_ptr + o_part, tl.sum(b_da, axis=0), mask=m_n)
        tl.store(db_part_ptr + i_b * width + o_n, tl.sum(b_dh, axis=0), mask=m_n)
        tl.store(db_part_ptr + i_b * width + n_feat + o_n, tl.sum(b_dh2, axis=0), mask=m_n)
        b_dx2 = b_dy2
        if GATE_X0:
            b_dx0_2 = b_dy2 * b_h2
            if ACCUMULATE_DX0:
                b_dx0_2 += tl.load(dx0_ptr + p_hi, mask=m_tile, other=0.0).to(tl.float32)
            if FOLD_DX0:
                b_dx2 += b_dx0_2
            else:
                tl.store(dx0_ptr + p_hi, b_dx0_2.to(dx0_ptr.dtype.element_ty), mask=m_tile)
        else:
            b_dx2 += b_dy2 * b_h2
    else:
        b_h = b_c
        if HAS_BIAS:
            b_h += tl.load(b_ptr + o_n, mask=m_n, other=0.0).to(tl.float32)[None, :]
        b_dc = b_dy * b_g
        if IS_ECN:
            b_dc = tl.where(b_h > 0.0, b_dc, 0.0)
            b_h = tl.maximum(b_h, 0.0)
        tl.store(db_part_ptr + i_b * width + o_n, tl.sum(b_dc, axis=0), mask=m_n)
    b_dx = b_dy
    if GATE_X0:
        b_dx0 = b_dy * b_h
        if ACCUMULATE_DX0:
            b_dx0 += tl.load(dx0_ptr + p_lo, mask=m_tile, other=0.0).to(tl.float32)
        if FOLD_DX0:
            b_dx += b_dx0
        else:
            tl.store(dx0_ptr + p_lo, b_dx0.to(dx0_ptr.dtype.element_ty), mask=m_tile)
    else:
        b_dx += b_dy * b_h
    tl.store(dc_ptr + o_dc_row[:, None] + o_n[None, :], b_dc, mask=m_tile)
    # The GEMM below reads dc back in another layout (other threads' elements).
    tl.debug_barrier()

    # 2. dx += dc @ W: K-loop over dc's features, W's rows streaming from L2
    for k0 in range(0, n_feat, BLOCK_K):
        o_k = k0 + tl.arange(0, BLOCK_K)  # [BK]
        m_k = o_k < n_feat
        p_dc = dc_ptr + o_dc_row[:, None] + o_k[None, :]  # [BB, BK]
        b_dck = tl.load(p_dc, mask=m_b[:, None] & m_k[None, :], other=0.0, cache_modifier=".cg")
        p_w = w_ptr + o_k[:, None] * width + o_n[None, :]  # [BK, BN]: rows k of W, first columns
        m_w = m_k[:, None] & m_n[None, :]
        b_w = tl.load(p_w, mask=m_w, other=0.0).to(tl.float32)
        b_dx = tl.dot(b_dck, b_w, b_dx, input_precision=INPUT_PRECISION)
        if IS_DCNV3:
            b_w2 = tl.load(p_w + n_feat, mask=m_w, other=0.0).to(tl.float32)  # columns [n_feat, 2 n_feat)
            b_dx2 = tl.dot(b_dck, b_w2, b_dx2, input_precision=INPUT_PRECISION)
    tl.store(dx_ptr + p_lo, b_dx.to(dx_ptr.dtype.element_ty), mask=m_tile)
    if IS_DCNV3:
        tl.store(dx_ptr + p_hi, b_dx2.to(dx_ptr.dtype.element_ty), mask=m_tile)


@triton.jit
def _matmul_kernel(
    a_ptr, b_ptr, c_ptr,
    M, N, K, k_per_split,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cs, stride_cm,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    """``c[s] = a[:, ks] @ b[ks, :]`` in fp32 for the s-th split ``ks`` of K (c's columns unit-stride):
    deterministic split-K partials, summed afterwards."""
    i_m = tl.program_id(0)
    i_n = tl.program_id(1)
    i_s = tl.program_id(2)
    o_m = (i_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)  # [BM]
    o_n = (i_n * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)  # [BN]
    m_m = o_m < M
    m_n = o_n < N
    k_start = i_s * k_per_split
    k_end = tl.minimum(k_start + k_per_split, K)
    b_acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)  # [BM, BN]
    for k0 in range(k_start, k_end, BLOCK_K):
        o_k = (k0 + tl.arange(0, BLOCK_K)).to(tl.int64)  # [BK]
        m_k = o_k < k_end
        p_a = a_ptr + o_m[:, None] * stride_am + o_k[None, :] * stride_ak  # [BM, BK]
        b_a = tl.load(p_a, mask=m_m[:, None] & m_k[None, :], other=0.0).to(tl.float32)
        p_b = b_ptr + o_k[:, None] * stride_bk + o_n[None, :] * stride_bn  # [BK, BN]
        b_b = tl.load(p_b, mask=m_k[:, None] & m_n[None, :], other=0.0).to(tl.float32)
        b_acc = tl.dot(b_a, b_b, b_acc, input_precision=INPUT_PRECISION)
    p_c = c_ptr + i_s * stride_cs + o_m[:, None] * stride_cm + o_n[None, :]  # [BM, BN]
    tl.store(p_c, b_acc, mask=m_m[:, None] & m_n[None, :])


# ----------------------------------------------------------------------------------------------------
# Host launch code
# ----------------------------------------------------------------------------------------------------


def _precision(allow_tf32: bool) -> str:
    return "tf32" if allow_tf32 else "ieee"


def _block_b(row_cols: int, backward: bool, allow_tf32: bool, interpreter: bool) -> int:
    """Rows per program; ``row_cols`` = padded columns held per row (both halves for DCNv3)."""
    if interpreter:
        return BLOCK_B_INTERPRETER
    rows = BLOCK_B_IEEE if not allow_tf32 else BLOCK_B_BWD if backward else BLOCK_B_FWD
    # Wider rows, fewer of them: at most 8192 fp32 elements per row block (tl.dot needs >= 16 rows).
    return max(16, min(rows, 8192 // row_cols))


def _column_tiles(n_feat: int, formula: str, backward: bool) -> tuple[int, int]:
    """(BLOCK_N, N_TILES): the forward of the MDAF formula covers a width that is a multiple of 64
    but not a power of two with 64-wide tiles (192: 3 x 64, not 256); otherwise one tile, padded
    to the next power of two (DCNv3's LayerNorm and the backward hold whole rows)."""
    if not backward and formula == "mdaf" and n_feat % FWD_TILE_N == 0 and n_feat & (n_feat - 1):
        return FWD_TILE_N, n_feat // FWD_TILE_N
    return max(16, triton.next_power_of_2(n_feat)), 1


def _fwd_grid(batch: int, block_b: int, n_sms: int | None) -> tuple[int, int]:
    """(BLOCK_B, programs) of a forward launch: one program per ``block_b`` rows, or one per SM when
    that would leave SMs idle, each on an even share of the rows; the row block shrinks to 16 where
    the shares fit (batch 2048: 132 programs of 15 or 16 rows on an H100, where 64 of 32 would idle
    half its SMs; 108 programs of 18 or 19 rows on an A100)."""
    if n_sms is None:
        return block_b, triton.cdiv(batch, block_b)
    if triton.cdiv(batch, n_sms) <= BLOCK_B_FWD_SMALL:
        block_b = min(block_b, BLOCK_B_FWD_SMALL)
    return block_b, max(triton.cdiv(batch, block_b), min(batch, n_sms))


def _device_sms(device: torch.device) -> int | None:
    """The SM count of a CUDA device (None elsewhere: the interpreter has no SMs to fill)."""
    return _cuda_sms(device) if device.type == "cuda" else None


@functools.cache
def _cuda_sms(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _row_constexprs(kind: str, formula: str, n_feat: int, has_bias: bool, allow_tf32: bool,
                    backward: bool, interpreter: bool | None = None) -> dict:
    """Constexprs of the row kernels; ``interpreter=False`` gives the GPU configuration anywhere."""
    interpreter = backend.interpreter_active() if interpreter is None else interpreter
    block_n, n_tiles = _column_tiles(n_feat, formula, backward)
    row_cols = 2 * block_n if formula == "dcnv3" else block_n
    tiles = {} if backward else {"N_TILES": n_tiles}
    return dict(
        BLOCK_B=_block_b(row_cols, backward, allow_tf32, interpreter), BLOCK_N=block_n, **tiles,
        BLOCK_K=BLOCK_K if allow_tf32 else BLOCK_K_IEEE,
        IS_DCNV3=formula == "dcnv3", IS_ECN=kind == "ecn", GATE_X0=gates_with_x0(kind, formula),
        HAS_BIAS=has_bias, INPUT_PRECISION=_precision(allow_tf32),
    )


def _ln_params(weight: torch.Tensor, ln_weight, ln_bias, formula: str):
    """DCNv3's LayerNorm parameters, identity affine where absent (mdaf: dummies, never read)."""
    if formula != "dcnv3":
        return weight, weight
    layers, n_feat = weight.shape[0], weight.shape[1]
    if ln_weight is None:
        ln_weight = weight.new_ones(layers, n_feat)
    if ln_bias is None:
        ln_bias = weight.new_zeros(layers, n_feat)
    return ln_weight.contiguous(), ln_bias.contiguous()


def _launch_fwd(x, x0, weight, bias, ln_weight, ln_bias, kind, formula, eps, allow_tf32):
    """(y, saved): y (batch, width) and the inputs of layers 1..L-1 (L-1, batch, width), x's dtype."""
    batch, width = x.shape
    layers, n_feat, _ = weight.shape
    x, weight = x.contiguous(), weight.contiguous()
    x0 = x if x0 is None else x0.contiguous()
    lnw, lnb = _ln_params(weight, ln_weight, ln_bias, formula)
    y = torch.empty_like(x)
    saved = x.new_empty((layers - 1, batch, width))
    meta = _row_constexprs(kind, formula, n_feat, bias is not None, allow_tf32, backward=False)
    meta["BLOCK_B"], n_programs = _fwd_grid(batch, meta["BLOCK_B"], _device_sms(x.device))
    _cross_fwd_kernel[(n_programs,)](
        x, x0, weight, weight if bias is None else bias.contiguous(), lnw, lnb, y, saved if layers > 1 else y,
        batch, width, n_feat, layers, batch // n_programs, batch % n_programs, eps,
        num_warps=_row_warps(meta["BLOCK_N"]), num_stages=_row_stages(allow_tf32), **meta,
    )
    return y, saved


def _gemm_blocks(allow_tf32: bool) -> tuple[int, int, int]:
    return (GEMM_BLOCK_M if allow_tf32 else GEMM_BLOCK_M // 2), GEMM_BLOCK_N, GEMM_BLOCK_K


def _matmul(a, b, c, *, M, N, K, strides_a, strides_b, stride_cm, allow_tf32, k_per_split):
    """c[s] = a @ b over split s of K; a, b given by (row, col) strides, c contiguous per split."""
    block_m, block_n, block_k = _gemm_blocks(allow_tf32)
    grid = (triton.cdiv(M, block_m), triton.cdiv(N, block_n), triton.cdiv(K, k_per_split))
    _matmul_kernel[grid](
        a, b, c, M, N, K, k_per_split, *strides_a, *strides_b, M * stride_cm, stride_cm,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, INPUT_PRECISION=_precision(allow_tf32),
        num_warps=4,
    )


def _dw_rows_per_split() -> int:
    return DW_ROWS_PER_SPLIT_INTERPRETER if backend.interpreter_active() else DW_ROWS_PER_SPLIT


def _launch_bwd(dy, x, x0, saved, weight, bias, ln_weight, ln_bias, kind, formula, eps, allow_tf32):
    """Grads of ``_launch_fwd``: (dx, dx0, dW, db, dln_weight, dln_bias); dx and dx0 in their
    tensors' dtypes, the parameter grads fp32. dx0 is None when the gate is not x0; with ``x0=None``
    (the stack) the gate's grad is folded into dx by layer 0. Two launches per layer: the row kernel
    (everything but dW) and the split-K dW GEMM; the per-block partials are summed at the end."""
    batch, width = x.shape
    layers, n_feat, _ = weight.shape
    x, weight, dy = x.contiguous(), weight.contiguous(), dy.contiguous()
    stack = x0 is None
    x0_t = x if stack else x0.contiguous()
    lnw, lnb = _ln_params(weight, ln_weight, ln_bias, formula)
    meta = _row_constexprs(kind, formula, n_feat, bias is not None, allow_tf32, backward=True)
    n_blocks = triton.cdiv(batch, meta["BLOCK_B"])
    rows_per_split = triton.cdiv(_dw_rows_per_split(), GEMM_BLOCK_K) * GEMM_BLOCK_K
    splits = triton.cdiv(batch, rows_per_split)
    f32 = dict(device=x.device, dtype=torch.float32)
    dc = torch.empty(batch, n_feat, **f32)
    gate_x0 = meta["GATE_X0"]
    # The stack keeps the gate's grad (summed over layers) and the inter-layer grads in fp32.
    dx0 = None
    if gate_x0:
        dx0 = torch.empty(batch, width, **f32) if stack else torch.empty_like(x0_t)
    db_part = torch.empty(layers, n_blocks, width, **f32)
    ln_part = torch.empty(2, layers, n_blocks, n_feat, **f32) if formula == "dcnv3" else None
    dw_part = torch.empty(layers, splits, n_feat, width, **f32)
    grad = dy
    for layer in reversed(range(layers)):
        x_l = x if layer == 0 else saved[layer - 1]
        dx = torch.empty_like(x) if layer == 0 else torch.empty(batch, width, **f32)
        b_l = bias[layer] if bias is not None else weight  # dummy pointers when a flag is off
        dlnw_l, dlnb_l = (ln_part[0, layer], ln_part[1, layer]) if ln_part is not None else (db_part, db_part)
        _cross_bwd_rows_kernel[(n_blocks,)](
            x_l, x0_t, weight[layer], b_l, lnw[layer], lnb[layer], grad,
            dc, dx, dx if dx0 is None else dx0, db_part[layer], dlnw_l, dlnb_l,
            batch, width, n_feat, eps,
            ACCUMULATE_DX0=layer != layers - 1, FOLD_DX0=stack and layer == 0,
            num_warps=_row_warps(meta["BLOCK_N"]), num_stages=_row_stages(allow_tf32), **meta,
        )
        # dW_l = dc.T @ x_l: (n_feat, batch) @ (batch, width), split over the batch
        _matmul(dc, x_l, dw_part[layer], M=n_feat, N=width, K=batch, strides_a=(1, n_feat),
                strides_b=(width, 1), stride_cm=width, allow_tf32=allow_tf32, k_per_split=rows_per_split)
        grad = dx
    dweight = dw_part.sum(1)
    dbias = db_part.sum(1)
    dlnw, dlnb = (ln_part[0].sum(1), ln_part[1].sum(1)) if ln_part is not None else (None, None)
    return grad, None if stack else dx0, dweight, dbias, dlnw, dlnb


# ----------------------------------------------------------------------------------------------------
# Reference path (CPU) for the same ops
# ----------------------------------------------------------------------------------------------------


def _layer_params(weight, bias, ln_weight, ln_bias, layer):
    pick = (lambda t: None if t is None else t[layer])
    return weight[layer], pick(bias), pick(ln_weight), pick(ln_bias)


def _ref_fwd(x, x0, weight, bias, ln_weight, ln_bias, kind, formula, eps):
    if x0 is None:
        return cross_stack_ref(x, weight, bias, kind=kind, formula=formula, ln_weight=ln_weight,
                               ln_bias=ln_bias, eps=eps, return_intermediates=True)
    w, b, lnw, lnb = _layer_params(weight, bias, ln_weight, ln_bias, 0)
    y = cross_layer_ref(x, x0, w, b, kind=kind, formula=formula, ln_weight=lnw, ln_bias=lnb, eps=eps)
    return y, x.new_empty((0, *x.shape))


def _ref_bwd(dy, x, x0, weight, bias, ln_weight, ln_bias, kind, formula, eps):
    """The reference's grads, same layout as ``_launch_bwd``. ``torch.func.vjp`` rather than
    ``torch.autograd``: inside a custom op's implementation autograd is not recording."""
    inputs = {"x": x, "x0": x0, "weight": weight, "bias": bias, "ln_weight": ln_weight, "ln_bias": ln_bias}
    present = {k: v for k, v in inputs.items() if v is not None}

    def forward(*tensors):
        args = {**inputs, **dict(zip(present, tensors, strict=True))}
        y, _ = _ref_fwd(*(args[k] for k in inputs), kind, formula, eps)
        return y

    _, vjp = torch.func.vjp(forward, *present.values())
    grads = dict(zip(present, vjp(dy.to(x.dtype)), strict=True))
    return tuple(grads.get(k) for k in inputs)


# ----------------------------------------------------------------------------------------------------
# torch.library ops
# ----------------------------------------------------------------------------------------------------
# Internally both ops take stacked parameters: weight (L, n_feat, width), bias (L, width), LayerNorm
# parameters (L, n_feat). ``x0=None`` means a stack (the gate x0 is x itself).


def _forward_impl(x, x0, weight, bias, ln_weight, ln_bias, kind, formula, eps, allow_tf32):
    if backend.select(x.device, "cross_layer") == "triton" and x.shape[0] > 0:
        return _launch_fwd(x, x0, weight, bias, ln_weight, ln_bias, kind, formula, eps, allow_tf32)
    y, saved = _ref_fwd(x, x0, weight, bias, ln_weight, ln_bias, kind, formula, eps)
    return y.contiguous(), saved.contiguous()


def _backward_impl(dy, x, x0, saved, weight, bias, ln_weight, ln_bias, kind, formula, eps, allow_tf32):
    """(dx, dx0, dW, db, dln_weight, dln_bias) in the dtypes of their tensors; empty where absent."""
    if backend.select(x.device, "cross_layer") == "triton" and x.shape[0] > 0:
        grads = _launch_bwd(dy, x, x0, saved, weight, bias, ln_weight, ln_bias, kind, formula, eps,
                            allow_tf32)
    else:
        grads = _ref_bwd(dy, x, x0, weight, bias, ln_weight, ln_bias, kind, formula, eps)
    like = (x, x0, weight, bias, ln_weight, ln_bias)
    return tuple(
        x.new_empty(0) if t is None or g is None else g.to(t.dtype).contiguous()
        for g, t in zip(grads, like, strict=True)
    )


def _unsqueeze(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.unsqueeze(0)


@torch.library.custom_op("mdaf_kernels::cross_layer", mutates_args=())
def cross_layer_op(
    x: torch.Tensor, x0: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
    ln_weight: torch.Tensor | None, ln_bias: torch.Tensor | None, kind: str, formula: str, eps: float,
    allow_tf32: bool,
) -> torch.Tensor:
    """One layer; arguments checked by ``cross_layer``. Returns y (batch, width) in x's dtype."""
    y, _ = _forward_impl(x, x0, weight.unsqueeze(0), _unsqueeze(bias), _unsqueeze(ln_weight),
                         _unsqueeze(ln_bias), kind, formula, eps, allow_tf32)
    return y


@cross_layer_op.register_fake
def _(x, x0, weight, bias, ln_weight, ln_bias, kind, formula, eps, allow_tf32):
    return torch.empty_like(x)


@torch.library.custom_op("mdaf_kernels::cross_layer_backward", mutates_args=())
def cross_layer_backward_op(
    dy: torch.Tensor, x: torch.Tensor, x0: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
    ln_weight: torch.Tensor | None, ln_bias: torch.Tensor | None, kind: str, formula: str, eps: float,
    allow_tf32: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dx0, dweight, dbias, dln_weight, dln_bias); dx0 is zero when the gate is not x0 (DCNv3
    ECN) and the parameter grads are empty tensors for absent parameters."""
    dx, dx0, dw, db, dlnw, dlnb = _backward_impl(
        dy, x, x0, x.new_empty((0, *x.shape)), weight.unsqueeze(0), _unsqueeze(bias), _unsqueeze(ln_weight),
        _unsqueeze(ln_bias), kind, formula, eps, allow_tf32)
    if dx0.numel() == 0:
        dx0 = torch.zeros_like(x0)
    squeeze = (lambda g: g if g.numel() == 0 else g.squeeze(0).contiguous())
    return dx, dx0, squeeze(dw), squeeze(db), squeeze(dlnw), squeeze(dlnb)


def _param_fakes(bias, ln_weight, ln_bias, like):
    return tuple(like.new_empty(0) if t is None else torch.empty_like(t) for t in (bias, ln_weight, ln_bias))


@cross_layer_backward_op.register_fake
def _(dy, x, x0, weight, bias, ln_weight, ln_bias, kind, formula, eps, allow_tf32):
    return (torch.empty_like(x), torch.empty_like(x0), torch.empty_like(weight),
            *_param_fakes(bias, ln_weight, ln_bias, weight))


def _layer_setup_context(ctx, inputs, output) -> None:
    x, x0, weight, bias, ln_weight, ln_bias, kind, formula, eps, allow_tf32 = inputs
    ctx.save_for_backward(x, x0, weight, bias, ln_weight, ln_bias)
    ctx.config = (kind, formula, eps, allow_tf32)
    ctx.backend = backend.select(x.device, "cross_layer")


def _optional_grads(grads, tensors):
    return tuple(None if t is None else g for g, t in zip(grads, tensors, strict=True))


def _layer_backward(ctx, dy):
    x, x0, weight, bias, ln_weight, ln_bias = ctx.saved_tensors
    with backend.use(ctx.backend):  # the backward runs where its forward ran
        dx, dx0, dw, db, dlnw, dlnb = cross_layer_backward_op(dy, x, x0, weight, bias, ln_weight, ln_bias,
                                                              *ctx.config)
    param_grads = _optional_grads((db, dlnw, dlnb), (bias, ln_weight, ln_bias))
    return (dx, dx0, dw, *param_grads, None, None, None, None)


cross_layer_op.register_autograd(_layer_backward, setup_context=_layer_setup_context)


@torch.library.custom_op("mdaf_kernels::cross_stack", mutates_args=())
def cross_stack_op(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, ln_weight: torch.Tensor | None,
    ln_bias: torch.Tensor | None, kind: str, formula: str, eps: float, allow_tf32: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A stack; arguments checked by ``cross_stack``. Returns (y, saved): y (batch, width) and the
    inputs of layers 1..L-1 (L-1, batch, width), which the backward reuses."""
    return _forward_impl(x, None, weight, bias, ln_weight, ln_bias, kind, formula, eps, allow_tf32)


@cross_stack_op.register_fake
def _(x, weight, bias, ln_weight, ln_bias, kind, formula, eps, allow_tf32):
    return torch.empty_like(x), x.new_empty((weight.shape[0] - 1, *x.shape))


@torch.library.custom_op("mdaf_kernels::cross_stack_backward", mutates_args=())
def cross_stack_backward_op(
    dy: torch.Tensor, x: torch.Tensor, saved: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
    ln_weight: torch.Tensor | None, ln_bias: torch.Tensor | None, kind: str, formula: str, eps: float,
    allow_tf32: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dweight, dbias, dln_weight, dln_bias); empty tensors for absent parameters."""
    dx, _, dw, db, dlnw, dlnb = _backward_impl(dy, x, None, saved, weight, bias, ln_weight, ln_bias, kind,
                                               formula, eps, allow_tf32)
    return dx, dw, db, dlnw, dlnb


@cross_stack_backward_op.register_fake
def _(dy, x, saved, weight, bias, ln_weight, ln_bias, kind, formula, eps, allow_tf32):
    return torch.empty_like(x), torch.empty_like(weight), *_param_fakes(bias, ln_weight, ln_bias, weight)


def _stack_setup_context(ctx, inputs, output) -> None:
    x, weight, bias, ln_weight, ln_bias, kind, formula, eps, allow_tf32 = inputs
    ctx.save_for_backward(x, output[1], weight, bias, ln_weight, ln_bias)
    ctx.config = (kind, formula, eps, allow_tf32)
    ctx.backend = backend.select(x.device, "cross_layer")


def _stack_backward(ctx, dy, _dsaved):
    x, saved, weight, bias, ln_weight, ln_bias = ctx.saved_tensors
    with backend.use(ctx.backend):  # the backward runs where its forward ran
        dx, dw, db, dlnw, dlnb = cross_stack_backward_op(dy, x, saved, weight, bias, ln_weight, ln_bias,
                                                         *ctx.config)
    return (dx, dw, *_optional_grads((db, dlnw, dlnb), (bias, ln_weight, ln_bias)), None, None, None, None)


cross_stack_op.register_autograd(_stack_backward, setup_context=_stack_setup_context)


# ----------------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------------


def _check_config(kind: object, formula: object, width: int, eps: object) -> int:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    if formula not in FORMULAS:
        raise ValueError(f"formula: expected one of {FORMULAS}, got {formula!r}")
    if formula == "dcnv3" and width % 2:
        raise ValueError(f"x: formula='dcnv3' needs an even width (it projects to width // 2 features), "
                         f"got width {width}")
    if width > MAX_WIDTH:
        raise ValueError(f"x: width must be at most {MAX_WIDTH} (rows are held on chip), got {width}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps: expected a positive float, got {eps!r}")
    return projection_size(width, formula)


def _check_params(x, weight, bias, ln_weight, ln_bias, formula, n_feat, lead: tuple[int, ...]) -> None:
    """Shapes ``lead + (...)`` for the parameters; all on x's device with x's dtype."""
    width = x.shape[1]
    rank = len(lead)
    check_tensor("weight", weight, ndim=rank + 2, dtypes=(x.dtype,), device=x.device)
    check_shape("weight", weight, (*lead, n_feat, width),
                f"({'layers, ' if rank else ''}{'width // 2' if formula == 'dcnv3' else 'width'}, width)")
    if bias is not None:
        check_tensor("bias", bias, ndim=rank + 1, dtypes=(x.dtype,), device=x.device)
        check_shape("bias", bias, (*lead, width), f"({'layers, ' if rank else ''}width)")
    for name, t in (("ln_weight", ln_weight), ("ln_bias", ln_bias)):
        if t is None:
            continue
        if formula != "dcnv3":
            raise ValueError(f"{name}: only formula='dcnv3' has a LayerNorm; pass None with "
                             f"formula={formula!r}")
        check_tensor(name, t, ndim=rank + 1, dtypes=(x.dtype,), device=x.device)
        check_shape(name, t, (*lead, n_feat), f"({'layers, ' if rank else ''}width // 2)")


def cross_layer(
    x: torch.Tensor,
    x0: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    kind: str = "lcn",
    formula: str = "mdaf",
    ln_weight: torch.Tensor | None = None,
    ln_bias: torch.Tensor | None = None,
    eps: float = DEFAULT_EPS,
    allow_tf32: bool = True,
) -> torch.Tensor:
    """One fused DCN cross layer ``y = x + gate * f(x @ weight.T + bias)``.

    - ``formula="mdaf"``: weight (width, width); f = identity (``kind="lcn"``) or ReLU (``"ecn"``);
      gate = x0.
    - ``formula="dcnv3"``: weight (width // 2, width) (even width); ``c = x @ weight.T``,
      ``f = [c || c * relu(LayerNorm(c; ln_weight, ln_bias, eps))] + bias``; gate = x0 for "lcn",
      x itself for "ecn" (x0 is then unused and may be None). Absent LayerNorm parameters mean an
      identity affine.

    x, x0: (batch, width); bias: (width,) or None; ln_weight, ln_bias: (width // 2,) or None. All in
    one dtype (fp32, fp16 or bf16) on one device; y has x's dtype. ``allow_tf32`` (default True) lets
    fp32 GEMMs use tf32 tensor cores on GPU; False makes them exact fp32. Differentiable in every
    tensor argument.
    """
    x = check_tensor("x", x, ndim=2, dtypes=DTYPES)
    n_feat = _check_config(kind, formula, x.shape[1], eps)
    if x0 is None:
        if gates_with_x0(kind, formula):
            raise ValueError(f"x0: kind={kind!r} with formula={formula!r} gates with x0; got None")
        x0 = x
    x0 = check_tensor("x0", x0, ndim=2, dtypes=(x.dtype,), device=x.device)
    check_shape("x0", x0, tuple(x.shape), "(batch, width), the shape of x")
    _check_params(x, weight, bias, ln_weight, ln_bias, formula, n_feat, ())
    return cross_layer_op(x, x0, weight, bias, ln_weight, ln_bias, kind, formula, float(eps),
                          bool(allow_tf32))


def cross_stack(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    kind: str = "lcn",
    formula: str = "mdaf",
    ln_weight: torch.Tensor | None = None,
    ln_bias: torch.Tensor | None = None,
    eps: float = DEFAULT_EPS,
    allow_tf32: bool = True,
) -> torch.Tensor:
    """``weight.shape[0]`` cross layers over x (the stack input, x0 = x) in one fused launch.

    Same formulas and dtype rules as ``cross_layer``, with the parameters stacked over the layers:
    weight (layers, width or width // 2, width), bias (layers, width), ln_weight and ln_bias
    (layers, width // 2). Equal to calling ``cross_layer`` layer by layer with x0 = x.
    """
    x = check_tensor("x", x, ndim=2, dtypes=DTYPES)
    n_feat = _check_config(kind, formula, x.shape[1], eps)
    layers = check_tensor("weight", weight, ndim=3, dtypes=(x.dtype,), device=x.device).shape[0]
    if layers < 1:
        raise ValueError("weight: expected at least one layer, got weight.shape[0] = 0")
    _check_params(x, weight, bias, ln_weight, ln_bias, formula, n_feat, (layers,))
    y, _ = cross_stack_op(x, weight, bias, ln_weight, ln_bias, kind, formula, float(eps), bool(allow_tf32))
    return y


# ----------------------------------------------------------------------------------------------------
# Static compile report
# ----------------------------------------------------------------------------------------------------


def _fwd_launch_cost(dtype: str, batch: int, width: int, n_feat: int, layers: int, meta: dict,
                     n_sms: int) -> LaunchCost:
    """What a forward launch on ``n_sms`` SMs must do, for the cost model: x, the layers' weights and
    biases and y once (a stack adds the saved inputs of layers 1.. for the backward). Its loops run
    over the layers (none for one layer: ``num_layers`` = 1 is a constant) and, inside, for each
    column tile over the projection's K tiles."""
    k_tiles = triton.cdiv(width, meta["BLOCK_K"])
    block_b, programs = _fwd_grid(batch, meta["BLOCK_B"], n_sms)
    assert block_b == meta["BLOCK_B"], "the spec's row block is not the one this launch takes"
    return LaunchCost(
        f"B{batch} W{width} layers {layers}", programs=programs,
        io_bytes=tensor_bytes(dtype, layers, n_feat, width + 1) + 2 * tensor_bytes(dtype, batch, width),
        extra_bytes=tensor_bytes(dtype, layers - 1, batch, width),
        loop_trips=((layers,) if layers > 1 else ()) + (layers * k_tiles,) * meta["N_TILES"])


def _bwd_rows_launch_cost(dtype: str, batch: int, width: int, n_feat: int, formula: str,
                          meta: dict) -> LaunchCost:
    """One middle layer's row backward, for the cost model: x, x0, the layer's parameters and the fp32
    dy once, dx and dx0 (read, accumulated, written) in fp32; it adds dc (fp32, the dW GEMM's input)
    and the per-block partials of db (and of the LayerNorm's parameters). Its loops run over the K
    tiles of the recomputed projection, then over those of dc @ W."""
    n_blocks = triton.cdiv(batch, meta["BLOCK_B"])
    partials = tensor_bytes("fp32", n_blocks, width) + (
        tensor_bytes("fp32", 2, n_blocks, n_feat) if formula == "dcnv3" else 0)
    return LaunchCost(
        f"B{batch} W{width}", programs=n_blocks,
        io_bytes=2 * tensor_bytes(dtype, batch, width) + tensor_bytes(dtype, n_feat, width + 1)
        + 4 * tensor_bytes("fp32", batch, width),
        extra_bytes=tensor_bytes("fp32", batch, n_feat) + partials,
        loop_trips=(triton.cdiv(width, meta["BLOCK_K"]), triton.cdiv(n_feat, meta["BLOCK_K"])))


def _dw_gemm_launch_cost(dtype: str, batch: int, width: int, meta: dict) -> LaunchCost:
    """dW = dc.T @ x as split-K partials, for the cost model: dc (fp32) and x once and dW once; the
    other splits' partials are extra. Its loop runs over the BLOCK_K tiles of one split."""
    splits = triton.cdiv(batch, DW_ROWS_PER_SPLIT)
    return LaunchCost(
        f"B{batch} W{width}",
        programs=triton.cdiv(width, meta["BLOCK_M"]) * triton.cdiv(width, meta["BLOCK_N"]) * splits,
        io_bytes=tensor_bytes("fp32", batch, width) + tensor_bytes(dtype, batch, width)
        + tensor_bytes("fp32", width, width),
        extra_bytes=tensor_bytes("fp32", splits - 1, width, width),
        loop_trips=(triton.cdiv(DW_ROWS_PER_SPLIT, meta["BLOCK_K"]),))


def compile_specs() -> list[KernelSpec]:
    """Layer/stack forward, row backward and the backward GEMMs at the MDAF shape (batch 2048, width
    192, 2 layers for the stack), both formulas, fp32 (tf32) and bf16."""
    batch, width = 2048, 192
    specs = []
    for dtype in ("fp32", "bf16"):
        for formula in FORMULAS:
            for kind in KINDS:
                n_feat = projection_size(width, formula)
                # exact fp32 (IEEE) has its own tiles: the stack forward and row backward, the largest
                for allow_tf32 in (True, False) if dtype == "fp32" else (True,):
                    fwd_meta = _row_constexprs(kind, formula, n_feat, True, allow_tf32, backward=False,
                                               interpreter=False)
                    bwd_meta = _row_constexprs(kind, formula, n_feat, True, allow_tf32, backward=True,
                                               interpreter=False)
                    warps = _row_warps(fwd_meta["BLOCK_N"])
                    tag = f"{formula},{kind},{dtype}" + ("" if allow_tf32 else ",ieee")
                    kernels = (("cross_layer_fwd", 1), ("cross_stack_fwd", 2)) if allow_tf32 else (
                        ("cross_stack_fwd", 2),)
                    # Row blocks and the launches that take them: 32 rows at batch 2048 on an A100 (108
                    # programs) and at batch 8192 (both cards), 16 rows at batch 2048 on an H100 (132).
                    variants = [("", fwd_meta, ((batch, A100_80GB.sms), (8192, H100_SXM.sms)))]
                    if fwd_meta["BLOCK_B"] > BLOCK_B_FWD_SMALL:
                        variants.append((",16 rows", {**fwd_meta, "BLOCK_B": BLOCK_B_FWD_SMALL},
                                         ((batch, H100_SXM.sms),)))
                    else:
                        variants = [("", fwd_meta, ((batch, H100_SXM.sms), (8192, H100_SXM.sms)))]
                    for (name, layers), (rows, meta, launches) in itertools.product(kernels, variants):
                        costs = tuple(_fwd_launch_cost(dtype, b, width, n_feat, layers, meta, n_sms)
                                      for b, n_sms in launches)
                        specs.append(jit_spec(
                            f"{name}[{tag}{rows}]", _cross_fwd_kernel,
                            pointers={p: dtype for p in ("x_ptr", "x0_ptr", "w_ptr", "b_ptr", "lnw_ptr",
                                                         "lnb_ptr", "y_ptr", "saved_ptr")},
                            ints={"batch": batch, "width": width, "n_feat": n_feat, "num_layers": layers,
                                  "rows_per_program": batch // costs[0].programs,
                                  "n_longer": batch % costs[0].programs},
                            constexprs=meta, num_warps=warps, num_stages=_row_stages(allow_tf32),
                            costs=costs,
                        ))
                    specs.append(jit_spec(
                        f"cross_layer_bwd_rows[{tag}]", _cross_bwd_rows_kernel,
                        # a middle layer of a stack: fp32 grads in and out, dx0 accumulating
                        pointers={**{p: dtype for p in ("x_ptr", "x0_ptr", "w_ptr", "b_ptr", "lnw_ptr",
                                                        "lnb_ptr")},
                                  **{p: "fp32" for p in ("dy_ptr", "dc_ptr", "dx_ptr", "dx0_ptr",
                                                         "db_part_ptr", "dlnw_part_ptr", "dlnb_part_ptr")}},
                        ints={"batch": batch, "width": width, "n_feat": n_feat},
                        constexprs={**bwd_meta, "ACCUMULATE_DX0": True, "FOLD_DX0": False}, num_warps=warps,
                        num_stages=_row_stages(allow_tf32),
                        costs=tuple(_bwd_rows_launch_cost(dtype, b, width, n_feat, formula, bwd_meta)
                                    for b in (batch, 8192)),
                    ))
        for allow_tf32 in (True, False) if dtype == "fp32" else (True,):
            block_m, block_n, block_k = _gemm_blocks(allow_tf32)
            gemm_meta = dict(BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
                             INPUT_PRECISION=_precision(allow_tf32))
            precision = "tf32" if allow_tf32 else "ieee"
            specs.append(jit_spec(
                f"cross_bwd_dw_gemm[{dtype},{precision}]", _matmul_kernel,
                pointers={"a_ptr": "fp32", "b_ptr": dtype, "c_ptr": "fp32"},
                ints={"M": width, "N": width, "K": batch, "k_per_split": DW_ROWS_PER_SPLIT, "stride_am": 1,
                      "stride_ak": width, "stride_bk": width, "stride_bn": 1, "stride_cs": width * width,
                      "stride_cm": width},
                constexprs=gemm_meta, num_warps=4,
                costs=tuple(_dw_gemm_launch_cost(dtype, b, width, gemm_meta) for b in (batch, 8192)),
            ))
    return specs

