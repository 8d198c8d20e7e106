"""The synthetic generator: official format, realistic statistics, determinism, learnable planted signal."""

import numpy as np
import pytest

from mdaf.data import PipelineConfig, default_dataset, generate_synthetic, prepare, read_behaviors
from mdaf.data.pipeline import day_index
from mdaf.data.reader import OFFICIAL_WINDOW
from mdaf.data.synthetic import DEFAULT_SIZE
from mdaf.train.metrics import auc

SMALL = {"users": 60, "items": 800, "categories": 20}


def test_deterministic_for_a_seed(tmp_path):
    for name in ("a.csv", "a.csv.gz"):
        first = generate_synthetic(tmp_path / "1" / name, seed=3, **SMALL).read_bytes()
        again = generate_synthetic(tmp_path / "2" / name, seed=3, **SMALL).read_bytes()
        assert first == again
        assert first != generate_synthetic(tmp_path / "3" / name, seed=4, **SMALL).read_bytes()
    plain, _ = read_behaviors(tmp_path / "1" / "a.csv")
    zipped, _ = read_behaviors(tmp_path / "1" / "a.csv.gz")
    assert plain.equals(zipped)


@pytest.fixture(scope="module")
def default_frame(default_file):
    frame, report = read_behaviors(default_file, strict=True, window=None)
    return frame, report


def test_official_format_and_order(default_file, default_frame):
    frame, report = default_frame
    first_line = default_file.read_text().split("\n", 1)[0].split(",")
    assert len(first_line) == 5 and first_line[3] in ("pv", "buy", "cart", "fav")
    assert report.bad_lines == 0
    users = frame["user_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    block_users = users[starts]
    assert len(block_users) == len(set(block_users)) == DEFAULT_SIZE["users"]  # one block per user
    assert list(block_users.astype(str)) == sorted(
        block_users.astype(str)
    )  # string order, like the real file
    ts = frame["timestamp"].to_numpy()
    same_user = users[1:] == users[:-1]
    assert (ts[1:][same_user] >= ts[:-1][same_user]).all()  # time-sorted per user


def test_realistic_statistics(default_frame):
    frame, _ = default_frame
    n = len(frame)
    mix = frame["behavior_type"].value_counts(normalize=True)
    assert abs(mix["pv"] - 0.895) < 0.01 and abs(mix["cart"] - 0.055) < 0.006
    assert abs(mix["fav"] - 0.03) < 0.005 and abs(mix["buy"] - 0.02) < 0.005
    ts = frame["timestamp"].to_numpy()
    inside = (ts >= OFFICIAL_WINDOW[0]) & (ts <= OFFICIAL_WINDOW[1])
    assert 0 < (~inside).sum() < 0.002 * n  # a few outside the window, like the official 0.04%
    days = day_index(ts[inside], 8)
    assert days.max() - days.min() == 8 and len(np.unique(days)) == 9
    per_day = np.bincount(days - days.min())
    assert (
        per_day.min() > 0.6 * per_day.mean() and per_day[-2:].mean() > per_day[:-2].mean()
    )  # busier at the end
    # items nested in categories: one category per item
    assert frame.groupby("item_id")["category_id"].nunique().max() == 1
    # Zipf popularity: the top 1% of items take a large share of clicks
    clicks = frame.loc[frame["behavior_type"] == "pv", "item_id"].value_counts().to_numpy()
    assert clicks[: max(len(clicks) // 100, 1)].sum() > 0.08 * clicks.sum()
    per_user = frame.groupby("user_id").size()
    assert per_user.min() >= 4 and 0.55 < per_user.median() / per_user.mean() < 0.9
    # a non-pv event is about an item the user viewed before (out-of-window times aside)
    in_window = frame[inside]
    first_pv = (
        in_window[in_window["behavior_type"] == "pv"].groupby(["user_id", "item_id"])["timestamp"].min()
    )
    other = in_window[in_window["behavior_type"] != "pv"]
    seen = first_pv.reindex(list(zip(other["user_id"], other["item_id"], strict=True))).to_numpy()
    assert (seen <= other["timestamp"].to_numpy()).mean() > 0.998


def _recent_share(split, k):
    length = split["hist_len"][:, None]
    pos = np.arange(split["hist_cats"].shape[1])[None, :]
    window = (pos < length) & (pos >= length - k)
    same = (split["hist_cats"] == split["category"][:, None]) & window
    return same.sum(axis=1) / np.maximum(window.sum(axis=1), 1)


def _user_affinity(train, split):
    """Static floor: the share of the user's training clicks in the target's category."""
    clicked = train["label"] > 0.5
    table = np.zeros((int(train["user"].max()) + 1, int(train["category"].max()) + 1))
    np.add.at(table, (train["user"][clicked], train["category"][clicked]), 1.0)
    table /= np.maximum(table.sum(axis=1, keepdims=True), 1.0)
    user = np.minimum(split["user"], table.shape[0] - 1)
    category = np.minimum(split["category"], table.shape[1] - 1)
    return table[user, category]


def _logistic_auc(features_train, y_train, features_valid, y_valid):
    x = np.c_[np.ones(len(y_train)), features_train]
    xv = np.c_[np.ones(len(y_valid)), features_valid]
    w = np.zeros(x.shape[1])
    for _ in range(25):  # Newton steps
        p = 1.0 / (1.0 + np.exp(-x @ w))
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(len(w))
        w -= np.linalg.solve(hessian, x.T @ (p - y_train))
    return auc(y_valid, xv @ w)


def test_planted_signal_static_and_sequential_both_needed(default_file):
    data = prepare(default_file, PipelineConfig())
    assert 20_000 <= data.stats["train"]["samples"] <= 60_000  # the size the examples are planned around
    train, valid = data.train, data.valid
    y, yv = train["label"], valid["label"]
    static = (np.log1p(20 * _user_affinity(train, train)), np.log1p(20 * _user_affinity(train, valid)))
    recent = (np.log1p(20 * _recent_share(train, 5)), np.log1p(20 * _recent_share(valid, 5)))
    auc_static = _logistic_auc(static[0], y, static[1], yv)
    auc_recent = _logistic_auc(recent[0], y, recent[1], yv)
    auc_both = _logistic_auc(np.c_[static[0], recent[0]], y, np.c_[static[1], recent[1]], yv)
    assert auc_static > 0.62 and auc_recent > 0.65
    assert auc_both > max(auc_static, auc_recent) + 0.02
    share_rule = auc(yv, _recent_share(valid, 50))
    assert 0.6 < share_rule < 0.9  # the untrained category-share rule: informative, not perfect


def test_default_dataset_is_reused(tmp_path):
    path = default_dataset(tmp_path)
    mtime = path.stat().st_mtime_ns
    assert default_dataset(tmp_path) == path and path.stat().st_mtime_ns == mtime
    assert path.read_bytes() == generate_synthetic(tmp_path / "again.csv", **DEFAULT_SIZE).read_bytes()


def test_bad_sizes():
    with pytest.raises(ValueError, match="categories"):
        generate_synthetic("/nonexistent/x.csv", users=10, items=5, categories=10)
