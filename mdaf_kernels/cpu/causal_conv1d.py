"""The causal depthwise Conv1d (+ SiLU) compiled for CPUs (numba): the path ``causal_conv1d_fn`` runs on
CPU tensors.

Two loop nests, one per memory layout of x, each walking x's unit-stride axis in its inner loop so
that it vectorises; neither copies x:

- channel-last (x[b, d, t] at d unit stride, as the "b l d -> b d l" view of Mamba's in_proj output
  gives it, even as one half of it): per (row, step), the inner loops run over the channels;
- channel-first (t unit stride, e.g. a contiguous (batch, dim, L) tensor): per (row, channel), the
  inner loops run over time.

The output (and dx) is channel-last when x is (dense: the transpose of a contiguous (batch, L, dim)
tensor, which Mamba's x_proj reads as "b d l -> b l d" without a copy) and contiguous otherwise, as
the Triton op gives it. Tensors are passed as flat views of their storage plus strides, so any
strides on the other axes are read in place. The channel-last backward also reads a channel-first
dout (e.g. x_proj's channel-last gradient plus a channel-first du from the scan), transposing 16
steps of a row at a time into a buffer in cache. Other tensors
without unit stride on the loop nest's inner axis are copied first.

SiLU is evaluated once per output element in the forward; the backward recomputes the
pre-activation (only the inputs are kept for backward) and evaluates the SiLU derivative once per
element, using the vectorisable exponential of ``primitives``. The backward walks each row once: in the
channel-last layout it keeps the last ``width`` pre-activation gradients in a ring of rows, so dx at
t - (width - 1) is complete at step t. dweight and dbias are summed per part of the batch (``PARTS``
contiguous parts, a fixed number, run on ``torch.get_num_threads()`` threads) and the parts added
afterwards in a fixed order: deterministic, no atomics, independent of the thread count.

Everything computes in fp32 (other I/O dtypes are converted on the way in and out), with
subnormals flushed to zero (FTZ/DAZ) for the kernel's duration (``primitives``).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from mdaf_kernels.cpu.primitives import (
    LOOP_FLAGS,
    PARTS,
    flush_subnormals,
    restore_fp_control,
    set_threads,
    silu_slope,
)
from mdaf_kernels.cpu.primitives import silu as _silu  # `silu` names the kernels' activation flag

_f32 = np.float32
_ZERO = _f32(0.0)
_U0, _U1 = np.uint64(0), np.uint64(1)
_PARTS = np.uint64(PARTS)
# Steps of a channel-first dout transposed at a time in the channel-last backward (16 x 128 channels:
# 8 KiB, in L1).
_CHUNK = np.uint64(16)

# The kernels index flat fp32 arrays with unsigned integers (sizes, strides and offsets are passed as
# uint64): numba then emits no negative-index wraparound, whose select per element would stop the
# inner loops from vectorising; and they index rather than slice (a slice costs reference counting).
# numpy's error model: a float division by zero gives inf instead of raising, so that loops with a
# division (the sigmoid) have no branch.
_inline = njit(fastmath=LOOP_FLAGS, error_model="numpy", inline="always", cache=True)
_parallel = njit(parallel=True, fastmath=LOOP_FLAGS, error_model="numpy", cache=True)


@_inline
def _store_output(out, start, pre, silu):
    """out[start + i] = silu(pre[i]), or pre[i], for every i."""
    if silu:
        for i in range(np.uint64(pre.shape[0])):
            out[start + i] = _silu(pre[i])
    else:
        for i in range(np.uint64(pre.shape[0])):
            out[start + i] = pre[i]


@_inline
def _pre_grad(dpre, dpre_start, pre, dout, dout_start, silu):
    """dpre[dpre_start + i] = dout[dout_start + i] times silu'(pre[i]) (or not) for i < len(pre)."""
    if silu:
        for i in range(np.uint64(pre.shape[0])):
            dpre[dpre_start + i] = dout[dout_start + i] * silu_slope(pre[i])
    else:
        for i in range(np.uint64(pre.shape[0])):
            dpre[dpre_start + i] = dout[dout_start + i]


