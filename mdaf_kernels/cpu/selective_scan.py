"""The selective scan compiled for CPUs (numba): the path ``selective_scan_fn`` runs on CPU tensors.

Same structure as the Triton kernels: one unit of work per (batch row, channel) walks the row's
steps once with its N-element state in registers/L1, fusing the discretisation, the C readout and
the D skip. Rows are split into ``PARTS`` contiguous parts run in parallel (numba ``prange``, as many
threads as ``torch.get_num_threads()``). The elementwise transcendental work around the recurrence
(delta_bias and softplus, the SiLU(z) gate, and their gradients) runs as torch's vectorised ops on
the host: as scalar libm calls inside the loop it cost more than the state update itself.

The backward recomputes each (row, channel)'s states and decays into a (L + 1, N) scratch buffer
(a few KiB per thread, in cache) and runs the adjoint recurrence ``dh_t = exp(delta_{t+1} A) dh_{t+1}
+ C_t dy_t`` in reverse. The forward therefore keeps nothing for backward but the inputs (no
checkpoints). dB and dC are summed over a row's channels by the thread that owns the row; dA, dD and
d delta_bias are summed per part and the parts added afterwards: deterministic, no atomics.

``lengths``: a row is walked only to its length (outputs and gradients after it are 0).
``last_only``: the forward reads the state out once, at the row's last step; the backward injects
the output gradient into the adjoint at that step only.

The exponential is the cost that dominates (one per channel, state and step). numba has no vector
math library here (no SVML), so ``_exp`` is written as arithmetic that vectorises: Cody-Waite range
reduction, a degree-7 polynomial, and the power of two built from its exponent bits. Its relative
error is below 2e-7 for inputs in [-87, 88] (tested); below -87 it returns 0 or a value below
2e-38, above 88 it saturates at about 1.7e38 instead of overflowing.

Everything computes in fp32 (inputs of other dtypes are converted, outputs converted back).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
import torch.nn.functional as F
from llvmlite import ir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

from mdaf_kernels.reference.selective_scan import effective_delta, last_positions

# Parts the batch is split into: enough for load balance on any core count, and fixed, so that the
# partial sums (and the gradients) do not depend on the thread count.
PARTS = 64

_f32 = np.float32
_LOG2E = _f32(1.4426950408889634)
# ln 2 split so that k * _LN2_HI is exact for |k| <= 127 (Cody-Waite).
_LN2_HI = _f32(0.693359375)
_LN2_LO = _f32(-2.12194440e-4)
_EXP_COEFFS = tuple(_f32(1.0 / math.factorial(i)) for i in range(8))
_C1, _C2, _C3, _C4, _C5, _C6, _C7 = _EXP_COEFFS[1:]
_ZERO, _HALF, _ONE = _f32(0.0), _f32(0.5), _f32(1.0)
_EXP2_MIN, _EXP2_MAX = _f32(-127.0), _f32(127.0)

# The range reduction must be evaluated as written (no reassociation); NaN and Inf still propagate.
_EXP_FLAGS = {"nsz", "contract", "arcp"}
# The scan loops may reassociate (vectorised dot products and sums) and fuse multiply-adds.
_LOOP_FLAGS = {"nsz", "contract", "arcp", "reassoc"}


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the low 32 bits of an int64 (a bitcast, vectorisable)."""
    sig = types.float32(bits)

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())

    return sig, codegen


@njit(fastmath=_EXP_FLAGS, cache=True)
def _exp(x):
    """exp(x) in fp32 from arithmetic alone, so loops calling it vectorise."""
    k = np.floor(min(max(x * _LOG2E, _EXP2_MIN), _EXP2_MAX) + _HALF)
    r = (x - k * _LN2_HI) - k * _LN2_LO  # |r| <= ln(2) / 2
    p = _ONE + r * (_C1 + r * (_C2 + r * (_C3 + r * (_C4 + r * (_C5 + r * (_C6 + r * _C7))))))
    return p * _float32_from_bits((np.int64(k) + 127) << 23)


