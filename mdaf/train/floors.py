"""Untrained scorers: the floors every comparison table shows, so a reader sees what a model adds.

- ``item_popularity``: how often the target item was clicked in the training days.
- ``category_share``: the share of the history in the target's category.
- ``item_in_history``: whether the target item is already in the history (0 or 1).

Each takes the arrays of one split (the batch contract of :mod:`mdaf.schema`, as NumPy) and
returns one score per sample; higher means "more likely a click". Id 0 (padding/unknown) never
matches anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from mdaf.schema import PAD_ID

Arrays = Mapping[str, np.ndarray]


def _valid_history_mask(split: Arrays) -> np.ndarray:
    hist_items = np.asarray(split["hist_items"])
    positions = np.arange(hist_items.shape[1])[None, :]
    return positions < np.asarray(split["hist_len"])[:, None]


def item_popularity(train: Arrays) -> Callable[[Arrays], np.ndarray]:
    """A scorer giving each target item its number of clicks (positive samples) in ``train``."""
    items = np.asarray(train["item"])
    clicked = items[np.asarray(train["label"]) > 0.5]
    counts = np.bincount(clicked, minlength=int(items.max(initial=0)) + 1).astype(np.float64)
    counts[PAD_ID] = 0.0

    def score(split: Arrays) -> np.ndarray:
        target = np.asarray(split["item"])
        result = np.zeros(target.shape[0], dtype=np.float64)
        known = target < counts.shape[0]
        result[known] = counts[target[known]]
        return result

    return score


def category_share(split: Arrays) -> np.ndarray:
    """Share of the valid history positions whose category equals the target's (0 for no history)."""
    mask = _valid_history_mask(split)
    category = np.asarray(split["category"])
    same = (np.asarray(split["hist_cats"]) == category[:, None]) & mask & (category[:, None] != PAD_ID)
    lengths = np.asarray(split["hist_len"]).astype(np.float64)
    return np.divide(same.sum(axis=1), lengths, out=np.zeros_like(lengths), where=lengths > 0)


def item_in_history(split: Arrays) -> np.ndarray:
    """1.0 when the target item appears among the valid history positions, else 0.0."""
    mask = _valid_history_mask(split)
    item = np.asarray(split["item"])
    hit = (np.asarray(split["hist_items"]) == item[:, None]) & mask & (item[:, None] != PAD_ID)
    return hit.any(axis=1).astype(np.float64)


FLOOR_DESCRIPTIONS = {
    "floor:item-popularity": "clicks of the target item in the training days",
    "floor:category-share": "share of the history in the target's category",
    "floor:item-in-history": "target item already in the history",
}


def floor_scores(train: Arrays, split: Arrays) -> dict[str, np.ndarray]:
    """Scores of every floor on ``split`` (popularity counted on ``train``)."""
    return {
        "floor:item-popularity": item_popularity(train)(split),
        "floor:category-share": category_share(split),
        "floor:item-in-history": item_in_history(split),
    }
