"""MDAF (Mamba-DCN with Adaptive Fusion) and its ablations, as configuration of one class.

Architecture at the defaults (the paper's configuration, D = 64):

- embeddings: user, item, category tables of width D; the item and category tables are shared by
  the target and the history (a history element is item + category embedding);
- static branch: ``[e_user; e_item; e_category]`` (width 3D) -> Dropout(0.15) -> LayerNorm ->
  ``mdaf_kernels.nn.StaticBranch`` (2 LCN + 2 ECN over the same input, LayerNorm of both outputs,
  Linear to D) -> ``h_static``;
- sequential branch: Mamba4Rec over the right-padded history: Dropout(0.15) -> LayerNorm -> one
  Mamba block (expand 2, state 32, conv 4) with residual, dropout and LayerNorm -> position-wise
  feed-forward (D -> 4D -> D, GELU) -> state at the last valid position -> ``h_seq``
  (zeros for an empty history);
- gate: ``g = sigmoid(w2^T ReLU(W1 [h_static; h_seq] + b1) + b2)``; ``h = (1 - g) h_static + g h_seq``,
  so g -> 1 selects the sequential branch;
- head: D -> D (ReLU) -> 1 logit.

Ablations (fields of ``MDAFConfig``): ``fusion`` in gate | concat | fixed | attention | none,
``static_branch`` in cross | mlp | none, ``seq_branch`` in mamba | none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from mdaf.models.base import CTRModel
from mdaf.models.config import ModelConfig, check_choice, check_sizes
from mdaf.models.inputs import Embeddings, append_target
from mdaf.models.layers import MLP, SequenceEncoder
from mdaf.schema import DatasetMeta
from mdaf_kernels.nn import StaticBranch

STATIC_BRANCHES = ("cross", "mlp", "none")
SEQ_BRANCHES = ("mamba", "none")
FUSIONS = ("gate", "concat", "fixed", "attention", "none")
CROSS_FORMULAS = ("mdaf", "dcnv3")


@dataclass(frozen=True)
class MDAFConfig(ModelConfig):
    """MDAF hyper-parameters; the defaults are the paper's configuration.

    ``seq_target=True`` (not the paper's MDAF) writes the target item after the history, as the
    Mamba4Rec baseline does, and takes ``h_seq`` at the target: the sequential branch then sees
    the candidate, which the paper's branch (and so ``mdaf-seq-only``) does not.
    ``allow_tf32`` lets the cross network's fp32 matmuls use TF32 on GPUs that have it (faster,
    about 1e-3 relative error); set it False for exact fp32 comparisons.
    """

    embed_dim: int = 64
    dropout: float = 0.15
    static_branch: str = "cross"
    cross_formula: str = "mdaf"
    num_lcn: int = 2
    num_ecn: int = 2
    allow_tf32: bool = True
    static_mlp_hidden: tuple[int, ...] = (256, 128)
    seq_branch: str = "mamba"
    seq_target: bool = False
    num_mamba_layers: int = 1
    d_state: int = 32
    d_conv: int = 4
    expand: int = 2
    ffn_mult: int = 4
    fusion: str = "gate"
    fixed_gate: float = 0.5

    def validate(self) -> None:
        super().validate()
        check_choice("static_branch", self.static_branch, STATIC_BRANCHES)
        check_choice("seq_branch", self.seq_branch, SEQ_BRANCHES)
        check_choice("fusion", self.fusion, FUSIONS)
        check_choice("cross_formula", self.cross_formula, CROSS_FORMULAS)
        check_sizes("static_mlp_hidden", self.static_mlp_hidden)
        bad_counts = self.num_lcn < 0 or self.num_ecn < 0 or self.num_lcn + self.num_ecn < 1
        if self.static_branch == "cross" and bad_counts:
            raise ValueError(f"num_lcn, num_ecn: expected non-negative counts with at least one layer, got "
                             f"{self.num_lcn}, {self.num_ecn}")
        if not 0.0 <= self.fixed_gate <= 1.0:
            raise ValueError(f"fixed_gate: expected a weight in [0, 1], got {self.fixed_gate}")
        branches = (self.static_branch != "none") + (self.seq_branch != "none")
        if branches == 0:
            raise ValueError("static_branch and seq_branch are both 'none': the model would read nothing")
        if branches == 1 and self.fusion != "none":
            raise ValueError(f"fusion={self.fusion!r} needs both branches; with static_branch="
                             f"{self.static_branch!r} and seq_branch={self.seq_branch!r} set fusion='none'")
        if branches == 2 and self.fusion == "none":
            raise ValueError(
                f"fusion='none' needs a single branch; with both branches pick one of {FUSIONS[:-1]}"
            )


class Representations(NamedTuple):
    """What the head reads (``h``) and where it came from; absent parts are None."""

    h: torch.Tensor
    h_static: torch.Tensor | None
    h_seq: torch.Tensor | None
    gate: torch.Tensor | None


class GateFusion(nn.Module):
    """``g = sigmoid(w2^T ReLU(W1 [h_static; h_seq] + b1) + b2)``, ``h = (1 - g) h_static + g h_seq``."""

    def __init__(self, dim: int):
        super().__init__()
        self.hidden = nn.Linear(2 * dim, dim)
        self.out = nn.Linear(dim, 1)
        self.out_dim = dim

    def forward(self, h_static, h_seq):
        g = torch.sigmoid(self.out(torch.relu(self.hidden(torch.cat([h_static, h_seq], dim=-1)))))
        return (1 - g) * h_static + g * h_seq, g.squeeze(-1)


class FixedFusion(nn.Module):
    """A constant weight on the sequential branch: ``h = (1 - w) h_static + w h_seq``."""

    def __init__(self, dim: int, weight: float):
        super().__init__()
        self.weight = weight
        self.out_dim = dim

    def forward(self, h_static, h_seq):
        g = h_seq.new_full((h_seq.shape[0],), self.weight)
        return (1 - self.weight) * h_static + self.weight * h_seq, g


class ConcatFusion(nn.Module):
    """No weighting: the head reads ``[h_static; h_seq]`` (width 2D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = 2 * dim

    def forward(self, h_static, h_seq):
        return torch.cat([h_static, h_seq], dim=-1), None


class AttentionFusion(nn.Module):
    """The sequence attends to the static representation: scaled dot-product attention whose query
    is projected from ``h_seq`` and whose keys are projected from ``h_static`` and ``h_seq``.

    The values are the representations themselves, so ``h = a_static h_static + a_seq h_seq`` with
    softmax weights; the reported gate is ``a_seq`` (comparable with the MLP gate's ``g``).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.out_dim = dim
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, h_static, h_seq):
        q = self.query(h_seq)  # [B, D]
        keys = self.key(torch.stack([h_static, h_seq], dim=1))  # [B, 2, D]
        weights = torch.softmax(torch.einsum("bd,bkd->bk", q, keys) * self.scale, dim=-1)  # [B, 2]
        a_static, a_seq = weights[:, :1], weights[:, 1:]
        return a_static * h_static + a_seq * h_seq, a_seq.squeeze(-1)


class SingleBranch(nn.Module):
    """Only one branch is built: it is the representation, there is nothing to weigh."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = dim

    def forward(self, h_static, h_seq):
        return (h_seq if h_static is None else h_static), None


def _fusion(config: MDAFConfig) -> nn.Module:
    dim = config.embed_dim
    if config.fusion == "gate":
        return GateFusion(dim)
    if config.fusion == "fixed":
        return FixedFusion(dim, config.fixed_gate)
    if config.fusion == "concat":
        return ConcatFusion(dim)
    if config.fusion == "attention":
        return AttentionFusion(dim)
    return SingleBranch(dim)


class MDAF(CTRModel):
    """MDAF and its ablations. ``forward`` returns logits (B,), or ``(logits, gate)``."""

    config_class = MDAFConfig
    param_groups = {
        "embeddings": ("embeddings",),
        "static": ("static_input", "static"),
        "sequential": ("sequence",),
        "gate": ("fusion",),
        "head": ("head",),
    }

    def __init__(self, meta: DatasetMeta, config: MDAFConfig | None = None):
        super().__init__(meta, config)
        config = self.config
        dim = config.embed_dim
        has_static = config.static_branch != "none"
        self.embeddings = Embeddings(meta, dim, use_user=has_static)

        self.static_input = (
            nn.Sequential(nn.Dropout(config.dropout), nn.LayerNorm(3 * dim)) if has_static else None
        )
        if config.static_branch == "cross":
            self.static = StaticBranch(3 * dim, dim, num_lcn=config.num_lcn, num_ecn=config.num_ecn,
                                       formula=config.cross_formula, allow_tf32=config.allow_tf32)
        elif config.static_branch == "mlp":
            self.static = MLP(3 * dim, config.static_mlp_hidden, dim, dropout=config.dropout)
        else:
            self.static = None

        self.sequence = SequenceEncoder(
            dim, num_layers=config.num_mamba_layers, d_state=config.d_state, d_conv=config.d_conv,
            expand=config.expand, ffn_mult=config.ffn_mult, dropout=config.dropout,
        ) if config.seq_branch != "none" else None

        self.fusion = _fusion(config)
        self.head = MLP(self.fusion.out_dim, (dim,), 1)

    def encode(self, user, item, category, hist_items, hist_cats, hist_len) -> Representations:
        """Check the inputs and compute the branch representations and their fusion."""
        self.check_inputs(user, item, category, hist_items, hist_cats, hist_len)
        h_static = h_seq = None
        if self.static is not None:
            fields = self.embeddings.fields(user, item, category).flatten(1)  # [B, 3D]
            h_static = self.static(self.static_input(fields))
        if self.sequence is not None:
            seq = self.embeddings.history(hist_items, hist_cats)  # [B, L, D]
            last = hist_len
            if self.config.seq_target:
                seq = append_target(seq, self.embeddings.target(item, category), hist_len)  # [B, L+1, D]
                last = hist_len + 1
            h_seq = self.sequence.last_states(seq, last)
        h, gate = self.fusion(h_static, h_seq)
        return Representations(h, h_static, h_seq, gate)

    def forward(self, user, item, category, hist_items, hist_cats, hist_len, *, return_gate: bool = False):
        rep = self.encode(user, item, category, hist_items, hist_cats, hist_len)
        logits = self.head(rep.h).squeeze(-1).float()
        return (logits, rep.gate) if return_gate else logits
