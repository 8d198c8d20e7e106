"""The selective scan compiled for CPUs (numba): the path ``selective_scan_fn`` runs on CPU tensors.

Same structure as the Triton kernels: one unit of work per (batch row, channel) walks the row's
steps once with its N-element state in registers/L1, fusing the discretisation, the C readout and
the D skip. Rows are split into ``PARTS`` contiguous parts run in parallel (numba ``prange``, as many
threads as ``torch.get_num_threads()``). The elementwise work around the recurrence (delta_bias and
softplus, the SiLU(z) gate, and their gradients) runs inside the kernels too, as one vectorised pass
over a (row, channel)'s steps with the arithmetic exp of ``primitives`` and a series for softplus's
log1p (libm calls would not vectorise): the host only converts layouts, and nothing (batch, dim,
L)-sized is computed twice or held as a temporary.

The backward recomputes each (row, channel)'s states and decays into a (L + 1, N) scratch buffer
(a few KiB per thread, in cache) and runs the adjoint recurrence ``dh_t = exp(delta_{t+1} A) dh_{t+1}
+ C_t dy_t`` in reverse. The forward therefore keeps nothing for backward but the inputs (no
checkpoints). dB and dC are summed over a row's channels by the thread that owns the row; dA, dD and
d delta_bias are summed per part and the parts added afterwards: deterministic, no atomics.

``lengths``: a row is walked only to its length (outputs and gradients after it are 0).
``last_only``: the forward reads the state out once, at the row's last step; the backward injects
the output gradient into the adjoint at that step only.

The exponential is the cost that dominates (one per channel, state and step): ``primitives.exp``,
arithmetic that vectorises. Everything computes in fp32 (inputs of other dtypes are converted,
outputs converted back), with subnormals flushed to zero (``primitives``).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import boolean, float32, int64, njit, prange, void

from mdaf_kernels.cpu.primitives import (
    LOOP_FLAGS,
    PARTS,
    exp,
    flush_subnormals,
    restore_fp_control,
    set_threads,
    silu,
    silu_slope,
)

_f32 = np.float32
_ZERO, _ONE, _TWO = _f32(0.0), _f32(1.0), _f32(2.0)
# 1 / (2k + 1): the odd series of atanh, for softplus's log1p.
_S3, _S5, _S7, _S9, _S11, _S13, _S15 = (_f32(1.0 / k) for k in range(3, 16, 2))


@njit(fastmath=LOOP_FLAGS, cache=True, error_model="numpy")
def _effective_delta(delta_row, bias, softplus, n_steps, dt, slope):
    """dt[t] = softplus(delta_row[t] + bias) (or without softplus) and slope[t] its derivative by
    delta_row[t], for t < n_steps: one vectorised pass per (row, channel). softplus(x) = max(x, 0) +
    log1p(e), e = exp(-|x|), with log1p(e) = 2 atanh(s), s = e / (2 + e) <= 1/3, as its odd series
    (terms to s^15: truncation below 2e-9 relative); its slope sigmoid(x) = (1 or e) / (1 + e)."""
    if not softplus:
        for t in range(n_steps):
            dt[t] = delta_row[t] + bias
            slope[t] = _ONE
        return
    for t in range(n_steps):
        x = delta_row[t] + bias
        e = exp(-abs(x))
        s = e / (_TWO + e)
        s2 = s * s
        series = _ONE + s2 * (_S3 + s2 * (_S5 + s2 * (_S7 + s2 * (_S9 + s2 * (_S11 + s2 * (_S13
                                                                                   + s2 * _S15))))))
        dt[t] = max(x, _ZERO) + _TWO * s * series
        slope[t] = (_ONE if x >= _ZERO else e) / (_ONE + e)


@njit(fastmath=LOOP_FLAGS, cache=True, error_model="numpy")
def _copy_steps(src, n, dst):
    """dst[:n] = src[:n] for a (row, channel)'s steps, either side of any stride: from a channel-last
    (batch, L, dim) tensor seen as (batch, dim, L) into a contiguous buffer the vector loops read, or
    from such a buffer back into an output of the input's layout."""
    for t in range(n):
        dst[t] = src[t]