@njit(fastmath=_EXP_FLAGS, cache=True)
def exp_array(x, out):
    """``out[i] = _exp(x[i])``: the vectorised exponential, exposed for its accuracy test."""
    for i in range(x.shape[0]):
        out[i] = _exp(x[i])


@njit(fastmath=_LOOP_FLAGS, cache=True)
def _advance(h_prev, h, decay, a_row, b_row, dt, dtu):
    """h = exp(dt A) h_prev + dt u B over the N states, the decays stored in ``decay``."""
    for k in range(h.shape[0]):
        decay[k] = _exp(dt * a_row[k])
        h[k] = decay[k] * h_prev[k] + dtu * b_row[k]


@njit(fastmath=_LOOP_FLAGS, cache=True)
def _dot(x, y):
    acc = _ZERO
    for k in range(x.shape[0]):
        acc += x[k] * y[k]
    return acc


@njit(parallel=True, fastmath=_LOOP_FLAGS, cache=True)
def _scan_fwd(u, dt, A, Bt, Ct, D, lengths, y, last_state, heads, last_only, store_last):
    """y = C . h + D u: (batch, dim, L), or (batch, dim, 1) at each row's last step with ``last_only``;
    last_state (batch, dim, N) when ``store_last``. dt is the effective delta; Bt, Ct (batch, G, L, N);
    D is zeros when absent."""
    batch, dim, length = u.shape
    dstate = A.shape[1]
    n_parts = min(batch, PARTS)
    for part in prange(n_parts):
        h = np.empty((2, dstate), dtype=np.float32)  # the state before and after a step, alternating
        decay = np.empty(dstate, dtype=np.float32)
        for b in range(part * batch // n_parts, (part + 1) * batch // n_parts):
            n_steps = lengths[b]
            for d in range(dim):
                g = d // heads
                h[0, :] = _ZERO
                for t in range(n_steps):
                    dt_t = dt[b, d, t]
                    _advance(h[t % 2], h[(t + 1) % 2], decay, A[d], Bt[b, g, t], dt_t, dt_t * u[b, d, t])
                    if not last_only:
                        y[b, d, t] = _dot(h[(t + 1) % 2], Ct[b, g, t]) + D[d] * u[b, d, t]
                h_last = h[n_steps % 2]
                if last_only:
                    t = n_steps - 1
                    y[b, d, 0] = _dot(h_last, Ct[b, g, t]) + D[d] * u[b, d, t] if n_steps > 0 else _ZERO
                else:
                    y[b, d, n_steps:] = _ZERO
                if store_last:
                    last_state[b, d, :] = h_last


@njit(parallel=True, fastmath=_LOOP_FLAGS, cache=True)
def _scan_bwd(u, dt, A, Bt, Ct, D, lengths, dy, dlast, du, ddt, y, dBt, dCt, dA_part, dD_part, heads,
              has_dlast, last_only, store_y):
    """Gradients through ``_scan_fwd`` given dy (the gradient of its y; (batch, dim, 1) with
    ``last_only``) and dlast (of the last state, when ``has_dlast``). Writes du and ddt (gradient of
    the effective delta), and y again when ``store_y`` (the host's SiLU(z) gradient needs it). dBt, dCt
    (batch, G, L, N) and the per-part sums dA_part (PARTS, dim, N) and dD_part (PARTS, dim) must be zero
    on entry."""
    batch, dim, length = u.shape
    dstate = A.shape[1]
    n_parts = min(batch, PARTS)
    for part in prange(n_parts):
        hs = np.empty((length + 1, dstate), dtype=np.float32)  # hs[t + 1] = state after step t
        decays = np.empty((length, dstate), dtype=np.float32)
        carry = np.empty(dstate, dtype=np.float32)  # exp(delta_{t+1} A) dh_{t+1}
        for b in range(part * batch // n_parts, (part + 1) * batch // n_parts):
            n_steps = lengths[b]
            for d in range(dim):
                g = d // heads
                a_row = A[d]
                hs[0, :] = _ZERO
                for t in range(n_steps):
                    dt_t = dt[b, d, t]
                    _advance(hs[t], hs[t + 1], decays[t], a_row, Bt[b, g, t], dt_t, dt_t * u[b, d, t])
                if has_dlast:
                    carry[:] = dlast[b, d]
                else:
                    carry[:] = _ZERO
                for t in range(n_steps - 1, -1, -1):
                    is_last = t == n_steps - 1
                    if last_only:
                        dy_t = dy[b, d, 0] if is_last else _ZERO
                    else:
                        dy_t = dy[b, d, t]
                    if store_y and (is_last or not last_only):
                        y[b, d, 0 if last_only else t] = _dot(hs[t + 1], Ct[b, g, t]) + D[d] * u[b, d, t]
                    dt_t, u_t = dt[b, d, t], u[b, d, t]
                    dtu = dt_t * u_t
                    b_row, c_row, dB_row, dC_row = Bt[b, g, t], Ct[b, g, t], dBt[b, g, t], dCt[b, g, t]
                    h_prev, h_t, decay, dA_row = hs[t], hs[t + 1], decays[t], dA_part[part, d]
                    dh_B = _ZERO
                    dq_A = _ZERO
                    for k in range(dstate):
                        dh = carry[k] + c_row[k] * dy_t
                        dC_row[k] += dy_t * h_t[k]
                        dB_row[k] += dtu * dh
                        dh_B += dh * b_row[k]
                        # The part of dh that flowed through the decay exp(dt A) h_{t-1}.
                        q = dh * decay[k] * h_prev[k]
                        dA_row[k] += q * dt_t
                        dq_A += q * a_row[k]
                        carry[k] = dh * decay[k]
                    ddt[b, d, t] = dq_A + dh_B * u_t
                    du[b, d, t] = dh_B * dt_t + dy_t * D[d]
                    dD_part[part, d] += dy_t * u_t
                du[b, d, n_steps:] = _ZERO
                ddt[b, d, n_steps:] = _ZERO
                if store_y:
                    if last_only:
                        if n_steps == 0:
                            y[b, d, 0] = _ZERO
                    else:
                        y[b, d, n_steps:] = _ZERO


# ----------------------------------------------------------------------------- host side
def _set_threads() -> None:
    """Use the threads torch uses (its thread setting is the package's one knob), within numba's pool."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def _array(t: torch.Tensor | None, *, ndim: int = 1) -> np.ndarray:
    """A contiguous fp32 numpy view or copy of ``t``; an empty array of rank ``ndim`` for None."""
    if t is None:
        return np.zeros((0,) * ndim, dtype=np.float32)
    return t.detach().to(torch.float32).contiguous().numpy()


def _time_minor(t: torch.Tensor) -> np.ndarray:
    """B or C as a contiguous fp32 (batch, G, L, N) array: one step's N values are adjacent."""
    grouped = t if t.dim() == 4 else t.unsqueeze(1)
    return _array(grouped.transpose(2, 3))


def _kernel_inputs(u, delta, A, B, C, D, delta_bias, lengths, delta_softplus):
    """The arrays both kernels take: u, the effective delta, A, Bt, Ct, D (zeros when absent), lengths;
    and the channels per B/C group."""
    batch, dim, length = u.shape
    heads = dim // (1 if B.dim() == 3 else B.shape[1])
    # softplus and the bias are elementwise: torch's vectorised ops, not a scalar call per step.
    dt = effective_delta(delta.detach(), None if delta_bias is None else delta_bias.detach(), delta_softplus)
    if lengths is None:
        lens = np.full(batch, length, dtype=np.int64)
    else:
        lens = lengths.detach().to(torch.int64).contiguous().numpy()
    D_arr = np.zeros(dim, dtype=np.float32) if D is None else _array(D)
    return (_array(u), _array(dt), _array(A), _time_minor(B), _time_minor(C), D_arr, lens), heads


def _gate_input(z: torch.Tensor, lengths: torch.Tensor | None, last_only: bool) -> torch.Tensor:
    """z in fp32 where the output is read: (batch, dim, L), or (batch, dim, 1) at the last steps."""
    z = z.detach().float()
    if not last_only:
        return z
    batch, dim, length = z.shape
    idx = last_positions(lengths, batch, length, z.device)
    return z.gather(2, idx[:, None, None].expand(batch, dim, 1))


def selective_scan_cpu_fwd(u, delta, A, B, C, D, z, delta_bias, lengths, delta_softplus, return_last_state,
                           last_only):
    """(out, last_state or an empty tensor): out (batch, dim, L), or (batch, dim) with ``last_only``,
    in ``u``'s dtype; last_state (batch, dim, N) fp32."""
    batch, dim, length = u.shape
    args, heads = _kernel_inputs(u, delta, A, B, C, D, delta_bias, lengths, delta_softplus)
    y = np.empty((batch, dim, 1 if last_only else length), dtype=np.float32)
    last_state = np.empty((batch, dim, A.shape[1]) if return_last_state else (0, 0, 0), dtype=np.float32)
    _set_threads()
    _scan_fwd(*args, y, last_state, heads, bool(last_only), bool(return_last_state))
    out = torch.from_numpy(y)
    if z is not None:
        out.mul_(F.silu(_gate_input(z, lengths, last_only)))
    last_t = torch.from_numpy(last_state) if return_last_state else u.new_empty(0, dtype=torch.float32)
    return (out.view(batch, dim) if last_only else out).to(u.dtype), last_t


def selective_scan_cpu_bwd(dout, dlast_state, u, delta, A, B, C, D, z, delta_bias, lengths, delta_softplus,
                           last_only):
    """Gradients ``(du, ddelta, dA, dB, dC, dD, dz, ddelta_bias)`` in the dtypes of the matching
    inputs, None for inputs that were None. ``dout`` is (batch, dim) with ``last_only``."""
    batch, dim, length = u.shape
    dstate = A.shape[1]
    args, heads = _kernel_inputs(u, delta, A, B, C, D, delta_bias, lengths, delta_softplus)
    dout = dout.detach().float().reshape(batch, dim, 1 if last_only else length)
    if z is not None:
        z_read = _gate_input(z, lengths, last_only)
        sig = torch.sigmoid(z_read)
        dy = dout * z_read * sig
    else:
        dy = dout
    du, ddt = (np.empty((batch, dim, length), dtype=np.float32) for _ in range(2))
    y = np.empty(dy.shape if z is not None else (0, 0, 0), dtype=np.float32)
    dBt, dCt = np.zeros_like(args[3]), np.zeros_like(args[4])
    n_parts = min(batch, PARTS)
    dA_part = np.zeros((n_parts, dim, dstate), dtype=np.float32)
    dD_part = np.zeros((n_parts, dim), dtype=np.float32)
    _set_threads()
    _scan_bwd(*args, _array(dy), _array(dlast_state, ndim=3), du, ddt, y, dBt, dCt, dA_part, dD_part, heads,
              dlast_state is not None, bool(last_only), z is not None)

    ddelta = torch.from_numpy(ddt)
    if delta_softplus:
        pre = delta.detach().float() + (0.0 if delta_bias is None else delta_bias.detach().float()[:, None])
        ddelta.mul_(torch.sigmoid(pre))
    dz = None
    if z is not None:
        dz_read = dout * torch.from_numpy(y) * sig * (1 + z_read * (1 - sig))
        if last_only:
            idx = last_positions(lengths, batch, length, u.device)
            dz_read = torch.zeros(batch, dim, length).scatter_(2, idx[:, None, None].expand(batch, dim, 1),
                                                               dz_read)
        dz = dz_read.to(z.dtype)

    def like(a: np.ndarray | torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(a).to(t.dtype)

    def like_bc(a: np.ndarray, t: torch.Tensor) -> torch.Tensor:  # (batch, G, L, N) -> B/C's layout
        return torch.from_numpy(a).transpose(2, 3).reshape(t.shape).to(t.dtype)

    return (
        like(du, u), like(ddelta, delta), like(dA_part.sum(0), A), like_bc(dBt, B), like_bc(dCt, C),
        None if D is None else like(dD_part.sum(0), D),
        dz,
        None if delta_bias is None else like(ddelta.sum((0, 2)), delta_bias),
    )
