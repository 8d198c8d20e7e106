"""Mamba4Rec (Liu et al., 2024) as a CTR baseline: the sequence alone, with the target item.

The target (item + category embedding) is written right after the last valid history element
(position ``hist_len`` of the right-padded sequence), the Mamba4Rec encoder (the same one as
MDAF's sequential branch) runs over it, and its state at the target position goes through a
D -> D -> 1 head. User embeddings are not read.
"""

from __future__ import annotations

from dataclasses import dataclass

from mdaf.models.base import CTRModel
from mdaf.models.config import ModelConfig
from mdaf.models.inputs import Embeddings, append_target
from mdaf.models.layers import MLP, SequenceEncoder
from mdaf.schema import DatasetMeta


@dataclass(frozen=True)
class Mamba4RecConfig(ModelConfig):
    embed_dim: int = 64
    dropout: float = 0.15
    num_mamba_layers: int = 1
    d_state: int = 32
    d_conv: int = 4
    expand: int = 2
    ffn_mult: int = 4


class Mamba4Rec(CTRModel):
    config_class = Mamba4RecConfig
    param_groups = {
        "embeddings": ("embeddings",),
        "sequential": ("sequence",),
        "head": ("head",),
    }

    def __init__(self, meta: DatasetMeta, config: Mamba4RecConfig | None = None):
        super().__init__(meta, config)
        config = self.config
        dim = config.embed_dim
        self.embeddings = Embeddings(meta, dim, use_user=False)
        self.sequence = SequenceEncoder(
            dim, num_layers=config.num_mamba_layers, d_state=config.d_state, d_conv=config.d_conv,
            expand=config.expand, ffn_mult=config.ffn_mult, dropout=config.dropout,
        )
        self.head = MLP(dim, (dim,), 1)

    def forward(self, user, item, category, hist_items, hist_cats, hist_len, *, return_gate: bool = False):
        self.check_inputs(user, item, category, hist_items, hist_cats, hist_len)
        seq = append_target(self.embeddings.history(hist_items, hist_cats),
                            self.embeddings.target(item, category), hist_len)  # [B, L+1, D]
        h = self.sequence.last_states(seq, hist_len + 1)  # the state at the target
        logits = self.head(h).squeeze(-1).float()
        return (logits, None) if return_gate else logits
