"""DCN-V2 (Wang et al., 2021) on the static fields only (user, item, category; no history).

Cross layers over ``x0 = [e_user; e_item; e_category]`` (width 3D):

- ``cross="matrix"``: ``x_{l+1} = x0 * (W_l x_l + b_l) + x_l`` with a full d x d matrix;
- ``cross="mixture"``: a mixture of low-rank experts,
  ``x_{l+1} = sum_i G_i(x_l) * x0 * (U_i tanh(C_i tanh(V_i^T x_l)) + b_i) + x_l``, G = softmax gating.

``structure="parallel"`` runs a deep MLP beside the cross stack and concatenates both outputs;
``"stacked"`` feeds the cross output into the MLP. A linear layer gives the logit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mdaf.models.base import CTRModel
from mdaf.models.config import ModelConfig, check_choice, check_sizes
from mdaf.models.inputs import Embeddings
from mdaf.models.layers import MLP
from mdaf.schema import DatasetMeta


@dataclass(frozen=True)
class DCNv2Config(ModelConfig):
    embed_dim: int = 64
    dropout: float = 0.15
    cross: str = "matrix"
    num_cross_layers: int = 3
    low_rank: int = 32
    num_experts: int = 4
    structure: str = "parallel"
    dnn_hidden: tuple[int, ...] = (256, 128)

    def validate(self) -> None:
        super().validate()
        check_choice("cross", self.cross, ("matrix", "mixture"))
        check_choice("structure", self.structure, ("parallel", "stacked"))
        check_sizes("dnn_hidden", self.dnn_hidden)


def _uniform_(t: torch.Tensor, fan_in: int) -> torch.Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return nn.init.uniform_(t, -bound, bound)


class MatrixCross(nn.Module):
    def __init__(self, width: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(num_layers))

    def forward(self, x0):
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class MixtureCross(nn.Module):
    """Low-rank mixture-of-experts cross layers; experts are batched along a leading K axis."""

    def __init__(self, width: int, num_layers: int, rank: int, num_experts: int):
        super().__init__()
        shape = (num_layers, num_experts)
        self.v = nn.Parameter(_uniform_(torch.empty(*shape, width, rank), width))
        self.c = nn.Parameter(_uniform_(torch.empty(*shape, rank, rank), rank))
        self.u = nn.Parameter(_uniform_(torch.empty(*shape, rank, width), rank))
        self.bias = nn.Parameter(torch.zeros(num_layers, width))
        self.gates = nn.ModuleList(nn.Linear(width, num_experts, bias=False) for _ in range(num_layers))

    def forward(self, x0):
        x = x0
        for layer, gate in enumerate(self.gates):
            low = torch.tanh(torch.einsum("bd,kdr->bkr", x, self.v[layer]))  # [B, K, r]
            low = torch.tanh(torch.einsum("bkr,krs->bks", low, self.c[layer]))  # [B, K, r]
            experts = x0.unsqueeze(1) * (torch.einsum("bkr,krd->bkd", low, self.u[layer]) + self.bias[layer])
            weights = torch.softmax(gate(x), dim=-1).unsqueeze(-1)  # [B, K, 1]
            x = (weights * experts).sum(dim=1) + x
        return x


class DCNv2(CTRModel):
    config_class = DCNv2Config
    param_groups = {
        "embeddings": ("embeddings",),
        "static": ("cross", "dnn"),
        "head": ("head",),
    }

    def __init__(self, meta: DatasetMeta, config: DCNv2Config | None = None):
        super().__init__(meta, config)
        config = self.config
        width = 3 * config.embed_dim
        self.embeddings = Embeddings(meta, config.embed_dim)
        if config.cross == "matrix":
            self.cross = MatrixCross(width, config.num_cross_layers)
        else:
            self.cross = MixtureCross(width, config.num_cross_layers, config.low_rank, config.num_experts)
        self.dnn = MLP(width, config.dnn_hidden, dropout=config.dropout)
        head_in = self.dnn.out_dim + width if config.structure == "parallel" else self.dnn.out_dim
        self.head = nn.Linear(head_in, 1)

    def forward(self, user, item, category, hist_items, hist_cats, hist_len, *, return_gate: bool = False):
        self.check_inputs(user, item, category, hist_items, hist_cats, hist_len)
        x0 = self.embeddings.fields(user, item, category).flatten(1)  # [B, 3D]
        if self.config.structure == "parallel":
            h = torch.cat([self.cross(x0), self.dnn(x0)], dim=1)
        else:
            h = self.dnn(self.cross(x0))
        logits = self.head(h).squeeze(-1).float()
        return (logits, None) if return_gate else logits
