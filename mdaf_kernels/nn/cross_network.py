"""Cross networks over the fused cross-layer ops: ``CrossNetwork`` (one LCN or ECN stack) and MDAF's
``StaticBranch`` (an LCN and an ECN stack over the same input, LayerNorm, Linear).

Initialisation: each layer's weight is Xavier-uniform (fan_in = width, fan_out = width or width // 2),
cross-layer biases are zero (so MDAF's ECN starts as the paper's bias-free ``relu(W x)``), DCNv3's
LayerNorm starts as the identity affine (weight 1, bias 0); the static branch's LayerNorm is the
identity affine and its Linear is Xavier-uniform with a zero bias.
"""

from __future__ import annotations

import torch
from torch import nn

from mdaf_kernels.ops.cross_layer import cross_layer, cross_stack
from mdaf_kernels.reference.cross_layer import DEFAULT_EPS, FORMULAS, KINDS, projection_size


class CrossNetwork(nn.Module):
    """``num_layers`` DCN cross layers of one kind over x (batch, width) -> (batch, width).

    ``kind``: "lcn" or "ecn"; ``formula``: "mdaf" (paper: W is width x width) or "dcnv3" (W is
    width // 2 x width with the LayerNorm self-mask; width must be even); see
    ``mdaf_kernels.reference.cross_layer`` for the formulas. ``fused=True`` runs the whole stack in
    one launch (``cross_stack``); ``fused=False`` runs ``cross_layer`` once per layer. Parameters are
    stacked over the layers: ``weight`` (layers, out_features, width), ``bias`` (layers, width) and,
    for dcnv3, ``ln_weight``/``ln_bias`` (layers, width // 2). ``allow_tf32`` is passed to the ops.
    """

    def __init__(self, width: int, num_layers: int, kind: str = "lcn", formula: str = "mdaf",
                 fused: bool = True, device=None, dtype=None, *, eps: float = DEFAULT_EPS,
                 allow_tf32: bool = True):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
        if formula not in FORMULAS:
            raise ValueError(f"formula: expected one of {FORMULAS}, got {formula!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width: expected a positive int, got {width!r}")
        if formula == "dcnv3" and width % 2:
            raise ValueError(f"width: formula='dcnv3' needs an even width, got {width}")
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers: expected a positive int, got {num_layers!r}")
        factory = {"device": device, "dtype": dtype}
        self.width, self.num_layers, self.kind, self.formula = width, num_layers, kind, formula
        self.fused, self.eps, self.allow_tf32 = fused, eps, allow_tf32
        n_feat = projection_size(width, formula)
        self.weight = nn.Parameter(torch.empty(num_layers, n_feat, width, **factory))
        self.bias = nn.Parameter(torch.empty(num_layers, width, **factory))
        if formula == "dcnv3":
            self.ln_weight = nn.Parameter(torch.empty(num_layers, n_feat, **factory))
            self.ln_bias = nn.Parameter(torch.empty(num_layers, n_feat, **factory))
        else:
            self.register_parameter("ln_weight", None)
            self.register_parameter("ln_bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for layer in range(self.num_layers):
                nn.init.xavier_uniform_(self.weight[layer])
            nn.init.zeros_(self.bias)
            if self.ln_weight is not None:
                nn.init.ones_(self.ln_weight)
                nn.init.zeros_(self.ln_bias)

    def _layer_param(self, t: torch.Tensor | None, layer: int) -> torch.Tensor | None:
        return None if t is None else t[layer]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        config = {"kind": self.kind, "formula": self.formula, "eps": self.eps, "allow_tf32": self.allow_tf32}
        if self.fused:
            return cross_stack(x, self.weight, self.bias, ln_weight=self.ln_weight, ln_bias=self.ln_bias,
                               **config)
        out = x
        for layer in range(self.num_layers):
            out = cross_layer(out, x, self.weight[layer], self.bias[layer],
                              ln_weight=self._layer_param(self.ln_weight, layer),
                              ln_bias=self._layer_param(self.ln_bias, layer), **config)
        return out

    def extra_repr(self) -> str:
        return (f"width={self.width}, num_layers={self.num_layers}, kind={self.kind!r}, "
                f"formula={self.formula!r}, fused={self.fused}")


class StaticBranch(nn.Module):
    """MDAF's static branch: x (batch, width), the concatenated field embeddings, ->
    ``Linear(LayerNorm([lcn_stack(x) || ecn_stack(x)]))`` (batch, out_dim).

    Both stacks read the same input. A stack with zero layers (``num_lcn=0`` or ``num_ecn=0``, for
    ablations) is left out of the concatenation, so the LayerNorm and Linear then see ``width``
    features instead of ``2 * width``; at least one stack must have layers.
    """

    def __init__(self, width: int, out_dim: int, num_lcn: int = 2, num_ecn: int = 2, formula: str = "mdaf",
                 device=None, dtype=None, *, fused: bool = True, allow_tf32: bool = True):
        super().__init__()
        for name, value in (("num_lcn", num_lcn), ("num_ecn", num_ecn)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected a non-negative int, got {value!r}")
        if num_lcn == 0 and num_ecn == 0:
            raise ValueError("num_lcn, num_ecn: at least one of the two stacks needs layers, got 0 and 0")
        if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
            raise ValueError(f"out_dim: expected a positive int, got {out_dim!r}")
        factory = {"device": device, "dtype": dtype}
        common = {"formula": formula, "fused": fused, "allow_tf32": allow_tf32, **factory}
        self.width, self.out_dim = width, out_dim
        self.lcn = CrossNetwork(width, num_lcn, "lcn", **common) if num_lcn else None
        self.ecn = CrossNetwork(width, num_ecn, "ecn", **common) if num_ecn else None
        features = width * ((num_lcn > 0) + (num_ecn > 0))
        self.norm = nn.LayerNorm(features, **factory)
        self.proj = nn.Linear(features, out_dim, **factory)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [stack(x) for stack in (self.lcn, self.ecn) if stack is not None]
        return self.proj(self.norm(torch.cat(parts, dim=-1)))
