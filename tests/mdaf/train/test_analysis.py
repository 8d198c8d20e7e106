"""Gate tables, floors, significance tests and seed aggregation."""

import numpy as np
import pytest

from mdaf.train.analysis import (
    aggregate_seeds,
    bootstrap_auc_difference,
    gate_by_history_length,
    gate_statistics,
    paired_batch_ttest,
)
from mdaf.train.floors import category_share, floor_scores, item_in_history, item_popularity
from mdaf.train.metrics import auc


def test_gate_statistics_hand_computed():
    result = gate_statistics(np.array([0.1, 0.2, 0.3, 0.4, 0.5]))
    assert result["mean"] == pytest.approx(0.3)
    assert result["median"] == pytest.approx(0.3)
    assert (result["min"], result["max"]) == (0.1, 0.5)
    assert (result["q25"], result["q75"]) == (pytest.approx(0.2), pytest.approx(0.4))
    assert result["std"] == pytest.approx(np.std([0.1, 0.2, 0.3, 0.4, 0.5]))
    with pytest.raises(ValueError, match="at least one"):
        gate_statistics(np.array([]))


def test_gate_by_history_length_buckets_edges():
    gate = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    lengths = np.array([1, 9, 10, 30, 31, 50])
    rows = gate_by_history_length(gate, lengths)
    assert [r["history_length"] for r in rows] == ["< 10", "10-30", "> 30"]
    assert [r["count"] for r in rows] == [2, 2, 2]
    assert [r["mean"] for r in rows] == [pytest.approx(0.15), pytest.approx(0.35), pytest.approx(0.55)]
    with pytest.raises(ValueError, match="same length"):
        gate_by_history_length(gate, lengths[:3])


def _split():
    # history length 3 (valid) with padding beyond; id 0 never matches
    return {
        "item": np.array([5, 6, 7, 0]),
        "category": np.array([2, 3, 2, 0]),
        "hist_items": np.array([[5, 1, 2, 5], [1, 2, 0, 0], [1, 7, 0, 0], [0, 0, 0, 0]]),
        "hist_cats": np.array([[2, 2, 3, 2], [3, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]),
        "hist_len": np.array([3, 1, 1, 2]),
        "label": np.array([1.0, 1.0, 0.0, 0.0]),
    }


def test_floors_hand_computed():
    split = _split()
    # sample 0: categories [2,2,3] (4th is padding), target 2 -> 2/3; sample 1: [3] -> 1
    # sample 2: [1] vs 2 -> 0; sample 3: category 0 (unknown) never matches
    assert category_share(split).tolist() == pytest.approx([2 / 3, 1.0, 0.0, 0.0])
    # item 7 sits at position 1 of sample 2, beyond its length 1: not in history
    assert item_in_history(split).tolist() == [1.0, 0.0, 0.0, 0.0]
    train = {"item": np.array([5, 5, 6, 9, 0]), "label": np.array([1.0, 1.0, 0.0, 1.0, 1.0])}
    assert item_popularity(train)(split).tolist() == [2.0, 0.0, 0.0, 0.0]
    assert set(floor_scores(train, split)) == {
        "floor:item-popularity",
        "floor:category-share",
        "floor:item-in-history",
    }


def test_bootstrap_and_ttest_detect_a_better_model():
    rng = np.random.default_rng(0)
    n = 4000
    labels = rng.integers(0, 2, n)
    good = labels + rng.normal(0, 0.8, n)
    weak = labels + rng.normal(0, 2.0, n)
    ci = bootstrap_auc_difference(labels, good, weak, n_boot=200, seed=1)
    assert ci["diff"] == pytest.approx(auc(labels, good) - auc(labels, weak))
    assert 0 < ci["low"] < ci["diff"] < ci["high"]
    test = paired_batch_ttest(labels, good, weak, batch_size=400)
    assert test["batches"] == 10 and test["mean_diff"] > 0 and test["p"] < 1e-3
    same = bootstrap_auc_difference(labels, good, good, n_boot=50)
    assert same["diff"] == 0 and same["low"] == 0 and same["high"] == 0
    assert np.isnan(paired_batch_ttest(labels, good, good)["p"])


def test_aggregate_seeds_mean_std():
    result = aggregate_seeds(
        [{"auc": 0.7, "name": "x"}, {"auc": 0.8, "name": "x"}, {"auc": 0.9, "name": "x"}]
    )
    assert set(result) == {"auc"}
    assert result["auc"]["mean"] == pytest.approx(0.8) and result["auc"]["std"] == pytest.approx(0.1)
    assert aggregate_seeds([{"auc": 0.7}])["auc"]["std"] == 0.0