@njit(fastmath=LOOP_FLAGS, cache=True, error_model="numpy")
def _advance(h_prev, h, decay, a_row, b_row, dt, dtu):
    """h = exp(dt A) h_prev + dt u B over the N states, the decays stored in ``decay``."""
    for k in range(h.shape[0]):
        decay[k] = exp(dt * a_row[k])
        h[k] = decay[k] * h_prev[k] + dtu * b_row[k]


@njit(fastmath=LOOP_FLAGS, cache=True, error_model="numpy")
def _dot(x, y):
    acc = _ZERO
    for k in range(x.shape[0]):
        acc += x[k] * y[k]
    return acc


@njit(fastmath=LOOP_FLAGS, cache=True, error_model="numpy")
def _gate(y_row, z_row, n_steps):
    """y_row[t] *= silu(z_row[t]) for t < n_steps."""
    for t in range(n_steps):
        y_row[t] *= silu(z_row[t])


# (batch, dim, L) arrays of any strides ('A' layout): u, delta, z, the output and the gradients come
# as channel-first or channel-last views without a copy. Explicit signatures keep one compiled
# version of each kernel whatever the layouts.
_ROWS = float32[:, :, :]
# Contiguous float32 arrays of rank 1 to 4.
_F1, _F2, _F3, _F4 = float32[::1], float32[:, ::1], float32[:, :, ::1], float32[:, :, :, ::1]


@njit(void(_ROWS, _ROWS, _F2, _F4, _F4, _F1, _ROWS, _F1, int64[::1], _ROWS, _F3, int64, boolean, boolean,
           boolean), parallel=True, fastmath=LOOP_FLAGS, cache=True, error_model="numpy")
