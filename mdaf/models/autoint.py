"""AutoInt (Song et al., 2019): multi-head self-attention over the field embeddings.

Fields: user, target item, target category and the history (mean of the item + category
embeddings over its valid positions; zeros when empty), each D wide. Each interacting layer is
multi-head self-attention across fields with a projected residual and ReLU; the final field
vectors are flattened into a linear logit (plus an optional MLP beside it: AutoInt+).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mdaf.models.base import CTRModel
from mdaf.models.config import ModelConfig, check_sizes
from mdaf.models.inputs import Embeddings, valid_mask
from mdaf.models.layers import MLP
from mdaf.schema import DatasetMeta

NUM_FIELDS = 4


@dataclass(frozen=True)
class AutoIntConfig(ModelConfig):
    embed_dim: int = 64
    dropout: float = 0.15
    num_attention_layers: int = 3
    num_heads: int = 2
    attention_dim: int = 64
    dnn_hidden: tuple[int, ...] = ()

    def validate(self) -> None:
        super().validate()
        check_sizes("dnn_hidden", self.dnn_hidden)
        if self.attention_dim % self.num_heads:
            raise ValueError(
                f"num_heads: must divide attention_dim={self.attention_dim}, got {self.num_heads}"
            )


class InteractingLayer(nn.Module):
    """``ReLU(MHSA(x) + W_res x)`` across fields."""

    def __init__(self, in_dim: int, attention_dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(in_dim, 3 * attention_dim, bias=False)
        self.residual = nn.Linear(in_dim, attention_dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        batch, fields, _ = x.shape
        qkv = self.qkv(x).view(batch, fields, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # [B, H, F, d] each
        weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        attended = (self.dropout(weights) @ v).transpose(1, 2).reshape(batch, fields, -1)
        return torch.relu(attended + self.residual(x))


class AutoInt(CTRModel):
    config_class = AutoIntConfig
    param_groups = {
        "embeddings": ("embeddings",),
        "static": ("attention", "dnn"),
        "head": ("head",),
    }

    def __init__(self, meta: DatasetMeta, config: AutoIntConfig | None = None):
        super().__init__(meta, config)
        config = self.config
        self.embeddings = Embeddings(meta, config.embed_dim)
        dims = [config.embed_dim] + [config.attention_dim] * config.num_attention_layers
        self.attention = nn.ModuleList(
            InteractingLayer(d_in, config.attention_dim, config.num_heads, config.dropout)
            for d_in in dims[:-1]
        )
        flat = NUM_FIELDS * dims[-1]
        self.dnn = MLP(NUM_FIELDS * config.embed_dim, config.dnn_hidden, dropout=config.dropout) \
            if config.dnn_hidden else None
        self.head = nn.Linear(flat + (self.dnn.out_dim if self.dnn is not None else 0), 1)

    def forward(self, user, item, category, hist_items, hist_cats, hist_len, *, return_gate: bool = False):
        self.check_inputs(user, item, category, hist_items, hist_cats, hist_len)
        valid = valid_mask(hist_len, hist_items.shape[1]).unsqueeze(-1)
        hist = self.embeddings.history(hist_items, hist_cats) * valid
        pooled = hist.sum(dim=1) / hist_len.clamp(min=1).unsqueeze(1)  # zeros for an empty history
        fields = torch.cat([self.embeddings.fields(user, item, category), pooled.unsqueeze(1)], dim=1)
        x = fields
        for layer in self.attention:
            x = layer(x)
        parts = [x.flatten(1)]
        if self.dnn is not None:
            parts.append(self.dnn(fields.flatten(1)))
        logits = self.head(torch.cat(parts, dim=1)).squeeze(-1).float()
        return (logits, None) if return_gate else logits
