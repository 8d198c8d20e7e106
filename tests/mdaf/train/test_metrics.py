"""Metrics against hand-computed values, ties included, and against a brute-force pair count."""

import numpy as np
import pytest

from mdaf.train.metrics import auc, gauc, logloss, per_user_auc


def brute_force_auc(labels, scores, weights=None):
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=float)
    num = den = 0.0
    for i in np.flatnonzero(labels == 1):
        for j in np.flatnonzero(labels == 0):
            w = weights[i] * weights[j]
            num += w * (1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0.0)
            den += w
    return num / den


def test_auc_hand_computed():
    # pairs (pos, neg): (0.8,0.1) win, (0.8,0.4) win, (0.35,0.1) win, (0.35,0.4) loss -> 3/4
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_auc_ties_count_half():
    # pos 0.5 vs neg 0.5 tie -> 0.5, pos 0.5 vs neg 0.2 -> 1, pos 0.9 beats both -> (0.5 + 1 + 1 + 1) / 4
    assert auc([1, 0, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(3.5 / 4)
    assert auc([1, 0, 1, 0], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)


def test_auc_perfect_and_reversed():
    assert auc([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]) == 1.0
    assert auc([0, 1, 0, 1], [0.9, 0.1, 0.8, 0.2]) == 0.0


@pytest.mark.parametrize("n", [7, 64, 301])
def test_auc_matches_pair_count_with_ties_and_weights(n):
    rng = np.random.default_rng(n)
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = rng.integers(0, 6, n) / 5.0  # few distinct values: many ties
    weights = rng.integers(0, 4, n).astype(float)
    weights[:2] = 1.0
    assert auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores))
    assert auc(labels, scores, weights) == pytest.approx(brute_force_auc(labels, scores, weights))


def test_auc_errors():
    with pytest.raises(ValueError, match="single class"):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="same length"):
        auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0 or 1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        auc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="1-D"):
        auc([[0, 1]], [[0.1, 0.2]])


def test_logloss_hand_computed():
    expected = -(np.log(0.8) + np.log(1 - 0.3)) / 2
    assert logloss([1, 0], [0.8, 0.3]) == pytest.approx(expected)
    assert np.isfinite(logloss([1, 0], [0.0, 1.0]))  # clipped, not infinite
    with pytest.raises(ValueError, match="probabilities"):
        logloss([1, 0], [1.5, 0.2])


def test_gauc_hand_computed():
    users = [1, 1, 1, 2, 2, 2, 2, 3, 3]
    labels = [1, 0, 0, 1, 1, 0, 0, 1, 1]  # user 3 has one class: skipped
    scores = [0.9, 0.2, 0.95, 0.5, 0.5, 0.5, 0.1, 0.3, 0.4]
    # user 1: pos 0.9 vs negs 0.2 (win), 0.95 (loss) -> 0.5, 3 samples
    # user 2: pos 0.5,0.5 vs negs 0.5,0.1 -> (0.5 + 1 + 0.5 + 1) / 4 = 0.75, 4 samples
    assert gauc(users, labels, scores) == pytest.approx((0.5 * 3 + 0.75 * 4) / 7)
    ids, aucs, counts = per_user_auc(users, labels, scores)
    assert ids.tolist() == [1, 2] and counts.tolist() == [3, 4]


def test_gauc_matches_per_user_loop():
    rng = np.random.default_rng(3)
    users = rng.integers(0, 15, 500)
    labels = rng.integers(0, 2, 500)
    scores = rng.integers(0, 4, 500).astype(float)
    num = den = 0.0
    for u in np.unique(users):
        m = users == u
        if labels[m].min() != labels[m].max():
            num += brute_force_auc(labels[m], scores[m]) * m.sum()
            den += m.sum()
    assert gauc(users, labels, scores) == pytest.approx(num / den)
    assert np.isnan(gauc([1, 2], [1, 0], [0.3, 0.4]))
