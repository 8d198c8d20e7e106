"""Plain-PyTorch Mamba-1 selective scan: the float64 test oracle and the memory-lean CPU path.

Semantics and layouts are mamba_ssm's ``selective_scan_fn``:

- ``u``, ``delta``, ``z``: (batch, dim, L); ``A``: (dim, N) real; ``D``, ``delta_bias``: (dim,)
- ``B``, ``C``: (batch, N, L), or grouped (batch, G, N, L) where channel ``d`` reads group
  ``d // (dim // G)``
- ``delta <- softplus(delta + delta_bias)`` (bias first, then softplus when ``delta_softplus``)
- ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t``, ``y_t = C_t . h_t + D u_t``, ``y *= silu(z)``
- ``lengths`` (batch,): step ``t >= lengths[b]`` of row ``b`` is padding: it leaves the state as it
  was (an effective delta of 0) and its output is 0
- ``last_only``: the output is (batch, dim), ``y`` at position ``lengths[b] - 1`` (``L - 1`` without
  lengths), 0 for an empty row

Two implementations live here:

``selective_scan_ref``
    The oracle: a direct loop with ordinary autograd (it keeps every state for backward, so use it
    on test-sized inputs). It computes in ``float32`` or wider (``float64`` stays ``float64``).

``selective_scan_chunked_fwd`` / ``selective_scan_chunked_bwd``
    The CPU path behind ``mdaf_kernels.selective_scan_fn``. The forward keeps only the running state
    and returns the state at every ``CHUNK``-step boundary (the same checkpoints the Triton forward
    writes). The backward recomputes states from those checkpoints, ``SUBCHUNK`` steps at a time,
    and runs the adjoint recurrence ``dh_t = exp(delta_{t+1} A) dh_{t+1} + C_t dy_t`` backwards in
    time, so memory stays at a few copies of the (batch, dim, N) state whatever L is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Steps between the state checkpoints the forward returns (shared with the Triton kernels).
CHUNK = 32
# Steps whose states the CPU backward recomputes and holds at once.
SUBCHUNK = 8


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _grouped(t: torch.Tensor) -> torch.Tensor:
    """B or C as (batch, G, N, L): the ungrouped (batch, N, L) layout is one group."""
    return t.unsqueeze(1) if t.dim() == 3 else t


def effective_delta(delta: torch.Tensor, delta_bias: torch.Tensor | None,
                    delta_softplus: bool) -> torch.Tensor:
    """``softplus(delta + delta_bias)`` (each part optional) in the compute dtype."""
    dt = delta.to(_compute_dtype(delta.dtype))
    if delta_bias is not None:
        dt = dt + delta_bias.to(dt.dtype)[:, None]
    return F.softplus(dt) if delta_softplus else dt


def selective_scan_ref(
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
    """The selective scan as a direct loop over time, differentiable by ordinary autograd.

    Returns ``out`` (batch, dim, L), or (batch, dim) with ``last_only``, in ``u``'s dtype, or
    ``(out, last_state)`` with ``last_state`` (batch, dim, N) in the compute dtype when
    ``return_last_state``.
    """
    dtype_in = u.dtype
    cdt = _compute_dtype(u.dtype)
    batch, dim, length = u.shape
    n_state = A.shape[1]
    Bg, Cg = _grouped(B).to(cdt), _grouped(C).to(cdt)
    groups = Bg.shape[1]
    u_c = u.to(cdt)
    dt = effective_delta(delta, delta_bias, delta_softplus).to(cdt)
    valid = _valid_steps(lengths, batch, length, u.device)  # [b, L] or None
    if valid is not None:
        dt = torch.where(valid[:, None, :], dt, 0.0)
    A_g = A.to(cdt).view(groups, dim // groups, n_state)  # [G, H, N]
    u_g = u_c.view(batch, groups, dim // groups, length)
    dt_g = dt.view(batch, groups, dim // groups, length)
    h = u_c.new_zeros(batch, groups, dim // groups, n_state)
    ys = []
    for t in range(length):
        decay = torch.exp(dt_g[..., t, None] * A_g)
        h = decay * h + (dt_g[..., t] * u_g[..., t])[..., None] * Bg[:, :, None, :, t]
        ys.append((h * Cg[:, :, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1).reshape(batch, dim, length)
    if D is not None:
        y = y + u_c * D.to(cdt)[:, None]
    if z is not None:
        y = y * F.silu(z.to(cdt))
    if valid is not None:
        y = y * valid[:, None, :]
    if last_only:
        y = gather_last(y, lengths)
    out = y.to(dtype_in)
    if return_last_state:
        return out, h.reshape(batch, dim, n_state)
    return out


def _valid_steps(lengths: torch.Tensor | None, batch: int, length: int,
                 device: torch.device) -> torch.Tensor | None:
    """[batch, L] bool, True where step t of row b is inside the row (None without lengths)."""
    if lengths is None:
        return None
    return torch.arange(length, device=device)[None, :] < lengths.to(device)[:, None]


def last_positions(lengths: torch.Tensor | None, batch: int, length: int,
                   device: torch.device) -> torch.Tensor:
    """Index of each row's last valid step (batch,) int64, clamped to 0 for empty rows."""
    if lengths is None:
        return torch.full((batch,), length - 1, dtype=torch.int64, device=device)
    return (lengths.to(device=device, dtype=torch.int64) - 1).clamp_(min=0)