def _scan_fwd(u, delta, A, Bt, Ct, D, z, bias, lengths, y, last_state, heads, softplus, last_only,
              store_last):
    """y = (C . h + D u) silu(z): (batch, dim, L), or (batch, dim, 1) at each row's last step with
    ``last_only``; last_state (batch, dim, N) when ``store_last``. delta is the raw step size (bias
    and softplus applied here); Bt, Ct (batch, G, L, N); D and bias are zeros when absent, z is empty
    when absent."""
    batch, dim, length = u.shape
    dstate = A.shape[1]
    has_z = z.shape[0] > 0
    n_parts = min(batch, PARTS)
    for part in prange(n_parts):
        fp_control = flush_subnormals()
        h = np.empty((2, dstate), dtype=np.float32)  # the state before and after a step, alternating
        decay = np.empty(dstate, dtype=np.float32)
        dt, slope = np.empty(length, dtype=np.float32), np.empty(length, dtype=np.float32)
        row = np.empty(length, dtype=np.float32)  # the channel's delta, then its output
        z_row = np.empty(length, dtype=np.float32)
        for b in range(part * batch // n_parts, (part + 1) * batch // n_parts):
            n_steps = lengths[b]
            for d in range(dim):
                g = d // heads
                _copy_steps(delta[b, d], n_steps, row)
                _effective_delta(row, bias[d], softplus, n_steps, dt, slope)
                h[0, :] = _ZERO
                for t in range(n_steps):
                    _advance(h[t % 2], h[(t + 1) % 2], decay, A[d], Bt[b, g, t], dt[t], dt[t] * u[b, d, t])
                    if not last_only:
                        row[t] = _dot(h[(t + 1) % 2], Ct[b, g, t]) + D[d] * u[b, d, t]
                h_last = h[n_steps % 2]
                if last_only:
                    t = n_steps - 1
                    if n_steps > 0:
                        y_last = _dot(h_last, Ct[b, g, t]) + D[d] * u[b, d, t]
                        y[b, d, 0] = y_last * silu(z[b, d, t]) if has_z else y_last
                    else:
                        y[b, d, 0] = _ZERO
                else:
                    if has_z:
                        _copy_steps(z[b, d], n_steps, z_row)
                        _gate(row, z_row, n_steps)
                    _copy_steps(row, n_steps, y[b, d])
                    y[b, d, n_steps:] = _ZERO
                if store_last:
                    last_state[b, d, :] = h_last
        restore_fp_control(fp_control)


@njit(fastmath=LOOP_FLAGS, cache=True, error_model="numpy")
def _gate_grads(dout_row, z_row, n_steps, dy, dz_per_y):
    """For y silu(z): dy[t] (the gradient of y) and dz_per_y[t] (dz[t] = dz_per_y[t] y[t])."""
    for t in range(n_steps):
        dy[t] = dout_row[t] * silu(z_row[t])
        dz_per_y[t] = dout_row[t] * silu_slope(z_row[t])


@njit(void(_ROWS, _ROWS, _F2, _F4, _F4, _F1, _ROWS, _F1, int64[::1], _ROWS, _F3, _ROWS, _ROWS, _ROWS, _F4,
           _F4, _F3, _F2, _F2, int64, boolean, boolean, boolean),
      parallel=True, fastmath=LOOP_FLAGS, cache=True, error_model="numpy")
def _scan_bwd(u, delta, A, Bt, Ct, D, z, bias, lengths, dout, dlast, du, ddelta, dz, dBt, dCt, dA_part,
              dD_part, dbias_part, heads, softplus, has_dlast, last_only):
    """Gradients through ``_scan_fwd`` given dout (the gradient of its output; (batch, dim, 1) with
    ``last_only``) and dlast (of the last state, when ``has_dlast``): du, ddelta (by the raw delta) and
    dz (when z is given) in full; dBt, dCt (batch, G, L, N) and the per-part sums dA_part (PARTS, dim,
    N), dD_part and dbias_part (PARTS, dim) must be zero on entry."""
    batch, dim, length = u.shape
    dstate = A.shape[1]
    has_z = z.shape[0] > 0
    n_parts = min(batch, PARTS)
    for part in prange(n_parts):
        fp_control = flush_subnormals()
        hs = np.empty((length + 1, dstate), dtype=np.float32)  # hs[t + 1] = state after step t
        decays = np.empty((length, dstate), dtype=np.float32)
        carry = np.empty(dstate, dtype=np.float32)  # exp(delta_{t+1} A) dh_{t+1}
        dt = np.empty(length, dtype=np.float32)
        slope = np.empty(length, dtype=np.float32)
        dy = np.zeros(length, dtype=np.float32)  # the gradient of C . h + D u at each step
        dz_per_y = np.zeros(length, dtype=np.float32)  # dz = dz_per_y * (C . h + D u)
        y = np.zeros(length, dtype=np.float32)  # C . h + D u, where dz needs it
        row = np.empty(length, dtype=np.float32)  # the channel's delta, then its output gradient
        z_row = np.empty(length, dtype=np.float32)
        for b in range(part * batch // n_parts, (part + 1) * batch // n_parts):
            n_steps = lengths[b]
            for d in range(dim):
                g = d // heads
                a_row = A[d]
                _copy_steps(delta[b, d], n_steps, row)
                _effective_delta(row, bias[d], softplus, n_steps, dt, slope)
                hs[0, :] = _ZERO
                for t in range(n_steps):
                    _advance(hs[t], hs[t + 1], decays[t], a_row, Bt[b, g, t], dt[t], dt[t] * u[b, d, t])
                # Only the last step has an output with last_only.
                t_first = max(n_steps - 1, 0) if last_only else 0
                dy[:n_steps] = _ZERO
                if last_only:
                    if n_steps > 0 and has_z:
                        _gate_grads(dout[b, d], z[b, d, t_first:], 1, dy[t_first:], dz_per_y[t_first:])
                    elif n_steps > 0:
                        dy[t_first] = dout[b, d, 0]
                elif has_z:
                    _copy_steps(dout[b, d], n_steps, row)
                    _copy_steps(z[b, d], n_steps, z_row)
                    _gate_grads(row, z_row, n_steps, dy, dz_per_y)
                else:
                    _copy_steps(dout[b, d], n_steps, dy)
                if has_dlast:
                    carry[:] = dlast[b, d]
                else:
                    carry[:] = _ZERO
                dD_acc = _ZERO
                dbias_acc = _ZERO
                for t in range(n_steps - 1, -1, -1):
                    dy_t, dt_t, u_t = dy[t], dt[t], u[b, d, t]
                    if has_z and t >= t_first:
                        y[t] = _dot(hs[t + 1], Ct[b, g, t]) + D[d] * u_t
                    dtu = dt_t * u_t
                    b_row, c_row, dB_row, dC_row = Bt[b, g, t], Ct[b, g, t], dBt[b, g, t], dCt[b, g, t]
                    h_prev, h_t, decay, dA_row = hs[t], hs[t + 1], decays[t], dA_part[part, d]
                    if dy_t != _ZERO:  # (with last_only, only at the last step)
                        for k in range(dstate):
                            dC_row[k] += dy_t * h_t[k]
                    dh_B = _ZERO
                    dq_A = _ZERO
                    for k in range(dstate):
                        dh = carry[k] + c_row[k] * dy_t
                        dB_row[k] += dtu * dh
                        dh_B += dh * b_row[k]
                        # The part of dh that flowed through the decay exp(dt A) h_{t-1}.
                        q = dh * decay[k] * h_prev[k]
                        dA_row[k] += q * dt_t
                        dq_A += q * a_row[k]
                        carry[k] = dh * decay[k]
                    ddt = (dq_A + dh_B * u_t) * slope[t]
                    ddelta[b, d, t] = ddt
                    dbias_acc += ddt
                    du[b, d, t] = dh_B * dt_t + dy_t * D[d]
                    dD_acc += dy_t * u_t
                dD_part[part, d] += dD_acc
                dbias_part[part, d] += dbias_acc
                du[b, d, n_steps:] = _ZERO
                ddelta[b, d, n_steps:] = _ZERO
                if has_z:
                    dz[b, d, :] = _ZERO
                    for t in range(t_first, n_steps):
                        dz[b, d, t] = dz_per_y[t] * y[t]
        restore_fp_control(fp_control)


# ----------------------------------------------------------------------------- host side
def _array(t: torch.Tensor | None, *, ndim: int = 1) -> np.ndarray:
    """A contiguous fp32 numpy view or copy of ``t``; an empty array of rank ``ndim`` for None."""
    if t is None:
        return np.zeros((0,) * ndim, dtype=np.float32)
    return t.detach().to(torch.float32).contiguous().numpy()


def _rows(t: torch.Tensor | None) -> np.ndarray:
    """A (batch, dim, L) tensor as an fp32 numpy array in its own layout (a view when it is fp32: a
    channel-last view is read through its strides, not copied); an empty array for None."""
    if t is None:
        return np.zeros((0, 0, 0), dtype=np.float32)
    return t.detach().to(torch.float32).numpy()


def _rows_like(t: torch.Tensor) -> torch.Tensor:
    """An fp32 (batch, dim, L) output laid out as ``t`` (``torch.empty_like``, as the op's fake
    kernel makes it), so a channel-last input gets a channel-last gradient."""
    return torch.empty_like(t, dtype=torch.float32)


def _time_minor(t: torch.Tensor) -> np.ndarray:
    """B or C as a contiguous fp32 (batch, G, L, N) array: one step's N values are adjacent."""
    grouped = t if t.dim() == 4 else t.unsqueeze(1)
    return _array(grouped.transpose(2, 3))


def _kernel_inputs(u, delta, A, B, C, D, z, delta_bias, lengths):
    """The arrays both kernels take: u, delta, A, Bt, Ct, D, z, delta_bias (zeros or empty when
    absent), lengths; and the channels per B/C group."""
    batch, dim, length = u.shape
    heads = dim // (1 if B.dim() == 3 else B.shape[1])
    if lengths is None:
        lens = np.full(batch, length, dtype=np.int64)
    else:
        lens = lengths.detach().to(torch.int64).contiguous().numpy()
    zeros = np.zeros(dim, dtype=np.float32)
    arrays = (_rows(u), _rows(delta), _array(A), _time_minor(B), _time_minor(C),
              zeros if D is None else _array(D), _rows(z),
              zeros if delta_bias is None else _array(delta_bias), lens)
    return arrays, heads


def selective_scan_cpu_fwd(u, delta, A, B, C, D, z, delta_bias, lengths, delta_softplus, return_last_state,
                           last_only):
    """(out, last_state or an empty tensor): out (batch, dim, L), or (batch, dim) with ``last_only``,
    in ``u``'s dtype; last_state (batch, dim, N) fp32."""
    batch, dim, length = u.shape
    args, heads = _kernel_inputs(u, delta, A, B, C, D, z, delta_bias, lengths)
    out = torch.empty(batch, dim, 1) if last_only else _rows_like(u)
    last_state = np.empty((batch, dim, A.shape[1]) if return_last_state else (0, 0, 0), dtype=np.float32)
    set_threads()
    _scan_fwd(*args, out.numpy(), last_state, heads, bool(delta_softplus), bool(last_only),
              bool(return_last_state))
    last_t = torch.from_numpy(last_state) if return_last_state else u.new_empty(0, dtype=torch.float32)
    return (out.view(batch, dim) if last_only else out).to(u.dtype), last_t


def selective_scan_cpu_bwd(dout, dlast_state, u, delta, A, B, C, D, z, delta_bias, lengths, delta_softplus,
                           last_only):
    """Gradients ``(du, ddelta, dA, dB, dC, dD, dz, ddelta_bias)`` in the dtypes of the matching
    inputs, None for inputs that were None. ``dout`` is (batch, dim) with ``last_only``."""
    batch, dim, length = u.shape
    dstate = A.shape[1]
    args, heads = _kernel_inputs(u, delta, A, B, C, D, z, delta_bias, lengths)
    dout = _rows(dout.reshape(batch, dim, 1 if last_only else length))
    du, ddelta = _rows_like(u), _rows_like(delta)
    dz = None if z is None else _rows_like(z)
    dBt, dCt = np.zeros_like(args[3]), np.zeros_like(args[4])
    n_parts = min(batch, PARTS)
    dA_part = np.zeros((n_parts, dim, dstate), dtype=np.float32)
    dD_part, dbias_part = (np.zeros((n_parts, dim), dtype=np.float32) for _ in range(2))
    set_threads()
    _scan_bwd(*args, dout, _array(dlast_state, ndim=3), du.numpy(), ddelta.numpy(), _rows(dz), dBt, dCt,
              dA_part, dD_part, dbias_part, heads, bool(delta_softplus), dlast_state is not None,
              bool(last_only))

    def like(a: np.ndarray | torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(a).to(t.dtype)

    def like_bc(a: np.ndarray, t: torch.Tensor) -> torch.Tensor:  # (batch, G, L, N) -> B/C's layout
        return torch.from_numpy(a).transpose(2, 3).reshape(t.shape).to(t.dtype)

    return (
        like(du, u), like(ddelta, delta), like(dA_part.sum(0), A), like_bc(dBt, B), like_bc(dCt, C),
        None if D is None else like(dD_part.sum(0), D),
        None if z is None else like(dz, z),
        None if delta_bias is None else like(dbias_part.sum(0), delta_bias),
    )
