"""Ranking and calibration metrics for CTR: exact tie-aware AUC, logloss and gAUC.

AUC is computed exactly (no binning): samples are sorted by score and grouped into tie runs; a
positive beats every negative with a lower score and counts half against a tied negative. The same
routine takes sample weights, which the bootstrap uses (resampling = integer weights).
"""

from __future__ import annotations

import numpy as np


def _as_1d(name: str, values, dtype) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    return array


def _check_binary(labels: np.ndarray) -> None:
    if labels.size and not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 or 1")


def _check_same_length(**arrays: np.ndarray) -> None:
    lengths = {name: a.shape[0] for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have the same length, got {lengths}")


def tie_groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort order of ``scores`` and, for each sorted position, the index of its tie run."""
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    new_run = np.empty(sorted_scores.shape[0], dtype=bool)
    new_run[:1] = True
    np.not_equal(sorted_scores[1:], sorted_scores[:-1], out=new_run[1:])
    return order, np.cumsum(new_run) - 1


def auc_from_groups(
    labels_sorted: np.ndarray, group: np.ndarray, weights_sorted: np.ndarray | None = None
) -> float:
    """AUC of samples already sorted by score with tie-run ids ``group`` (see :func:`tie_groups`).

    Returns NaN when the (weighted) positives or negatives are empty: AUC is undefined there.
    """
    w = np.ones(labels_sorted.shape[0]) if weights_sorted is None else weights_sorted.astype(np.float64)
    n_groups = int(group[-1]) + 1 if group.size else 0
    pos = np.bincount(group, weights=w * labels_sorted, minlength=n_groups)
    neg = np.bincount(group, weights=w * (1.0 - labels_sorted), minlength=n_groups)
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos <= 0 or total_neg <= 0:
        return float("nan")
    neg_below = np.cumsum(neg) - neg
    return float(np.sum(pos * (neg_below + 0.5 * neg)) / (total_pos * total_neg))


def auc(labels, scores, weights=None) -> float:
    """Exact area under the ROC curve; tied scores count one half. Optional sample weights.

    Raises ``ValueError`` when only one class is present (AUC is undefined).
    """
    y = _as_1d("labels", labels, np.float64)
    s = _as_1d("scores", scores, np.float64)
    _check_same_length(labels=y, scores=s)
    _check_binary(y)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    w = None
    if weights is not None:
        w = _as_1d("weights", weights, np.float64)
        _check_same_length(labels=y, weights=w)
        if (w < 0).any():
            raise ValueError("weights must be non-negative")
    order, group = tie_groups(s)
    value = auc_from_groups(y[order], group, None if w is None else w[order])
    if np.isnan(value):
        raise ValueError("AUC is undefined: labels contain a single class")
    return value


def logloss(labels, probs, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities ``probs`` (clipped to [eps, 1 - eps])."""
    y = _as_1d("labels", labels, np.float64)
    p = _as_1d("probs", probs, np.float64)
    _check_same_length(labels=y, probs=p)
    _check_binary(y)
    if y.size == 0:
        raise ValueError("logloss of an empty set is undefined")
    if np.any((p < 0) | (p > 1)) or np.isnan(p).any():
        raise ValueError("probs must be probabilities in [0, 1]")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def per_user_auc(users, labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUC of each user having both classes: returns (user ids, AUCs, sample counts)."""
    u = _as_1d("users", users, np.int64)
    y = _as_1d("labels", labels, np.float64)
    s = _as_1d("scores", scores, np.float64)
    _check_same_length(users=u, labels=y, scores=s)
    _check_binary(y)
    if u.size == 0:
        return u, np.empty(0), np.empty(0, dtype=np.int64)
    order = np.lexsort((s, u))
    u, y, s = u[order], y[order], s[order]
    n = u.shape[0]
    index = np.arange(n)
    user_start_flag = np.r_[True, u[1:] != u[:-1]]
    user_id = np.cumsum(user_start_flag) - 1
    user_start = index[user_start_flag]
    rank_in_user = index - user_start[user_id] + 1.0  # 1-based rank within the user
    run_start_flag = user_start_flag | np.r_[True, s[1:] != s[:-1]]
    run_id = np.cumsum(run_start_flag) - 1
    run_first = rank_in_user[run_start_flag]
    run_last = np.r_[rank_in_user[np.flatnonzero(run_start_flag)[1:] - 1], rank_in_user[-1]]
    avg_rank = ((run_first + run_last) / 2.0)[run_id]  # tie-aware mid-rank
    n_users = int(user_id[-1]) + 1
    n_pos = np.bincount(user_id, weights=y, minlength=n_users)
    counts = np.bincount(user_id, minlength=n_users)
    n_neg = counts - n_pos
    rank_sum = np.bincount(user_id, weights=avg_rank * y, minlength=n_users)
    valid = (n_pos > 0) & (n_neg > 0)
    user_auc = (rank_sum[valid] - n_pos[valid] * (n_pos[valid] + 1) / 2.0) / (n_pos[valid] * n_neg[valid])
    return u[user_start_flag][valid], user_auc, counts[valid]


def gauc(users, labels, scores) -> float:
    """Per-user AUC averaged with each user weighted by their sample count (users with one class skipped).

    Returns NaN when no user has both classes.
    """
    _, user_auc, counts = per_user_auc(users, labels, scores)
    if counts.size == 0:
        return float("nan")
    return float(np.sum(user_auc * counts) / np.sum(counts))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -logits))


def classification_metrics(users, labels, scores, *, probabilities: bool = True) -> dict[str, float]:
    """AUC, gAUC and (for probabilities) logloss, as one dict."""
    result = {"auc": auc(labels, scores), "gauc": gauc(users, labels, scores)}
    if probabilities:
        result["logloss"] = logloss(labels, scores)
    return result
