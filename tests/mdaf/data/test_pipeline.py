"""The paper's steps on tiny hand-written files with known answers, and the no-future guarantees."""

import json

import numpy as np
import pytest

from mdaf.data import PipelineConfig, prepare, read_behaviors
from mdaf.data import pipeline as P
from mdaf.data.reader import BEHAVIORS
from mdaf.schema import FIRST_ID, OOV_ID, PAD_ID
from tests.mdaf.data.conftest import DAY, T0, write_rows

# Two days; day 1 (the last) is validation. Same-second clicks 12 and 13 of user 1 test "strictly before".
ROWS = [
    (1, 11, 1, "pv", T0 + 100),
    (1, 12, 1, "pv", T0 + 200),
    (1, 13, 2, "pv", T0 + 200),
    (1, 14, 2, "pv", T0 + 300),
    (1, 14, 2, "buy", T0 + 310),
    (1, 15, 3, "pv", T0 + DAY + 50),
    (2, 21, 5, "pv", T0 + 150),
    (2, 11, 1, "pv", T0 + 400),
    (2, 22, 5, "pv", T0 + DAY + 100),
]
ONLY_POSITIVES = {"positive_rate": 1.0}


def _rows(split, n=None):
    keys = ("user", "item", "category", "hist_len", "label", "timestamp")
    out = [
        tuple(int(split[k][i]) for k in keys)
        + (tuple(int(x) for x in split["hist_items"][i]), tuple(int(x) for x in split["hist_cats"][i]))
        for i in range(len(split["user"]))
    ]
    return out


def _pad(values, length):
    return tuple(values) + (0,) * (length - len(values))


@pytest.fixture
def tiny(tmp_path):
    return write_rows(tmp_path / "tiny.csv", ROWS)


def test_histories_ids_and_split_known_answer(tiny):
    data = prepare(tiny, PipelineConfig(max_len=5, oov_min_count=1, **ONLY_POSITIVES))
    # 0 padding, 1 out of vocabulary; train ids: users 1, 2 -> 2, 3; items 11, 12, 13, 14, 21 -> 2..6;
    # categories 1, 2, 5 -> 2..4
    assert (data.meta.num_users, data.meta.num_items, data.meta.num_categories, data.meta.max_len) == (
        4,
        7,
        5,
        5,
    )
    assert _rows(data.train) == [
        (2, 3, 2, 1, 1, T0 + 200, _pad([2], 5), _pad([2], 5)),
        (2, 4, 3, 1, 1, T0 + 200, _pad([2], 5), _pad([2], 5)),  # the same-second click 12 is not history
        (2, 5, 3, 3, 1, T0 + 300, _pad([2, 3, 4], 5), _pad([2, 2, 3], 5)),  # the buy is not a click
        (3, 2, 2, 1, 1, T0 + 400, _pad([6], 5), _pad([4], 5)),
    ]
    # validation: item 15, category 3 and item 22 are unknown to the training maps -> 1 (OOV)
    assert _rows(data.valid) == [
        (2, 1, 1, 4, 1, T0 + DAY + 50, _pad([2, 3, 4, 5], 5), _pad([2, 2, 3, 3], 5)),
        (3, 1, 4, 2, 1, T0 + DAY + 100, _pad([6, 2], 5), _pad([4, 2], 5)),
    ]
    assert data.stats["valid"]["oov_share"]["target_item_positives"] == 1.0
    # with the transductive vocabulary the validation ids get rows of their own
    transductive = prepare(
        tiny, PipelineConfig(max_len=5, oov_min_count=1, vocabulary="all-days", **ONLY_POSITIVES)
    )
    assert (transductive.valid["item"] > 1).all() and (transductive.valid["category"] > 1).all()
    # oov_min_count=2: ids seen once in training share the out-of-vocabulary id there too
    rare = prepare(tiny, PipelineConfig(max_len=5, oov_min_count=2, **ONLY_POSITIVES))
    assert rare.id_maps.items.tolist() == [11, 12, 13] and rare.id_maps.users.tolist() == [1]
    assert rare.train["item"].tolist() == [3, 4, 1, 2] and rare.train["user"].tolist() == [2, 2, 2, 1]
    for split in (data.train, data.valid):
        assert split["label"].dtype == np.float32
        assert all(split[k].dtype == np.int64 for k in ("user", "item", "category", "hist_items", "hist_len"))
    assert data.stats["samples"]["samples"] == 8 and data.stats["nonempty_history"]["samples"] == 6


