"""Tiny planted-signal data in the batch contract and a stand-in model, for fast trainer tests."""

import numpy as np
import torch
from torch import nn

from mdaf.schema import DatasetMeta

META = DatasetMeta(num_users=40, num_items=60, num_categories=8, max_len=6)


def tiny_split(n: int, seed: int) -> dict[str, np.ndarray]:
    """Clicks are likelier when the target's category is in the history."""
    rng = np.random.default_rng(seed)
    hist_len = rng.integers(1, META.max_len + 1, n)
    hist_cats = rng.integers(1, META.num_categories, (n, META.max_len))
    hist_items = rng.integers(1, META.num_items, (n, META.max_len))
    pad = np.arange(META.max_len)[None, :] >= hist_len[:, None]
    hist_cats[pad] = 0
    hist_items[pad] = 0
    # half the targets come from a category of the history; those are mostly clicks
    from_history = hist_cats[np.arange(n), rng.integers(0, hist_len)]
    category = np.where(rng.random(n) < 0.5, from_history, rng.integers(1, META.num_categories, n))
    in_history = ((hist_cats == category[:, None]) & ~pad).any(1)
    label = (rng.random(n) < np.where(in_history, 0.8, 0.1)).astype(np.float32)
    return {
        "user": rng.integers(1, META.num_users, n),
        "item": rng.integers(1, META.num_items, n),
        "category": category,
        "hist_items": hist_items,
        "hist_cats": hist_cats,
        "hist_len": hist_len,
        "label": label,
        "timestamp": np.arange(n, dtype=np.int64),
    }


class StandIn(nn.Module):
    """Category embedding of the target dotted with the mean history category embedding, with dropout
    (so a resume must restore the RNG) and a sigmoid gate (so gate statistics have something to read)."""

    def __init__(self, meta: DatasetMeta = META, dim: int = 8):
        super().__init__()
        self.meta = meta
        self.cat = nn.Embedding(meta.num_categories, dim, padding_idx=0)
        self.drop = nn.Dropout(0.2)
        self.gate = nn.Linear(dim, 1)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, user, item, category, hist_items, hist_cats, hist_len, *, return_gate=False):
        target = self.drop(self.cat(category))
        mask = (torch.arange(hist_cats.shape[1]) < hist_len[:, None]).float()
        hist = (self.cat(hist_cats) * mask[..., None]).sum(1) / hist_len.clamp(min=1)[:, None]
        gate = torch.sigmoid(self.gate(hist)).squeeze(-1)
        logits = gate * (target * hist).sum(-1) * 4 + self.bias
        return (logits, gate) if return_gate else logits