@_inline
def _rows(part, n_parts, batch):
    """The batch rows of one part: range(first, end)."""
    p = np.uint64(part)
    return range(p * batch // n_parts, (p + _U1) * batch // n_parts)


# ----------------------------------------------------------------------------- channel-last
@_inline
def _pre_channel_last(pre, x, x_row, sxl, t, w_t, bias, has_bias):
    """pre[d] = bias[d] + sum_k w_t[k, d] * x[b, d, t - (width - 1) + k] for every channel d, where
    x[b, d, s] is x[x_row + s * sxl + d] (causal: taps before the start read zero)."""
    dim, width = np.uint64(pre.shape[0]), np.uint64(w_t.shape[0])
    for d in range(dim):
        pre[d] = bias[d] if has_bias else _ZERO
    for k in range(width - _U1 - t if t < width - _U1 else _U0, width):
        x_tap = x_row + (t + k - (width - _U1)) * sxl
        for d in range(dim):
            pre[d] += w_t[k, d] * x[x_tap + d]


@_parallel
def _fwd_channel_last(x, w_t, bias, out, batch, dim, length, sxb, sxl, sob, sol, has_bias, silu):
    """out[b, d, t] at out[b * sob + t * sol + d] from x[b * sxb + t * sxl + d]."""
    n_parts = min(batch, _PARTS)
    for part in prange(n_parts):
        fp_control = flush_subnormals()
        pre = np.empty(dim, dtype=np.float32)
        for b in _rows(part, n_parts, batch):
            for t in range(length):
                _pre_channel_last(pre, x, b * sxb, sxl, t, w_t, bias, has_bias)
                _store_output(out, b * sob + t * sol, pre, silu)
        restore_fp_control(fp_control)


@_parallel
def _bwd_channel_last(x, w_t, bias, dout, dx, dw_part, db_part, batch, dim, length, sxb, sxl, sdb, sdl,
                      sgb, sgd, sgl, has_bias, silu):
    """dx laid out as ``_fwd_channel_last``'s out (strides sdb, sdl); dout[b, d, t] at
    dout[b * sgb + d * sgd + t * sgl] with sgd = 1 (channel-last) or sgl = 1 (channel-first: each
    row is transposed in chunks of steps into a buffer in cache on the way, rather than copied whole);
    dw_part (parts, width, dim) and db_part (parts, dim) must be zero on entry."""
    width = np.uint64(w_t.shape[0])
    dout_channel_last = sgd == _U1 or dim == _U1
    n_parts = min(batch, _PARTS)
    for part in prange(n_parts):
        fp_control = flush_subnormals()
        pre = np.empty(dim, dtype=np.float32)
        dpre = np.empty(width * dim, dtype=np.float32)  # the gradient of pre at step s at (s % width) * dim
        dout_chunk = np.empty(_U0 if dout_channel_last else _CHUNK * dim, dtype=np.float32)
        for b in _rows(part, n_parts, batch):
            for t in range(length + width - _U1):
                if t < length:
                    row = t % width * dim
                    if silu:
                        _pre_channel_last(pre, x, b * sxb, sxl, t, w_t, bias, has_bias)
                    if dout_channel_last:
                        _pre_grad(dpre, row, pre, dout, b * sgb + t * sgl, silu)
                    else:
                        if t % _CHUNK == 0:  # dout_chunk[i * dim + d] = dout[b, d, t + i]
                            for d in range(dim):
                                g_d = b * sgb + d * sgd + t
                                for i in range(min(_CHUNK, length - t)):
                                    dout_chunk[i * dim + d] = dout[g_d + i]
                        _pre_grad(dpre, row, pre, dout_chunk, t % _CHUNK * dim, silu)
                    for d in range(dim):
                        db_part[part, d] += dpre[row + d]
                    for k in range(width - _U1 - t if t < width - _U1 else _U0, width):
                        x_tap = b * sxb + (t + k - (width - _U1)) * sxl
                        for d in range(dim):
                            dw_part[part, k, d] += dpre[row + d] * x[x_tap + d]
                # dx[s] = sum_j w[width - 1 - j] * dpre[s + j] for s = t - (width - 1): complete now.
                if t >= width - _U1:
                    s = t - (width - _U1)
                    dx_s = b * sdb + s * sdl
                    for d in range(dim):
                        dx[dx_s + d] = _ZERO
                    for j in range(min(width, length - s)):
                        row = (s + j) % width * dim
                        for d in range(dim):
                            dx[dx_s + d] += w_t[width - _U1 - j, d] * dpre[row + d]
        restore_fp_control(fp_control)


# ----------------------------------------------------------------------------- channel-first
@_inline
def _pre_channel_first(pre, x, x_bd, w_t, d, bias_d):
    """pre[t] = bias_d + sum_k w_t[k, d] * x[x_bd + t - (width - 1) + k] over the row (causal)."""
    length, width = np.uint64(pre.shape[0]), np.uint64(w_t.shape[0])
    for t in range(length):
        pre[t] = bias_d
    for k in range(width):
        shift = width - _U1 - k
        w = w_t[k, d]
        for i in range(length - shift if shift < length else _U0):
            pre[shift + i] += w * x[x_bd + i]


@_parallel
def _fwd_channel_first(x, w_t, bias, out, batch, dim, length, sxb, sxd, sob, sod, has_bias, silu):
    """out[b, d, t] at out[b * sob + d * sod + t] from x[b * sxb + d * sxd + t]."""
    n_parts = min(batch, _PARTS)
    for part in prange(n_parts):
        fp_control = flush_subnormals()
        pre = np.empty(length, dtype=np.float32)
        for b in _rows(part, n_parts, batch):
            for d in range(dim):
                _pre_channel_first(pre, x, b * sxb + d * sxd, w_t, d, bias[d] if has_bias else _ZERO)
                _store_output(out, b * sob + d * sod, pre, silu)
        restore_fp_control(fp_control)


@_parallel
def _bwd_channel_first(x, w_t, bias, dout, dx, dw_part, db_part, batch, dim, length, sxb, sxd, sgb, sgd,
                       sdb, sdd, has_bias, silu):
    """dx laid out as ``_fwd_channel_first``'s out (strides sdb, sdd), dout (strides sgb, sgd); dw_part
    (parts, width, dim) and db_part (parts, dim) must be zero on entry."""
    width = np.uint64(w_t.shape[0])
    n_parts = min(batch, _PARTS)
    for part in prange(n_parts):
        fp_control = flush_subnormals()
        pre = np.empty(length, dtype=np.float32)
        dpre = np.empty(length, dtype=np.float32)
        for b in _rows(part, n_parts, batch):
            for d in range(dim):
                x_bd, g_bd, dx_bd = b * sxb + d * sxd, b * sgb + d * sgd, b * sdb + d * sdd
                if silu:
                    _pre_channel_first(pre, x, x_bd, w_t, d, bias[d] if has_bias else _ZERO)
                _pre_grad(dpre, _U0, pre, dout, g_bd, silu)
                db = _ZERO
                for t in range(length):
                    db += dpre[t]
                db_part[part, d] += db
                for t in range(length):
                    dx[dx_bd + t] = _ZERO
                for k in range(width):
                    shift = width - _U1 - k
                    w = w_t[k, d]
                    dw = _ZERO
                    for i in range(length - shift if shift < length else _U0):
                        dw += dpre[shift + i] * x[x_bd + i]  # d/dw[k] of pre[shift + i]
                        dx[dx_bd + i] += w * dpre[shift + i]  # dx[t] = sum_k w[k] dpre[t + width - 1 - k]
                    dw_part[part, k, d] += dw
        restore_fp_control(fp_control)


# ----------------------------------------------------------------------------- host side
def _unit_stride_along(t: torch.Tensor, channel_last: bool) -> bool:
    """Whether the layout's inner axis (channels for channel-last, time otherwise) has unit stride in t
    (a size-1 axis has any stride)."""
    axis = 1 if channel_last else 2
    return t.shape[axis] <= 1 or t.stride(axis) == 1


def _fp32_readable(t: torch.Tensor, like: torch.Tensor, channel_last: bool, *,
                   also_channel_first: bool = False) -> torch.Tensor:
    """t in fp32 (itself if it is fp32) when it has the layout's unit stride (or, with
    ``also_channel_first``, unit stride in time), else an fp32 copy in ``like``'s layout."""
    t = t.detach().float()
    if _unit_stride_along(t, channel_last) or (also_channel_first and _unit_stride_along(t, False)):
        return t
    return torch.empty_like(like, dtype=torch.float32).copy_(t)


def _flat(t: torch.Tensor) -> np.ndarray:
    """The fp32 storage ``t`` reads, as a 1-D array starting at t[0, 0, 0] (t has an element)."""
    extent = 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride(), strict=True))
    return t.as_strided((extent,), (1,)).numpy()


