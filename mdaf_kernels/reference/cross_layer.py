"""Plain-PyTorch DCN cross layers: the test oracle (run it in float64) and the CPU path.

Two formula families, each with a linear ("lcn") and an exponential ("ecn") kind. With ``x`` the
layer input (batch, width), ``x0`` the stack input and ``W``/``b`` the layer's weight and bias:

``formula="mdaf"`` (the MDAF paper; ``W`` is (width, width)):

- lcn: ``y = x + x0 * (x @ W.T + b)``
- ecn: ``y = x + x0 * relu(x @ W.T + b)``. The paper writes ``relu(W x)``; we keep an optional bias
  (zero-initialised by the modules, so the paper's form is the starting point) because it is
  harmless and common; pass ``bias=None`` for the paper's exact form.

``formula="dcnv3"`` (Li et al. 2024, DCNv3; ``W`` is (width // 2, width), no bias in the GEMM,
width must be even):

- ``c = x @ W.T``; ``mask(c) = c * relu(LayerNorm(c))`` (LayerNorm over the width // 2 features
  with learnable ``ln_weight``/``ln_bias``); ``h = [c || mask(c)] + b`` (``b`` has size width)
- lcn: ``y = x + x0 * h``;  ecn: ``y = x + x * h`` (the gate is the layer input; ``x0`` is unused)

Dropout, which DCNv3 applies after each layer, is not part of the op: add it around the op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KINDS = ("lcn", "ecn")
FORMULAS = ("mdaf", "dcnv3")
DEFAULT_EPS = 1e-5


def gates_with_x0(kind: str, formula: str) -> bool:
    """Whether the layer's gate is the stack input ``x0`` (else the layer input ``x``)."""
    return not (formula == "dcnv3" and kind == "ecn")


def projection_size(width: int, formula: str) -> int:
    """Output features of the layer's weight: ``width`` (mdaf) or ``width // 2`` (dcnv3)."""
    return width // 2 if formula == "dcnv3" else width


def cross_layer_ref(
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
) -> torch.Tensor:
    """One cross layer, computed in the dtype of its inputs (see the module docstring)."""
    if formula == "mdaf":
        h = F.linear(x, weight, bias)
        if kind == "ecn":
            h = torch.relu(h)
    else:
        c = F.linear(x, weight)
        mask = torch.relu(F.layer_norm(c, (c.shape[-1],), ln_weight, ln_bias, eps))
        h = torch.cat([c, c * mask], dim=-1)
        if bias is not None:
            h = h + bias
    gate = x0 if gates_with_x0(kind, formula) else x
    return x + gate * h


def cross_stack_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    kind: str = "lcn",
    formula: str = "mdaf",
    ln_weight: torch.Tensor | None = None,
    ln_bias: torch.Tensor | None = None,
    eps: float = DEFAULT_EPS,
    return_intermediates: bool = False,
):
    """A stack of ``weight.shape[0]`` cross layers over ``x`` (which is also ``x0``).

    ``weight`` is (layers, out_features, width), ``bias`` (layers, width), ``ln_weight`` and
    ``ln_bias`` (layers, width // 2). With ``return_intermediates`` also returns the inputs of
    layers 1..L-1 stacked as (layers - 1, batch, width).
    """
    out = x
    inputs = []
    for layer in range(weight.shape[0]):
        if layer > 0:
            inputs.append(out)
        out = cross_layer_ref(
            out,
            x,
            weight[layer],
            None if bias is None else bias[layer],
            kind=kind,
            formula=formula,
            ln_weight=None if ln_weight is None else ln_weight[layer],
            ln_bias=None if ln_bias is None else ln_bias[layer],
            eps=eps,
        )
    if not return_intermediates:
        return out
    saved = torch.stack(inputs) if inputs else x.new_empty((0, *x.shape))
    return out, saved


def static_branch_ref(
    x: torch.Tensor,
    lcn: dict | None,
    ecn: dict | None,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor | None,
    *,
    formula: str = "mdaf",
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """MDAF's static branch: ``Linear(LayerNorm([lcn_stack(x) || ecn_stack(x)]))``.

    ``lcn``/``ecn`` hold the stack parameters (``weight``, ``bias``, ``ln_weight``, ``ln_bias``) or
    are None for a stack with no layers, which is then left out of the concatenation.
    """
    parts = [
        cross_stack_ref(x, **params, kind=kind, formula=formula, eps=eps)
        for kind, params in (("lcn", lcn), ("ecn", ecn))
        if params is not None
    ]
    h = torch.cat(parts, dim=-1)
    h = F.layer_norm(h, (h.shape[-1],), norm_weight, norm_bias, eps)
    return F.linear(h, proj_weight, proj_bias)