def gather_last(y: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """(batch, dim, L) -> (batch, dim): position lengths[b] - 1 of each row, 0 where lengths[b] == 0."""
    batch, dim, length = y.shape
    idx = last_positions(lengths, batch, length, y.device)
    last = y.gather(2, idx[:, None, None].expand(batch, dim, 1)).squeeze(2)
    if lengths is None:
        return last
    return last * (lengths.to(y.device) > 0)[:, None]


def num_checkpoints(length: int) -> int:
    """States the forward saves for backward: one at the start of every chunk after the first."""
    return max(0, (length - 1) // CHUNK)


class _Layout:
    """The inputs rearranged time-major for per-step slicing: [L, batch, G, H(, N)] contiguous."""

    def __init__(self, u, delta, A, B, C, D, z, delta_bias, delta_softplus, lengths=None):
        cdt = _compute_dtype(u.dtype)
        self.cdt = cdt
        self.batch, self.dim, self.length = u.shape
        self.n_state = A.shape[1]
        Bg, Cg = _grouped(B), _grouped(C)
        self.groups = Bg.shape[1]
        self.heads = self.dim // self.groups
        gshape = (self.batch, self.groups, self.heads, self.length)
        self.delta_pre = delta.to(cdt)
        if delta_bias is not None:
            self.delta_pre = self.delta_pre + delta_bias.to(cdt)[:, None]
        dt = F.softplus(self.delta_pre) if delta_softplus else self.delta_pre
        valid = _valid_steps(lengths, self.batch, self.length, u.device)
        # [L, b, 1, 1]: padded steps get delta = 0, so they leave the state unchanged.
        self.valid = None if valid is None else valid.T[:, :, None, None]
        self.dt = dt.view(gshape).permute(3, 0, 1, 2).contiguous()  # [L, b, G, H]
        if self.valid is not None:
            self.dt.mul_(self.valid)
        self.u = u.to(cdt).view(gshape).permute(3, 0, 1, 2).contiguous()  # [L, b, G, H]
        self.B = Bg.to(cdt).permute(3, 0, 1, 2).contiguous()  # [L, b, G, N]
        self.C = Cg.to(cdt).permute(3, 0, 1, 2).contiguous()  # [L, b, G, N]
        self.A = A.to(cdt).view(self.groups, self.heads, self.n_state)  # [G, H, N]
        self.D = None if D is None else D.to(cdt).view(self.groups, self.heads)
        self.z = None if z is None else z.to(cdt).view(gshape).permute(3, 0, 1, 2).contiguous()

    def decay(self, t: int) -> torch.Tensor:
        """exp(dt_t A) as [b, G, H, N]."""
        return torch.exp(self.dt[t, ..., None] * self.A)

    def step(self, h: torch.Tensor, t: int, decay: torch.Tensor | None = None) -> torch.Tensor:
        """h_t from h_{t-1}: exp(dt A) h + dt u B (a fresh tensor)."""
        h = (self.decay(t) if decay is None else decay) * h
        return h.addcmul_((self.dt[t] * self.u[t])[..., None], self.B[t, :, :, None, :])

    def readout(self, h: torch.Tensor, t: int) -> torch.Tensor:
        """C_t . h_t as [b, G, H] (a batched matmul: no [b, G, H, N] temporary)."""
        return torch.matmul(h, self.C[t, :, :, :, None]).squeeze(-1)

    def finish(self, y: torch.Tensor, u: torch.Tensor, z: torch.Tensor | None,
               valid: torch.Tensor | None) -> torch.Tensor:
        """C . h -> y: the D skip, the SiLU(z) gate and zero outside the rows (in place)."""
        if self.D is not None:
            y.addcmul_(u, self.D)
        if z is not None:
            y.mul_(F.silu(z))
        if valid is not None:
            y.mul_(valid)
        return y


@torch.no_grad()
def selective_scan_chunked_fwd(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                               store_checkpoints=True, *, lengths=None, last_only=False):
    """Forward keeping only the running state.

    Returns ``(out, last_state, checkpoints)``: ``out`` (batch, dim, L), or (batch, dim) with
    ``last_only``, in ``u``'s dtype, ``last_state`` (batch, dim, N) and ``checkpoints``
    (batch, num_checkpoints(L), dim, N) in the compute dtype; checkpoint ``k`` is the state after step
    ``(k + 1) * CHUNK - 1`` (none when ``store_checkpoints`` is False).
    """
    lay = _Layout(u, delta, A, B, C, D, z, delta_bias, delta_softplus, lengths)
    h = lay.u.new_zeros(lay.batch, lay.groups, lay.heads, lay.n_state)
    y = None if last_only else lay.u.new_empty(lay.length, lay.batch, lay.groups, lay.heads)
    checkpoints = []
    for t in range(lay.length):
        if store_checkpoints and t > 0 and t % CHUNK == 0:
            checkpoints.append(h)
        h = lay.step(h, t)
        if y is not None:
            y[t] = lay.readout(h, t)
    if last_only:
        # Padded steps left the state unchanged, so the final state is the one at the last valid step.
        idx, rows = last_positions(lengths, lay.batch, lay.length, u.device), torch.arange(lay.batch)
        y_last = torch.matmul(h, lay.C[idx, rows, :, :, None]).squeeze(-1)  # [b, G, H]
        nonempty = None if lengths is None else (lengths > 0).to(lay.cdt)[:, None, None]
        y_last = lay.finish(y_last, lay.u[idx, rows], None if lay.z is None else lay.z[idx, rows], nonempty)
        out = y_last.reshape(lay.batch, lay.dim).to(u.dtype)
    else:
        lay.finish(y, lay.u, lay.z, lay.valid)
        out = y.permute(1, 2, 3, 0).reshape(lay.batch, lay.dim, lay.length).to(u.dtype).contiguous()
    last_state = h.reshape(lay.batch, lay.dim, lay.n_state)
    if checkpoints:
        ckpt = torch.stack(checkpoints, dim=1).reshape(lay.batch, len(checkpoints), lay.dim, lay.n_state)
    else:
        ckpt = h.new_empty(lay.batch, 0, lay.dim, lay.n_state)
    return out, last_state, ckpt


@torch.no_grad()
def selective_scan_chunked_bwd(dout, dlast_state, u, delta, A, B, C, D, z, delta_bias, checkpoints,
                               delta_softplus=False, *, lengths=None, last_only=False):
    """Gradients of ``selective_scan_chunked_fwd`` by recomputation from ``checkpoints``.

    ``dout`` is the gradient of ``out`` ((batch, dim) with ``last_only``); ``dlast_state``
    (batch, dim, N) or None is the gradient of the returned last state. Returns
    ``(du, ddelta, dA, dB, dC, dD, dz, ddelta_bias)`` in the dtypes of the matching inputs, None
    for inputs that were None.
    """
    lay = _Layout(u, delta, A, B, C, D, z, delta_bias, delta_softplus, lengths)
    b, G, H, N, L = lay.batch, lay.groups, lay.heads, lay.n_state, lay.length
    cdt = lay.cdt
    if last_only:
        # The last-position output is the full output read at one step: its gradient enters there.
        dout_t = lay.u.new_zeros(L, b, G, H)
        idx = last_positions(lengths, b, L, u.device)
        dout_t[idx, torch.arange(b)] = dout.to(cdt).view(b, G, H)
    else:
        dout_t = dout.to(cdt).view(b, G, H, L).permute(3, 0, 1, 2)  # [L, b, G, H]
    if lay.valid is not None:
        dout_t = dout_t * lay.valid  # padded outputs are constant 0
    dy = dout_t * F.silu(lay.z) if lay.z is not None else dout_t.contiguous()
    ckpt = checkpoints.to(cdt).view(b, -1, G, H, N)

    ddt = torch.empty_like(lay.dt)  # [L, b, G, H]
    du = torch.empty_like(lay.u)
    dz = None if lay.z is None else torch.empty_like(lay.z)
    dB = torch.empty_like(lay.B)  # [L, b, G, N]
    dC = torch.empty_like(lay.C)
    dA = torch.zeros_like(lay.A)  # [G, H, N]
    # carry = exp(dt_{t+1} A) dh_{t+1}: what step t+1 passes back to step t.
    if dlast_state is not None:
        carry = dlast_state.to(cdt).reshape(b, G, H, N).clone()
    else:
        carry = lay.u.new_zeros(b, G, H, N)

    for chunk in reversed(range(0, L, CHUNK)):
        h0 = ckpt[:, chunk // CHUNK - 1] if chunk > 0 else lay.u.new_zeros(b, G, H, N)
        chunk_end = min(chunk + CHUNK, L)
        # States at the start of every sub-chunk, then each sub-chunk recomputed in turn (reversed).
        starts = list(range(chunk, chunk_end, SUBCHUNK))
        sub_h0 = [h0]
        for s in starts[:-1]:
            h = sub_h0[-1]
            for t in range(s, s + SUBCHUNK):
                h = lay.step(h, t)
            sub_h0.append(h)
        for s, h_start in zip(reversed(starts), reversed(sub_h0), strict=True):
            s_end = min(s + SUBCHUNK, chunk_end)
            # The sub-chunk's states and decays, each computed once and used by the adjoint below.
            states, decays = [h_start], []
            for t in range(s, s_end):
                decays.append(lay.decay(t))
                states.append(lay.step(states[-1], t, decays[-1]))
            for t in reversed(range(s, s_end)):
                h_prev, h_t, decay = states[t - s], states[t - s + 1], decays[t - s]
                dy_t = dy[t]  # [b, G, H]
                if dz is not None:
                    y_t = lay.readout(h_t, t)
                    if lay.D is not None:
                        y_t = y_t + lay.D * lay.u[t]
                    sig = torch.sigmoid(lay.z[t])
                    dz[t] = dout_t[t] * y_t * sig * (1 + lay.z[t] * (1 - sig))
                dh = carry.addcmul_(dy_t[..., None], lay.C[t, :, :, None, :])  # [b, G, H, N]
                # dC_t = sum over the group's channels of dy h_t; dB_t likewise with dt u dh.
                dC[t] = torch.matmul(dy_t[:, :, None, :], h_t).squeeze(2)
                dtu = lay.dt[t] * lay.u[t]
                dB[t] = torch.matmul(dtu[:, :, None, :], dh).squeeze(2)
                dh_B = torch.matmul(dh, lay.B[t, :, :, :, None]).squeeze(-1)  # [b, G, H]
                # q = dh * exp(dt A) * h_{t-1}: the part of dh flowing through the decay.
                q = h_prev * decay
                q.mul_(dh)
                dA.add_(torch.einsum("bghn,bgh->ghn", q, lay.dt[t]))
                ddt[t] = torch.einsum("bghn,ghn->bgh", q, lay.A) + dh_B * lay.u[t]
                du[t] = dh_B * lay.dt[t]
                carry = dh.mul_(decay)
            del states, decays

    if lay.valid is not None:
        ddt.mul_(lay.valid)  # the padded steps' delta was replaced by the constant 0
    if lay.D is not None:
        du.addcmul_(dy, lay.D)
    dD = None if lay.D is None else torch.einsum("lbgh,lbgh->gh", dy, lay.u).reshape(-1)
    if delta_softplus:
        ddt.mul_(torch.sigmoid(lay.delta_pre.view(b, G, H, L).permute(3, 0, 1, 2)))
    ddelta_bias = None if delta_bias is None else ddt.sum(dim=(0, 1)).reshape(-1)

    def back(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:  # [L, b, G, H] -> (b, dim, L)
        return t.permute(1, 2, 3, 0).reshape(b, G * H, L).to(like.dtype).contiguous()

    def back_bc(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:  # [L, b, G, N] -> like B/C
        return t.permute(1, 2, 3, 0).reshape(like.shape).to(like.dtype).contiguous()

    return (
        back(du, u),
        back(ddt, delta),
        dA.reshape(A.shape).to(A.dtype),
        back_bc(dB, B),
        back_bc(dC, C),
        None if D is None else dD.to(D.dtype),
        None if z is None else back(dz, z),
        None if delta_bias is None else ddelta_bias.to(delta_bias.dtype),
    )
