"""Untrained scorers: the floors every comparison table shows, so a reader sees what a model adds.

- ``item_popularity``: how often the target item was clicked in the training days.
- ``category_share``: the share of the history in the target's category.
- ``item_in_history``: whether the target item is already in the history (0 or 1).
- ``target_unknown``: whether the target item has no row of its own that training trains (it maps
  to the out-of-vocabulary id, or, with the transductive vocabulary, never occurs in training).

Each takes the arrays of one split (the batch contract of :mod:`mdaf.schema`, as NumPy) and
returns one score per sample. A floor is a rule, not a model, so it may rank backwards: each is
reported as ``max(AUC, 1 - AUC)`` with its direction (:func:`oriented_floor`), and a model must
beat the floor's best orientation. Padding and out-of-vocabulary ids never match anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from mdaf.schema import OOV_ID, PAD_ID
from mdaf.train.metrics import auc

Arrays = Mapping[str, np.ndarray]
DIRECTIONS = {1: "higher score = click", -1: "lower score = click"}


def _valid_history_mask(split: Arrays) -> np.ndarray:
    hist_items = np.asarray(split["hist_items"])
    positions = np.arange(hist_items.shape[1])[None, :]
    return positions < np.asarray(split["hist_len"])[:, None]


def _has_own_row(ids: np.ndarray) -> np.ndarray:
    return (ids != PAD_ID) & (ids != OOV_ID)


def item_popularity(train: Arrays) -> Callable[[Arrays], np.ndarray]:
    """A scorer giving each target item its number of clicks (positive samples) in ``train``."""
    items = np.asarray(train["item"])
    clicked = items[np.asarray(train["label"]) > 0.5]
    counts = np.bincount(clicked, minlength=int(items.max(initial=OOV_ID)) + 1).astype(np.float64)
    counts[[PAD_ID, OOV_ID]] = 0.0  # the out-of-vocabulary bucket is many items, not a popular one

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
    same = (np.asarray(split["hist_cats"]) == category[:, None]) & mask & _has_own_row(category)[:, None]
    lengths = np.asarray(split["hist_len"]).astype(np.float64)
    return np.divide(same.sum(axis=1), lengths, out=np.zeros_like(lengths), where=lengths > 0)


def item_in_history(split: Arrays) -> np.ndarray:
    """1.0 when the target item appears among the valid history positions, else 0.0."""
    mask = _valid_history_mask(split)
    item = np.asarray(split["item"])
    hit = (np.asarray(split["hist_items"]) == item[:, None]) & mask & _has_own_row(item)[:, None]
    return hit.any(axis=1).astype(np.float64)


def target_unknown(train: Arrays) -> Callable[[Arrays], np.ndarray]:
    """A scorer giving 1.0 to targets without a trained row of their own: the out-of-vocabulary id, or
    an id that occurs nowhere in ``train`` (neither as a target nor in a history)."""
    seen_items = np.concatenate(
        [np.asarray(train["item"]), np.asarray(train["hist_items"])[_valid_history_mask(train)]]
    )
    seen = np.zeros(int(seen_items.max(initial=OOV_ID)) + 1, dtype=bool)
    seen[seen_items] = True

    def score(split: Arrays) -> np.ndarray:
        target = np.asarray(split["item"])
        known = _has_own_row(target) & (target < seen.size)
        known[known] = seen[target[known]]
        return (~known).astype(np.float64)

    return score


def oriented_floor(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | int | str]:
    """A floor's AUC in its better direction: ``max(AUC, 1 - AUC)``, the raw AUC and the sign that
    turns the scores into that direction (``sign * scores`` ranks clicks first)."""
    raw = auc(labels, scores)
    sign = 1 if not raw < 0.5 else -1
    return {"auc": max(raw, 1.0 - raw), "raw_auc": raw, "sign": sign, "direction": DIRECTIONS[sign]}


FLOOR_DESCRIPTIONS = {
    "floor:item-popularity": "clicks of the target item in the training days",
    "floor:category-share": "share of the history in the target's category",
    "floor:item-in-history": "target item already in the history",
    "floor:target-unknown": "target item unknown in training: no trained row of its own",
}


def floor_scores(train: Arrays, split: Arrays) -> dict[str, np.ndarray]:
    """Scores of every floor on ``split`` (popularity and known items counted on ``train``)."""
    return {
        "floor:item-popularity": item_popularity(train)(split),
        "floor:category-share": category_share(split),
        "floor:item-in-history": item_in_history(split),
        "floor:target-unknown": target_unknown(train)(split),
    }