def test_most_recent_kept_when_history_is_long(tiny):
    data = prepare(tiny, PipelineConfig(max_len=2, oov_min_count=1, **ONLY_POSITIVES))
    assert data.train["hist_items"][2].tolist() == [3, 4] and data.train["hist_len"][2] == 2
    assert data.valid["hist_items"][0].tolist() == [4, 5]


def test_category_filter_known_answer(tiny):
    data = prepare(tiny, PipelineConfig(max_len=5, category_filter=True, oov_min_count=1, **ONLY_POSITIVES))
    # kept: item 12 (cat 1, history cats {1}), item 14 (cat 2, history {1, 2}), validation item 22 (cat 5)
    assert data.train["timestamp"].tolist() == [T0 + 200, T0 + 300]
    assert data.train["item"].tolist() == [3, 5]  # ids of the filtered training split: 11, 12, 13, 14 -> 2..5
    assert data.valid["timestamp"].tolist() == [T0 + DAY + 100]
    assert data.stats["category_filter"]["target_category_in_history"] == 1.0


def test_validation_days(tmp_path):
    rows = [(1, 9, 1, "pv", T0 + 10)] + [(1, 10 + d, 1, "pv", T0 + d * DAY + 60) for d in range(5)]
    for days, n_valid in ((1, 1), (2, 2), (4, 4)):
        data = prepare(
            write_rows(tmp_path / "d.csv", rows), PipelineConfig(validation_days=days, **ONLY_POSITIVES)
        )
        assert data.valid["timestamp"].tolist() == [T0 + d * DAY + 60 for d in range(5 - n_valid, 5)]
        assert data.train["timestamp"].max() < T0 + (5 - n_valid) * DAY


def test_day_boundary_is_utc_plus_8(tmp_path):
    last_midnight = T0 + DAY  # 2017-11-26 00:00 UTC+8 = 2017-11-25 16:00 UTC
    rows = [(1, 1, 1, "pv", T0 + 10), (1, 2, 1, "pv", last_midnight - 1), (1, 3, 1, "pv", last_midnight)]
    data = prepare(write_rows(tmp_path / "d.csv", rows), PipelineConfig(**ONLY_POSITIVES))
    assert data.train["timestamp"].tolist() == [last_midnight - 1]
    assert data.valid["timestamp"].tolist() == [last_midnight]


@pytest.fixture(scope="module")
def default_events(default_file):
    frame, _ = read_behaviors(default_file)
    return frame


def _raw(table, ids):
    """Raw ids back from contiguous ids (-1 for padding and out-of-vocabulary)."""
    return np.r_[-1, -1, table][ids]


