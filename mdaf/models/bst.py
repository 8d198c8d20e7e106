"""BST, Behavior Sequence Transformer (Chen et al., 2019), on MDAF's inputs.

The sequence is the history followed by the target item, each element item + category embedding
plus a learned position embedding. BST's position is the time distance to the target; without
per-click timestamps we use the recency rank instead: the target is 0, the most recent history
element 1, and so on (padding gets its own index and is masked out of attention). A stack of
post-norm Transformer blocks (multi-head self-attention, LeakyReLU feed-forward, residuals,
dropout, LayerNorm) encodes it; the outputs of all positions, in recency order (padding zeroed), are
concatenated with the user, item and category embeddings and fed to an MLP (1024-512-256, LeakyReLU) -> logit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mdaf.models.base import CTRModel
from mdaf.models.config import ModelConfig, check_sizes
from mdaf.models.inputs import Embeddings, append_target, valid_mask
from mdaf.models.layers import MLP
from mdaf.schema import DatasetMeta


@dataclass(frozen=True)
class BSTConfig(ModelConfig):
    embed_dim: int = 64
    dropout: float = 0.15
    num_blocks: int = 1
    num_heads: int = 8
    ffn_mult: int = 4
    mlp_hidden: tuple[int, ...] = (1024, 512, 256)

    def validate(self) -> None:
        super().validate()
        check_sizes("mlp_hidden", self.mlp_hidden)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"num_heads: must divide embed_dim={self.embed_dim}, got {self.num_heads}")


class TransformerBlock(nn.Module):
    """Post-norm Transformer block as in BST: ``LN(x + MHA(x))`` then ``LN(x + FFN(x))``."""

    def __init__(self, dim: int, num_heads: int, ffn_mult: int, dropout: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.LeakyReLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_mult * dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, padding):
        attended, _ = self.attention(x, x, x, key_padding_mask=padding, need_weights=False)
        x = self.norm1(x + self.dropout(attended))
        return self.norm2(x + self.dropout(self.ffn(x)))


class BST(CTRModel):
    config_class = BSTConfig
    param_groups = {
        "embeddings": ("embeddings", "positions"),
        "sequential": ("blocks",),
        "head": ("mlp",),
    }

    def __init__(self, meta: DatasetMeta, config: BSTConfig | None = None):
        super().__init__(meta, config)
        config = self.config
        dim = config.embed_dim
        self.embeddings = Embeddings(meta, dim)
        # recency ranks 0 (target) .. max_len (oldest), plus one index for padding
        self.pad_position = meta.max_len + 1
        self.positions = nn.Embedding(meta.max_len + 2, dim)
        self.blocks = nn.ModuleList(TransformerBlock(dim, config.num_heads, config.ffn_mult, config.dropout)
                                    for _ in range(config.num_blocks))
        self.mlp = MLP((meta.max_len + 1) * dim + 3 * dim, config.mlp_hidden, 1, activation="leaky_relu",
                       dropout=config.dropout)

    def forward(self, user, item, category, hist_items, hist_cats, hist_len, *, return_gate: bool = False):
        self.check_inputs(user, item, category, hist_items, hist_cats, hist_len)
        seq_len = hist_items.shape[1]
        seq = append_target(self.embeddings.history(hist_items, hist_cats),
                            self.embeddings.target(item, category), hist_len)  # [B, L+1, D]
        valid = valid_mask(hist_len + 1, seq_len + 1)  # history and target
        index = torch.arange(seq_len + 1, device=seq.device).unsqueeze(0)
        recency = torch.where(valid, hist_len.unsqueeze(1) - index, self.pad_position)
        x = seq + self.positions(recency)
        for block in self.blocks:
            x = block(x, ~valid)
        # the MLP reads the outputs in recency order (slot r = recency r, zeros past the history), so
        # a slot means the same thing in every row and the width is fixed whatever L
        slot_source = hist_len.unsqueeze(1) - torch.arange(self.meta.max_len + 1, device=x.device)
        in_history = slot_source >= 0
        slot_index = slot_source.clamp(min=0).unsqueeze(-1).expand(-1, -1, x.shape[-1])
        x = x.gather(1, slot_index) * in_history.unsqueeze(-1)
        features = torch.cat([x.flatten(1), self.embeddings.fields(user, item, category).flatten(1)], dim=1)
        logits = self.mlp(features).squeeze(-1).float()
        return (logits, None) if return_gate else logits