def _sizes_and_strides(channel_last: bool, *tensors: torch.Tensor) -> tuple[np.uint64, ...]:
    """The kernels' integers: batch, dim and L, then per tensor its batch stride and the stride of its
    outer axis (time for channel-last, channels otherwise)."""
    outer = 2 if channel_last else 1
    strides = (s for t in tensors for s in (t.stride(0), t.stride(outer)))
    return _u64((*tensors[0].shape, *strides))


def _u64(values: tuple[int, ...]) -> tuple[np.uint64, ...]:
    return tuple(np.uint64(v) for v in values)


def _params(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
    """weight as a contiguous fp32 (width, dim) array; bias fp32 (dim,), or empty."""
    w_t = weight.detach().float().t().contiguous().numpy()
    b = np.zeros(0, dtype=np.float32) if bias is None else bias.detach().float().contiguous().numpy()
    return w_t, b


def _layout_of(out: torch.Tensor) -> bool:
    """Whether the kernels walk ``out`` channel-last (else its time axis has unit stride)."""
    return _unit_stride_along(out, True) and not _unit_stride_along(out, False)


def causal_conv1d_cpu_fwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, silu: bool,
                          out: torch.Tensor) -> torch.Tensor:
    """Write the forward into ``out`` (x's shape, any dtype, channel-last or with a unit-stride time
    axis); return ``out``."""
    if out.numel() == 0:
        return out
    channel_last = _layout_of(out)
    x32 = _fp32_readable(x, out, channel_last)
    out32 = out if out.dtype == torch.float32 else torch.empty_like(out, dtype=torch.float32)
    w_t, b = _params(weight, bias)
    kernel = _fwd_channel_last if channel_last else _fwd_channel_first
    set_threads()
    kernel(_flat(x32), w_t, b, _flat(out32), *_sizes_and_strides(channel_last, x32, out32), bias is not None,
           silu)
    return out if out32 is out else out.copy_(out32)