@pytest.mark.parametrize("scheme", P.NEGATIVE_SCHEMES)
def test_negatives_follow_their_scheme(default_file, default_events, scheme):
    data = prepare(default_file, PipelineConfig(negative_scheme=scheme, oov_min_count=1))
    for name in ("samples", "nonempty_history"):
        assert abs(data.stats[name]["positive_rate"] - 0.4) < 0.01
    maps, train = data.id_maps, data.train
    raw_item, raw_user = _raw(maps.items, train["item"]), _raw(maps.users, train["user"])
    day = P.day_index(train["timestamp"], 8)
    neg = train["label"] == 0
    frame = default_events
    clicks = frame[frame["behavior_type"] == "pv"]
    first_click = clicks.groupby(["user_id", "item_id"])["timestamp"].min().to_dict()
    never = np.iinfo(np.int64).max
    first = np.array(
        [first_click.get((u, i), never) for u, i in zip(raw_user[neg], raw_item[neg], strict=True)]
    )
    # never clicked by the user before the end of the sample's day (so never before it, on any day)
    assert (first >= (day[neg] + 1) * DAY - 8 * 3600).all()
    first_seen = frame.groupby("item_id")["timestamp"].min()
    assert (first_seen.loc[raw_item[neg]].to_numpy() <= train["timestamp"][neg]).all()  # never a later item
    audit = data.stats["samples"]["negative_audit"]
    assert audit["negatives"] > 0 and data.stats["samples"]["negative_pool"] == P.NEGATIVE_POOLS[scheme]
    assert audit["clicked_before_sample"] == audit["in_history"] == audit["first_seen_after_sample"] == 0.0
    assert "clicked by the user before the sample 0.00%" in data.stats_table()
    # every negative shares time and history with a positive of the same user
    positive_keys = set(
        zip(train["user"][~neg], train["timestamp"][~neg], map(bytes, train["hist_items"][~neg]), strict=True)
    )
    assert all(
        k in positive_keys
        for k in zip(
            train["user"][neg], train["timestamp"][neg], map(bytes, train["hist_items"][neg]), strict=True
        )
    )
    in_history = (train["hist_cats"] == train["category"][:, None]).any(axis=1)
    click_counts = clicks["item_id"].value_counts()
    top_items = set(click_counts.index[: len(click_counts) // 100])
    top_share = np.isin(raw_item[neg], list(top_items)).mean()
    if scheme == "history-category":
        assert in_history[neg].all()
    else:
        assert in_history[neg].mean() < 0.5
    if scheme == "popularity":
        # the top 1% of items take a big share of clicks, hence of negatives (10x their share of items;
        # less than their share of clicks, as the user's own clicks are excluded)
        assert top_share > 0.1
    else:
        assert top_share < 0.1 or scheme == "history-category"


def test_negative_ratio_and_determinism(default_file):
    a = prepare(default_file, PipelineConfig(positive_rate=0.25))
    assert abs(a.stats["samples"]["positive_rate"] - 0.25) < 0.005
    b = prepare(default_file, PipelineConfig(positive_rate=0.25))
    c = prepare(default_file, PipelineConfig(positive_rate=0.25, seed=1))
    for k in a.train:
        np.testing.assert_array_equal(a.train[k], b.train[k])
    assert not np.array_equal(a.train["item"], c.train["item"])


@pytest.mark.parametrize("scheme", P.NEGATIVE_SCHEMES)
def test_negative_is_never_a_clicked_nor_a_future_item(tmp_path, scheme):
    """User 1 clicked items 1 to 4 on day 0; item 5 (clicked by user 2 first) is the only item seen up to
    each of user 1's samples that user 1 never clicked; item 6 appears only after them."""
    rows = [(2, 5, 1, "pv", T0 + 50)]
    rows += [(1, i, 1, "pv", T0 + 100 * i) for i in (1, 2, 3, 4)]
    rows += [
        (1, 1, 1, "pv", T0 + DAY + 100),
        (1, 2, 1, "pv", T0 + DAY + 200),
        (2, 6, 1, "pv", T0 + DAY + 500),
    ]
    config = PipelineConfig(
        negative_scheme=scheme,
        positive_rate=0.5,
        negative_max_tries=80,
        oov_min_count=1,
        vocabulary="all-days",
    )
    data = prepare(write_rows(tmp_path / "d.csv", rows), config)
    for split in (data.train, data.valid):
        user1_negatives = (_raw(data.id_maps.users, split["user"]) == 1) & (split["label"] == 0)
        assert user1_negatives.sum() >= 2
        assert (
            _raw(data.id_maps.items, split["item"][user1_negatives]).tolist() == [5] * user1_negatives.sum()
        )
    # 8 clicks; user 2's first click has no candidate (the only item seen by then is its own)
    assert data.stats["samples"]["negatives_unfilled"] == 1 and data.stats["samples"]["negatives_drawn"] == 7


def _append_rows(path, out, rows):
    out.write_bytes(path.read_bytes() + "".join(",".join(map(str, r)) + "\n" for r in rows).encode())
    return out


@pytest.mark.parametrize("scheme", P.NEGATIVE_SCHEMES)
def test_no_future_information(tmp_path, default_file, default_events, scheme):
    """Rows on the validation day change nothing in the training split or the id maps."""
    config = PipelineConfig(negative_scheme=scheme, max_samples_per_user=40)
    base = prepare(default_file, config)
    last_day_start = T0 + 8 * DAY
    users = default_events["user_id"].unique()[:50]
    future = [
        (int(u), 9_000_000 + i, 777_777, b, last_day_start + 3600 + i)
        for i, u in enumerate(users)
        for b in ("pv", "pv", "buy")
    ]
    future += [(99_999_999, 10, 10, "pv", last_day_start + 7200)]  # a user seen only on the last day
    changed = prepare(_append_rows(default_file, tmp_path / "more.csv", future), config)
    for k in base.train:
        np.testing.assert_array_equal(base.train[k], changed.train[k])
    assert base.meta == changed.meta
    assert changed.stats["valid"]["samples"] > base.stats["valid"]["samples"]
    # the future items reach validation histories only, as the out-of-vocabulary id
    np.testing.assert_array_equal(base.id_maps.items, changed.id_maps.items)
    assert not np.isin(9_000_000 + np.arange(len(users)), changed.id_maps.items).any()
    later = changed.valid["timestamp"] > last_day_start + 3600 + 60
    assert (changed.valid["hist_items"][later] == OOV_ID).sum() > (base.valid["hist_items"] == OOV_ID).sum()
    positions = np.arange(changed.train["hist_items"].shape[1])
    valid_positions = positions[None, :] < changed.train["hist_len"][:, None]
    assert (changed.train["hist_items"][valid_positions] != PAD_ID).all()
    assert (changed.train["hist_items"][~valid_positions] == PAD_ID).all()


def test_histories_match_a_plain_pandas_oracle(default_file, default_events):
    data = prepare(default_file, PipelineConfig(max_len=50))
    maps = data.id_maps
    clicks = default_events[default_events["behavior_type"] == "pv"]
    by_user = {u: g for u, g in clicks.groupby("user_id", sort=False)}
    rng = np.random.default_rng(0)
    for split in (data.train, data.valid):
        for i in rng.choice(len(split["user"]), size=60, replace=False):
            user = _raw(maps.users, split["user"][i])
            if user < 0:
                continue
            past = by_user[user]
            past = past[past["timestamp"] < split["timestamp"][i]].tail(50)  # file order = time order
            expected = P.IdMaps.lookup(maps.items, past["item_id"].to_numpy())
            n = int(split["hist_len"][i])
            assert n == len(past)
            np.testing.assert_array_equal(split["hist_items"][i, :n], expected)
            np.testing.assert_array_equal(
                split["hist_cats"][i, :n], P.IdMaps.lookup(maps.categories, past["category_id"].to_numpy())
            )


def test_id_maps_fitted_on_training_split(default_file):
    data = prepare(default_file, PipelineConfig())
    train = data.train
    for key, size in (
        ("user", data.meta.num_users),
        ("item", data.meta.num_items),
        ("category", data.meta.num_categories),
    ):
        used = np.unique(
            np.concatenate([train[key]] + ([train[f"hist_{key}s"].ravel()] if key != "user" else []))
            if key != "category"
            else np.concatenate([train["category"], train["hist_cats"].ravel()])
        )
        # contiguous, every own row used; the out-of-vocabulary row trains on the rare training items
        np.testing.assert_array_equal(used[used >= FIRST_ID], np.arange(FIRST_ID, size))
        assert key != "item" or OOV_ID in used
    assert (data.valid["item"] == OOV_ID).any() and (data.valid["item"] < data.meta.num_items).all()


def test_user_fraction_and_caps(default_file):
    full = prepare(default_file, PipelineConfig(oov_min_count=1))
    half = prepare(default_file, PipelineConfig(user_fraction=0.5, oov_min_count=1))
    assert 0.35 < half.meta.num_users / full.meta.num_users < 0.65
    assert half.stats["read"]["users"] == pytest.approx(half.meta.num_users - FIRST_ID, abs=5)
    capped = prepare(default_file, PipelineConfig(max_samples_per_user=10, positive_rate=1.0))
    _, per_user = np.unique(capped.train["user"], return_counts=True)
    assert per_user.max() <= 10 and (per_user == 10).mean() > 0.5
    small = prepare(default_file, PipelineConfig(max_train_samples=20_000))
    assert 19_000 < small.stats["train"]["samples"] <= 20_000
    assert set(_raw(small.id_maps.users, small.valid["user"])) - {-1} <= set(small.id_maps.users)


def test_stats_per_step_saved_as_json(tmp_path, default_file):
    data = prepare(default_file, PipelineConfig(category_filter=True))
    for step in ("read", "clicks", "samples", "nonempty_history", "category_filter", "train", "valid"):
        assert step in data.stats
    s = data.stats["train"]
    assert {
        "samples",
        "users",
        "items",
        "categories",
        "positive_rate",
        "history_length",
        "target_category_in_history",
    } <= set(s)
    assert s["history_length"]["max"] <= 50 and 0 < s["history_length"]["p50"] <= 50
    assert data.stats["read"]["behaviors"]["pv"] == data.stats["clicks"]["samples"]
    data.save_stats(tmp_path / "stats.json")
    saved = json.loads((tmp_path / "stats.json").read_text())
    assert saved["config"]["category_filter"] is True and saved["stats"]["train"]["samples"] == s["samples"]
    assert "cat in hist" in data.stats_table()


def test_config_validation_and_record():
    with pytest.raises(ValueError, match="negative_scheme"):
        PipelineConfig(negative_scheme="random")
    with pytest.raises(ValueError, match="positive_rate"):
        PipelineConfig(positive_rate=0.0)
    with pytest.raises(ValueError, match="user_fraction"):
        PipelineConfig(user_fraction=1.5)
    with pytest.raises(ValueError, match="max_len"):
        PipelineConfig(max_len=0)
    record = PipelineConfig().to_dict()
    assert (
        record["negative_scheme"] == "uniform" and record["max_len"] == 50 and record["positive_rate"] == 0.4
    )
    assert json.loads(json.dumps(record)) == record
    assert PipelineConfig().negatives_per_positive == pytest.approx(1.5)


def test_empty_results_are_clear_errors(tmp_path):
    only_buys = write_rows(tmp_path / "b.csv", [(1, 2, 3, "buy", T0 + 1)])
    with pytest.raises(ValueError, match="no click"):
        prepare(only_buys, PipelineConfig())
    outside = write_rows(tmp_path / "o.csv", [(1, 2, 3, "pv", T0 - 100)])
    with pytest.raises(ValueError, match="no valid rows"):
        prepare(outside, PipelineConfig())
    one_day = write_rows(tmp_path / "one.csv", [(1, 2, 3, "pv", T0 + 1), (1, 3, 3, "pv", T0 + 2)])
    with pytest.raises(ValueError, match="training split is empty"):
        prepare(one_day, PipelineConfig())


def test_hash_uniform_is_stable_and_uniform():
    keys = np.arange(200_000)
    u = P.hash_uniform(0, 1, keys)
    assert np.array_equal(u[:1000], P.hash_uniform(0, 1, keys[:1000]))  # each value depends on its key only
    assert not np.array_equal(u, P.hash_uniform(1, 1, keys))
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    assert np.abs(counts / 10_000 - 1).max() < 0.05
    assert BEHAVIORS[0] == "pv"
