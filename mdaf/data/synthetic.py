"""A Taobao-like synthetic ``UserBehavior.csv``: same format, realistic statistics, planted signal.

What it reproduces (measured on the real sample in ``shared/data``): rows grouped by user in the
string order of user ids, each user's rows time-sorted; log-normal rows per user (median about
three quarters of the mean, minimum 4); sessions with a daily rhythm over ``days`` days in UTC+8
starting 2017-11-25, busier on the last two days; Zipf item popularity with items nested in
categories of Zipf sizes; behaviours pv 89.5%, cart 5.5%, fav 3%, buy 2% where a non-pv event
repeats a recently viewed item; a few re-views; about 0.04% of timestamps outside the window.

Planted signal, both kinds, so that a model using both beats either alone:

- static: every user has a few favourite categories with stable weights; a share of clicks (more
  at the start of a session) goes to them, whatever the user did recently;
- sequential: interest drifts through recently clicked categories: within a session the user
  mostly stays in the current category, or moves to one of its related categories (a fixed sparse
  category graph), so the next click's category is predictable from the last few clicks only.

Everything is drawn from one ``numpy`` generator seeded by ``seed``: the same arguments give the
same bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from mdaf.data.reader import BEHAVIORS, OFFICIAL_WINDOW

DAY = 86_400
# Event modes: keep the category, drift to a related one, go to a favourite, or anything popular.
_STAY, _DRIFT, _FAVOURITE, _RANDOM = range(4)
_MODES_IN_SESSION = (0.55, 0.15, 0.2, 0.1)
_MODES_NEW_SESSION = (0.10, 0.30, 0.4, 0.2)
_MODES_FIRST_EVENT = (0.0, 0.0, 0.6, 0.4)
_BEHAVIOR_MIX = {"pv": 0.895, "buy": 0.02, "cart": 0.055, "fav": 0.03}
_REVIEW_RATE = 0.06  # a pv that re-views the item just seen
_SESSION_GAP = 1800  # seconds without activity that start a new session
_HOUR_WEIGHTS = np.array(
    [3, 1.5, 1, 0.7, 0.6, 0.7, 1.2, 2.5, 4, 5, 5.5, 5.5, 5.5, 5.5, 5.5, 5.5, 5.5, 6, 6.5, 7.5, 9, 10, 9, 6],
    dtype=np.float64,
)

DEFAULT_SIZE = {"users": 220, "items": 3000, "categories": 60, "days": 9, "seed": 0}
"""The embedded default: about 21k rows, giving about 41k training and 6k validation samples with the
default pipeline (small enough to train two models for a couple of epochs on two CPU cores)."""


def _bounded_zipf(rng: np.random.Generator, n: np.ndarray, exponent: float) -> np.ndarray:
    """Ranks in ``[0, n)`` with P(rank k) roughly proportional to (k + 1)^-exponent (inverse CDF)."""
    u = rng.random(np.shape(n))
    top = np.power(np.asarray(n, dtype=np.float64) + 1.0, 1.0 - exponent)
    x = np.power(1.0 + u * (top - 1.0), 1.0 / (1.0 - exponent))
    return np.minimum(np.floor(x).astype(np.int64) - 1, np.asarray(n) - 1)


def _distinct_ids(rng: np.random.Generator, count: int, spread: int) -> np.ndarray:
    """``count`` distinct positive ids scattered over ``[1, count * spread]`` (ids are not contiguous)."""
    return rng.choice(count * spread, size=count, replace=False).astype(np.int64) + 1


def _modes(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    cumulative = np.cumsum(probabilities, axis=-1)
    return (rng.random(probabilities.shape[0])[:, None] >= cumulative[:, :-1]).sum(axis=1)


def generate_events(
    *,
    users: int,
    items: int,
    categories: int,
    days: int = 9,
    seed: int = 0,
    rows_per_user: float = 100.0,
    out_of_window_rate: float = 0.0004,
    start: int = OFFICIAL_WINDOW[0],
) -> pd.DataFrame:
    """The synthetic events as a DataFrame in file order (see the module docstring)."""
    if users < 1 or categories < 1 or items < categories or days < 1:
        raise ValueError(
            f"need users >= 1, 1 <= categories <= items, days >= 1; got users={users}, "
            f"items={items}, categories={categories}, days={days}"
        )
    rng = np.random.default_rng(seed)
    # categories of Zipf sizes, items nested in them (contiguous internal ranges)
    cat_weight = 1.0 / np.arange(1, categories + 1) ** 0.9
    cat_weight /= cat_weight.sum()
    cat_size = 1 + rng.multinomial(items - categories, cat_weight)
    cat_start = np.concatenate([[0], np.cumsum(cat_size)[:-1]])
    related = rng.choice(categories, size=(categories, 3), p=cat_weight)
    # users: favourite categories with stable weights
    favourites = rng.choice(categories, size=(users, 3), p=cat_weight)
    fav_weight = rng.dirichlet(np.ones(3), size=users)
    median = 0.75 * rows_per_user
    sigma = np.sqrt(2.0 * np.log(rows_per_user / median))
    counts = np.maximum(np.rint(rng.lognormal(np.log(median), sigma, size=users)).astype(np.int64), 4)
    user = np.repeat(np.arange(users), counts)
    n = user.size
    first_of_user = np.r_[True, user[1:] != user[:-1]]

    # time: sessions placed on a day (busier at the end) and an hour (daily rhythm)
    session_flag = first_of_user | (rng.random(n) < 1 / 8)
    session = np.cumsum(session_flag) - 1
    n_sessions = int(session[-1]) + 1
    day_weight = np.ones(days)
    day_weight[-2:] *= 1.3
    session_day = rng.choice(days, size=n_sessions, p=day_weight / day_weight.sum())
    session_hour = rng.choice(24, size=n_sessions, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    session_start = session_day * DAY + session_hour * 3600 + rng.integers(0, 3600, size=n_sessions)
    gap = rng.exponential(90.0, size=n).astype(np.int64) + 1
    gap[session_flag] = 0
    elapsed = np.cumsum(gap)
    offset = elapsed - elapsed[np.flatnonzero(session_flag)][session]
    seconds = np.minimum(session_start[session] + offset, days * DAY - 1)
    order = np.lexsort((seconds, user))
    seconds = seconds[order]
    new_session = first_of_user | np.r_[True, np.diff(seconds) > _SESSION_GAP]

    # categories, in time order per user: a Markov chain mixed with static favourites
    probabilities = np.where(new_session[:, None], _MODES_NEW_SESSION, _MODES_IN_SESSION)
    probabilities[first_of_user] = _MODES_FIRST_EVENT
    mode = _modes(rng, probabilities)
    fav_pick = (rng.random(n)[:, None] >= np.cumsum(fav_weight, axis=1)[user, :-1]).sum(axis=1)
    fresh = np.where(
        mode == _FAVOURITE, favourites[user, fav_pick], rng.choice(categories, size=n, p=cat_weight)
    )
    drift_pick = rng.integers(0, related.shape[1], size=n)
    category = fresh.copy()
    position = np.arange(n) - np.flatnonzero(first_of_user)[np.cumsum(first_of_user) - 1]
    by_position = np.argsort(position, kind="stable")
    bounds = np.searchsorted(position[by_position], np.arange(position.max() + 2))
    for k in range(1, position.max() + 1):  # one step of every user's chain at a time
        idx = by_position[bounds[k] : bounds[k + 1]]
        previous = category[idx - 1]
        m = mode[idx]
        category[idx] = np.where(
            m == _STAY, previous, np.where(m == _DRIFT, related[previous, drift_pick[idx]], fresh[idx])
        )
    item = cat_start[category] + _bounded_zipf(rng, cat_size[category], 1.1)

    # behaviours: a non-pv event (and a re-view) repeats the item of the user's last fresh view
    behavior = rng.choice(len(BEHAVIORS), size=n, p=[_BEHAVIOR_MIX[b] for b in BEHAVIORS]).astype(np.int8)
    behavior[first_of_user] = 0
    repeat = ((behavior != 0) | (rng.random(n) < _REVIEW_RATE)) & ~first_of_user
    source = np.maximum.accumulate(np.where(repeat, 0, np.arange(n)))
    item, category = item[source], category[source]

    # a few timestamps outside the window, as in the official file
    timestamp = start + seconds
    outside = rng.random(n) < out_of_window_rate
    timestamp[outside] = start - rng.integers(1, 75 * DAY, size=int(outside.sum()))
    # raw ids: scattered, and the file lists users in the string order of their ids
    user_ids, item_ids = _distinct_ids(rng, users, 2), _distinct_ids(rng, items, 2)
    category_ids = _distinct_ids(rng, categories, 50)
    user_rank = np.argsort(np.argsort(user_ids.astype(str), kind="stable"))
    final = np.lexsort((timestamp, user_rank[user]))
    return pd.DataFrame(
        {
            "user_id": user_ids[user][final],
            "item_id": item_ids[item][final],
            "category_id": category_ids[category][final],
            "behavior_type": pd.Categorical.from_codes(behavior[final], categories=BEHAVIORS),
            "timestamp": timestamp[final],
        }
    )


def generate_synthetic(
    path: str | os.PathLike,
    *,
    users: int = 10_000,
    items: int = 50_000,
    categories: int = 500,
    days: int = 9,
    seed: int = 0,
    **kwargs,
) -> Path:
    """Write a synthetic file in the official format (gzip when ``path`` ends in ``.gz``); returns the path.

    About 100 rows per user (``rows_per_user``). ``kwargs`` go to :func:`generate_events`.
    The file is written to a temporary name and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    frame = generate_events(users=users, items=items, categories=categories, days=days, seed=seed, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as raw:
            # no name and no time in the gzip header, so the bytes depend on the arguments only
            out = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if path.suffix == ".gz" else raw
            with out if out is not raw else contextlib.nullcontext():
                frame.to_csv(out, header=False, index=False, lineterminator="\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def default_dataset(directory: str | os.PathLike) -> Path:
    """The embedded default data (:data:`DEFAULT_SIZE`), generated into ``directory`` once and reused.

    Sized so that the main example (pipeline + two models for a couple of epochs) runs in minutes
    on two CPU cores.
    """
    path = Path(directory) / "taobao_synthetic_default.csv"
    if not path.is_file():
        generate_synthetic(path, **DEFAULT_SIZE)
    return path
