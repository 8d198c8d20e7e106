"""Tiny vocabularies, batches and model sizes for the model tests (CPU-fast)."""

from __future__ import annotations

import torch

from mdaf.models import MODELS, build_model
from mdaf.schema import DatasetMeta

META = DatasetMeta(num_users=23, num_items=41, num_categories=7, max_len=9)

# Small sizes per model class, so every test runs in milliseconds on CPU.
TINY = {
    "MDAF": {"embed_dim": 8, "d_state": 4, "static_mlp_hidden": (16,)},
    "BST": {"embed_dim": 8, "num_heads": 2, "mlp_hidden": (32, 16)},
    "Mamba4Rec": {"embed_dim": 8, "d_state": 4},
    "DCNv2": {"embed_dim": 8, "low_rank": 4, "dnn_hidden": (16,)},
    "AutoInt": {"embed_dim": 8, "attention_dim": 8, "num_heads": 2},
}


def tiny_overrides(name: str, **extra) -> dict:
    return {**TINY[MODELS[name].model_class.__name__], **extra}


def tiny_model(name: str, meta: DatasetMeta = META, **extra):
    return build_model(name, meta, **tiny_overrides(name, **extra))


def make_batch(lengths, *, seq_len: int | None = None, meta: DatasetMeta = META, generator=None) -> dict:
    """A right-padded batch (schema.py) with the given history lengths; ids never 0 in valid slots."""
    lengths = list(lengths)
    batch, seq_len = len(lengths), seq_len or meta.max_len
    gen = generator or torch.Generator().manual_seed(1234)
    hist_items = torch.randint(1, meta.num_items, (batch, seq_len), generator=gen)
    hist_cats = torch.randint(1, meta.num_categories, (batch, seq_len), generator=gen)
    hist_len = torch.tensor(lengths, dtype=torch.int64)
    padded = torch.arange(seq_len).unsqueeze(0) >= hist_len.unsqueeze(1)
    return {
        "user": torch.randint(1, meta.num_users, (batch,), generator=gen),
        "item": torch.randint(1, meta.num_items, (batch,), generator=gen),
        "category": torch.randint(1, meta.num_categories, (batch,), generator=gen),
        "hist_items": hist_items.masked_fill(padded, 0),
        "hist_cats": hist_cats.masked_fill(padded, 0),
        "hist_len": hist_len,
    }
