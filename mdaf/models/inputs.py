"""Input checks, embeddings and padding helpers shared by every model.

Histories follow mdaf/schema.py: **right-padded**, oldest first, positions ``0 .. hist_len-1``
valid and the rest equal to ``PAD_ID`` (0). Right padding keeps the causal sequence models
exact (a valid position never sees a padded one), so the sequential representation is simply the
output at position ``hist_len - 1``; an empty history (``hist_len == 0``) gives a zero vector.
A history item is embedded as ``item_embedding[item] + category_embedding[category]`` with the
same tables as the target item and category (the item table is shared), so every position stays
``D`` wide.
"""

from __future__ import annotations

import torch
from torch import nn

from mdaf.schema import PAD_ID, DatasetMeta
from mdaf_kernels._checks import check_shape, check_tensor

ID_DTYPES = (torch.int64,)


def check_features(
    meta: DatasetMeta,
    user: torch.Tensor,
    item: torch.Tensor,
    category: torch.Tensor,
    hist_items: torch.Tensor,
    hist_cats: torch.Tensor,
    hist_len: torch.Tensor,
    *,
    values: bool = True,
) -> None:
    """Check ranks, dtypes, shapes, devices and (with ``values``) values; raise naming the argument.

    Values are checked with one device-to-host synchronisation; the detailed (slower) pass that
    names the culprit only runs when something is wrong.
    """
    check_tensor("user", user, ndim=1, dtypes=ID_DTYPES)
    batch = user.shape[0]
    if batch == 0:
        raise ValueError("user: expected a non-empty batch, got shape (0,)")
    device = user.device
    for name, t in (("item", item), ("category", category), ("hist_len", hist_len)):
        check_tensor(name, t, ndim=1, dtypes=ID_DTYPES, device=device)
        check_shape(name, t, (batch,), "(batch,) like user")
    check_tensor("hist_items", hist_items, ndim=2, dtypes=ID_DTYPES, device=device)
    seq_len = hist_items.shape[1]
    if hist_items.shape[0] != batch or not 1 <= seq_len <= meta.max_len:
        raise ValueError(
            f"hist_items: expected shape (batch={batch}, L) with 1 <= L <= max_len={meta.max_len}, "
            f"got {tuple(hist_items.shape)}"
        )
    check_tensor("hist_cats", hist_cats, ndim=2, dtypes=ID_DTYPES, device=device)
    check_shape("hist_cats", hist_cats, hist_items.shape, "(batch, L) like hist_items")
    if not values:
        return

    padded = ~valid_mask(hist_len, seq_len)
    vocab = {
        "user": (user, meta.num_users, "num_users"),
        "item": (item, meta.num_items, "num_items"),
        "category": (category, meta.num_categories, "num_categories"),
        "hist_items": (hist_items, meta.num_items, "num_items"),
        "hist_cats": (hist_cats, meta.num_categories, "num_categories"),
    }
    bad = (hist_len < 0).any() | (hist_len > seq_len).any()
    for t, size, _ in vocab.values():
        bad = bad | (t < 0).any() | (t >= size).any()
    bad = bad | ((hist_items != PAD_ID) & padded).any() | ((hist_cats != PAD_ID) & padded).any()
    if not bad.item():
        return

    if (hist_len < 0).any() or (hist_len > seq_len).any():
        raise ValueError(
            f"hist_len: expected values in [0, L={seq_len}], got min {hist_len.min().item()} "
            f"max {hist_len.max().item()}"
        )
    for name, (t, size, field) in vocab.items():
        if (t < 0).any() or (t >= size).any():
            raise ValueError(
                f"{name}: ids must lie in [0, {size}) (DatasetMeta.{field}={size}), got min {t.min().item()} "
                f"max {t.max().item()}"
            )
    for name, t in (("hist_items", hist_items), ("hist_cats", hist_cats)):
        rows = ((t != PAD_ID) & padded).any(dim=1).nonzero().flatten()
        if rows.numel():
            row = rows[0].item()
            raise ValueError(
                f"{name}: histories must be right-padded with {PAD_ID} (positions >= hist_len are padding), "
                f"but row {row} has hist_len={hist_len[row].item()} and non-padding ids after it: "
                f"{t[row].tolist()} (left-padded input?)"
            )


def valid_mask(hist_len: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(B, L) bool, True at the valid (non-padded) positions of a right-padded history."""
    positions = torch.arange(seq_len, device=hist_len.device)
    return positions.unsqueeze(0) < hist_len.unsqueeze(1)


def gather_last(states: torch.Tensor, hist_len: torch.Tensor) -> torch.Tensor:
    """The state at the last valid position of each row of (B, L, D) ``states``; zeros when empty."""
    index = (hist_len - 1).clamp(min=0)
    last = states[torch.arange(states.shape[0], device=states.device), index]
    return torch.where((hist_len > 0).unsqueeze(1), last, torch.zeros_like(last))


class Embeddings(nn.Module):
    """User, item and category tables of width ``D``; row ``PAD_ID`` is a fixed zero vector.

    The item and category tables serve both the target and the history. The user table is only
    built when a model reads the user (``use_user``), so every parameter of a model is trained.
    """

    def __init__(self, meta: DatasetMeta, embed_dim: int, *, use_user: bool = True):
        super().__init__()
        self.user = nn.Embedding(meta.num_users, embed_dim, padding_idx=PAD_ID) if use_user else None
        self.item = nn.Embedding(meta.num_items, embed_dim, padding_idx=PAD_ID)
        self.category = nn.Embedding(meta.num_categories, embed_dim, padding_idx=PAD_ID)
        for table in (self.user, self.item, self.category):
            if table is not None:
                nn.init.normal_(table.weight, std=0.02)  # small init as in BERT/RecBole tables
                with torch.no_grad():
                    table.weight[PAD_ID].zero_()

    def fields(self, user: torch.Tensor, item: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """(B, 3, D): the user, target item and target category embeddings."""
        if self.user is None:
            raise RuntimeError("this model was built without a user table (use_user=False)")
        return torch.stack([self.user(user), self.item(item), self.category(category)], dim=1)

    def target(self, item: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """(B, D): the target item as a sequence element (item + category)."""
        return self.item(item) + self.category(category)

    def history(self, hist_items: torch.Tensor, hist_cats: torch.Tensor) -> torch.Tensor:
        """(B, L, D): each history element is item + category embedding (padding rows are zero)."""
        return self.item(hist_items) + self.category(hist_cats)


def append_target(hist: torch.Tensor, target: torch.Tensor, hist_len: torch.Tensor) -> torch.Tensor:
    """(B, L+1, D): the history with the target written right after its last valid element.

    With right padding the target lands at position ``hist_len``, so a causal model's output
    there has read the whole history and then the target.
    """
    batch, seq_len, dim = hist.shape
    seq = torch.cat([hist, hist.new_zeros(batch, 1, dim)], dim=1)
    index = hist_len.view(batch, 1, 1).expand(batch, 1, dim)
    return seq.scatter(1, index, target.unsqueeze(1))