def causal_conv1d_cpu_bwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                          dout: torch.Tensor, silu: bool, dx: torch.Tensor,
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Write dx in place (laid out as the forward's ``out``); return (dx, dweight, dbias), dweight
    (dim, width) and dbias (dim,) in fp32."""
    batch, dim, _ = x.shape
    width = weight.shape[1]
    if dx.numel() == 0:
        zeros = torch.zeros((dim, width), dtype=torch.float32)
        return dx, zeros, zeros[:, 0].clone()
    channel_last = _layout_of(dx)
    x32 = _fp32_readable(x, dx, channel_last)
    # The channel-last backward also reads a channel-first dout (the Mamba block's) in place.
    dout32 = _fp32_readable(dout, dx, channel_last, also_channel_first=channel_last)
    dx32 = dx if dx.dtype == torch.float32 else torch.empty_like(dx, dtype=torch.float32)
    w_t, b = _params(weight, bias)
    n_parts = min(batch, PARTS)
    dw_part = np.zeros((n_parts, width, dim), dtype=np.float32)
    db_part = np.zeros((n_parts, dim), dtype=np.float32)
    kernel = _bwd_channel_last if channel_last else _bwd_channel_first
    set_threads()
    if channel_last:
        strides = (*_sizes_and_strides(True, x32, dx32), *_u64(dout32.stride()))
    else:
        strides = _sizes_and_strides(False, x32, dout32, dx32)
    kernel(_flat(x32), w_t, b, _flat(dout32), _flat(dx32), dw_part, db_part, *strides, bias is not None, silu)
    if dx32 is not dx:
        dx.copy_(dx32)
    # The parts are added in order (numpy, one thread): the same sums whatever the thread count.
    return dx, torch.from_numpy(dw_part.sum(axis=0).T.copy()), torch.from_numpy(db_part.sum(axis=0))
