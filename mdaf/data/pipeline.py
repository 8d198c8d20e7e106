"""The MDAF paper's preprocessing (section 5.1.1), one function per step, all vectorised NumPy.

Steps, in order (:func:`prepare` in :mod:`mdaf.data.prepare` chains them and keeps statistics):

1. :func:`extract_clicks` + :func:`positive_samples` + :func:`sample_negatives`: every ``pv``
   event is a positive; each gets negatives at the ratio giving ``positive_rate`` (0.4: 1.5
   negatives per positive, the fraction drawn per positive with the seed). A negative shares its
   positive's user, time and history; it is never an item the user clicked up to the end of the
   sample's day (so never one clicked before the sample, on any day, nor one in its history), and
   it is drawn only from items seen up to the sample's time. The scheme decides the pool
   (:data:`NEGATIVE_POOLS`): ``"uniform"`` over items (the paper's wording, default),
   ``"popularity"`` (over click events), ``"history-category"`` (hard negatives).
2. :func:`attach_histories`: the user's clicks strictly before the sample's time, the most
   recent ``max_len`` (right-padded, oldest first: :mod:`mdaf.schema`).
3. :func:`drop_empty_history`.
4. :func:`filter_category` (optional): keep a sample only if its target's category is in its history.
5. :func:`temporal_split`: the last ``validation_days`` calendar days are validation, earlier train.

No future information: a history holds only clicks strictly before its sample; negatives come
from items (or clicks) seen up to the sample's time; all randomness is a hash of
``(seed, user, time, item, ...)``, so adding rows on later days changes no earlier sample; the
default vocabulary is fitted on the training split alone (:func:`fit_id_maps`), with a trained
out-of-vocabulary id for rare and unseen ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import MISSING, asdict, dataclass, fields

import numpy as np

from mdaf.data.reader import OFFICIAL_WINDOW
from mdaf.schema import FIRST_ID, OOV_ID, PAD_ID

NEGATIVE_POOLS = {
    "uniform": "every item seen in any event (any user, any behaviour) up to the sample's time, uniformly",
    "popularity": "click events of any user up to the sample's time (items in proportion to their clicks)",
    "history-category": "items seen up to the sample's time in the category of a click drawn uniformly from"
    " the sample's history (hard negatives)",
}
"""Where each negative scheme draws from; every scheme then excludes the items the user clicked up to
the end of the sample's day."""
NEGATIVE_SCHEMES = tuple(NEGATIVE_POOLS)
VOCABULARIES = {
    "train": "ids fitted on the training days; ids seen fewer than oov_min_count times there, and every"
    " id first seen later, share the out-of-vocabulary id (trained on the rare training ids)",
    "all-days": "transductive: ids counted over every day, validation included (validation-only ids get"
    " rows that no training sample trains); for comparison only",
}
SECONDS_PER_DAY = 86_400
_CHUNK_ROWS = 16384

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class PipelineConfig:
    """Every parameter of the pipeline; the defaults follow the MDAF paper (section 5.1.1).

    ``max_samples_per_user`` caps the positives (clicks) kept per user in each split, chosen at
    random with the seed; their negatives follow at the ratio. ``max_train_samples`` drops whole
    users (in a seeded random order) until the training split fits. The real head sample gives
    about 200 training samples per user, so on the full file (988k users) ``user_fraction=0.005``
    gives about the paper's 1 M; ``user_fraction=0.01, max_train_samples=1_000_000`` hits it exactly.
    """

    max_len: int = 50
    negative_scheme: str = "uniform"
    positive_rate: float = 0.4
    category_filter: bool = False
    user_fraction: float = 1.0
    max_samples_per_user: int | None = None
    max_train_samples: int | None = None
    validation_days: int = 1
    window: tuple[int, int] | None = OFFICIAL_WINDOW
    utc_offset_hours: int = 8
    negative_max_tries: int = 10
    vocabulary: str = "train"
    oov_min_count: int = 5
    seed: int = 0

    def __post_init__(self):
        if self.negative_scheme not in NEGATIVE_SCHEMES:
            raise ValueError(
                f"negative_scheme must be one of {NEGATIVE_SCHEMES}, got {self.negative_scheme!r}"
            )
        if self.vocabulary not in VOCABULARIES:
            raise ValueError(f"vocabulary must be one of {tuple(VOCABULARIES)}, got {self.vocabulary!r}")
        if not 0.0 < self.positive_rate <= 1.0:
            raise ValueError(f"positive_rate must be in (0, 1], got {self.positive_rate}")
        if not 0.0 < self.user_fraction <= 1.0:
            raise ValueError(f"user_fraction must be in (0, 1], got {self.user_fraction}")
        for name in ("max_len", "validation_days", "negative_max_tries", "oov_min_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_samples_per_user", "max_train_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be None or >= 1, got {value}")
        if self.window is not None:
            object.__setattr__(self, "window", (int(self.window[0]), int(self.window[1])))

    @property
    def negatives_per_positive(self) -> float:
        return (1.0 - self.positive_rate) / self.positive_rate

    def to_dict(self) -> dict:
        out = asdict(self)
        out["window"] = list(self.window) if self.window is not None else None
        return out


# ----------------------------------------------------------------------------- seeded hashing
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective scramble of uint64."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, salt: int, *keys: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1), one per element, a pure function of ``(seed, salt, keys)``.

    Counter-based randomness: a sample's draws depend on its own keys only, never on how many
    other rows were read before it, so results are stable when unrelated rows change.
    """
    with np.errstate(over="ignore"):
        shape = np.broadcast_shapes(*(np.shape(k) for k in keys))
        h = np.full(shape, _mix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _GOLDEN + np.uint64(salt)))
        for key in keys:
            h = _mix64(h ^ (np.asarray(key).astype(np.int64).view(np.uint64) + _GOLDEN))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


_SALT_USERS, _SALT_CAP, _SALT_COUNT, _SALT_NEG, _SALT_HISTPOS, _SALT_TRAIN_USERS = range(1, 7)


def select_users(user_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Mask of users kept by a seeded hash: the same user is always in or out for a seed."""
    if fraction >= 1.0:
        return np.ones(np.shape(user_ids), dtype=bool)
    return hash_uniform(seed, _SALT_USERS, user_ids) < fraction


# ----------------------------------------------------------------------------- step 1: clicks
def day_index(timestamps: np.ndarray, utc_offset_hours: int) -> np.ndarray:
    """Calendar day number (days since 1970-01-01 in the data's time zone)."""
    return (np.asarray(timestamps, dtype=np.int64) + utc_offset_hours * 3600) // SECONDS_PER_DAY


@dataclass
class Clicks:
    """All ``pv`` events sorted by (user, time, file order), with a search key per click."""

    user: np.ndarray
    item: np.ndarray
    category: np.ndarray
    timestamp: np.ndarray
    users: np.ndarray  # sorted distinct users (codes index into this)
    t0: int
    span: int

    def key(self, user: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
        """(user, time) as one int64 that sorts like the pair; unknown users get -1 keys."""
        code = np.searchsorted(self.users, user)
        code = np.where(
            (code < self.users.size) & (self.users[np.minimum(code, self.users.size - 1)] == user), code, -1
        )
        return code * self.span + (np.asarray(timestamp, dtype=np.int64) - self.t0)

    @property
    def keys(self) -> np.ndarray:
        return self.key(self.user, self.timestamp)


def extract_clicks(events: Arrays) -> Clicks:
    """The ``pv`` events (behaviour code 0) of an events table (user, item, category, timestamp, behavior)."""
    is_click = np.asarray(events["behavior"]) == 0
    user, item = events["user"][is_click], events["item"][is_click]
    category, timestamp = events["category"][is_click], events["timestamp"][is_click]
    order = np.lexsort((np.arange(user.size), timestamp, user))
    user, item, category, timestamp = (
        np.asarray(a, dtype=np.int64)[order] for a in (user, item, category, timestamp)
    )
    users = np.unique(user)
    t0 = int(timestamp.min()) if timestamp.size else 0
    span = int(timestamp.max()) - t0 + 2 if timestamp.size else 1
    if users.size * span >= 2**62:
        raise ValueError("time span times user count overflows the int64 search key")
    return Clicks(user, item, category, timestamp, users, t0, span)


def positive_samples(clicks: Clicks, config: PipelineConfig, last_day: int) -> Arrays:
    """One positive sample per click, capped by ``max_samples_per_user`` per user and split."""
    samples = {
        "user": clicks.user,
        "item": clicks.item,
        "category": clicks.category,
        "timestamp": clicks.timestamp,
        "label": np.ones(clicks.user.size, dtype=np.int8),
    }
    samples["day"] = day_index(clicks.timestamp, config.utc_offset_hours)
    cap = config.max_samples_per_user
    if cap is not None and clicks.user.size:
        in_valid = samples["day"] > last_day - config.validation_days
        priority = hash_uniform(config.seed, _SALT_CAP, clicks.user, clicks.timestamp, clicks.item)
        order = np.lexsort((priority, in_valid, clicks.user))
        group = np.stack([clicks.user[order], in_valid[order]])
        starts = np.flatnonzero(np.r_[True, (group[:, 1:] != group[:, :-1]).any(axis=0)])
        rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
        keep = np.zeros(order.size, dtype=bool)
        keep[order[rank < cap]] = True
        samples = take(samples, keep)
    return samples


def take(samples: Arrays, index: np.ndarray) -> Arrays:
    """Rows of every array (a boolean mask or an index array)."""
    return {k: v[index] for k, v in samples.items()}


def concat(*parts: Arrays) -> Arrays:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ----------------------------------------------------------------------------- step 2: histories
def attach_histories(samples: Arrays, clicks: Clicks, max_len: int) -> Arrays:
    """Add ``hist_end`` (index past the last history click) and ``hist_len`` (at most ``max_len``).

    The history of a sample is its user's clicks with a timestamp strictly before the sample's,
    so a click never sees itself or another click in the same second.
    """
    keys = clicks.keys
    sample_keys = clicks.key(samples["user"], samples["timestamp"])
    end = np.searchsorted(keys, sample_keys, side="left")
    code = sample_keys // clicks.span
    start = np.searchsorted(keys, code * clicks.span, side="left")
    length = np.where(code >= 0, np.minimum(end - start, max_len), 0)
    return {**samples, "hist_end": end.astype(np.int64), "hist_len": length.astype(np.int64)}


def history_positions(samples: Arrays, max_len: int, padding: int) -> np.ndarray:
    """Click indices (n, max_len) of each history, oldest first; padded positions hold ``padding``
    (index a table with one extra entry at ``padding`` to read padding values without a mask)."""
    pos = np.arange(max_len)
    length = samples["hist_len"][:, None]
    index = samples["hist_end"][:, None] - length + pos[None, :]
    index[pos[None, :] >= length] = padding
    return index


# ----------------------------------------------------------------------------- step 1: negatives
@dataclass
class ItemPools:
    """Items by the time they were first seen, so a negative never comes from the sample's future."""

    items: np.ndarray  # sorted by (first seen, item id)
    item_category: np.ndarray
    item_first_seen: np.ndarray
    by_cat_items: np.ndarray  # sorted by (category, first seen, item)
    by_cat_key: np.ndarray  # category code * span + (first seen - t0), aligned with by_cat_items
    categories: np.ndarray  # sorted distinct categories of items
    click_items_by_time: np.ndarray  # clicked items sorted by click time
    click_times: np.ndarray
    t0: int
    span: int

    def first_seen(self, item: np.ndarray) -> np.ndarray:
        """The time each item was first seen in any event (every item drawn is in the pools)."""
        order = np.argsort(self.items, kind="stable")
        found = np.searchsorted(self.items[order], item)
        return self.item_first_seen[order][np.minimum(found, max(self.items.size - 1, 0))]


def item_pools(events: Arrays, clicks: Clicks) -> ItemPools:
    """Pools of candidate negatives; an item's category is the one of its first event."""
    item, ts = np.asarray(events["item"], dtype=np.int64), np.asarray(events["timestamp"], dtype=np.int64)
    order = np.lexsort((np.arange(item.size), ts, item))
    first = order[np.r_[True, item[order][1:] != item[order][:-1]]]
    items, first_seen = item[first], ts[first]
    category = np.asarray(events["category"], dtype=np.int64)[first]
    t0 = int(first_seen.min())
    span = int(first_seen.max()) - t0 + 1
    by_time = np.lexsort((items, first_seen))
    categories = np.unique(category)
    cat_code = np.searchsorted(categories, category)
    by_cat = np.lexsort((items, first_seen, cat_code))
    click_order = np.argsort(clicks.timestamp, kind="stable")
    return ItemPools(
        items[by_time],
        category[by_time],
        first_seen[by_time],
        items[by_cat],
        (cat_code * span + first_seen - t0)[by_cat],
        categories,
        clicks.item[click_order],
        clicks.timestamp[click_order],
        t0,
        span,
    )


def _draw(pools: ItemPools, scheme: str, u: np.ndarray, time: np.ndarray, hist_category: np.ndarray | None):
    """One candidate item per row (``u`` uniform in [0, 1)) among those seen up to ``time``; -1 where
    that pool is empty."""
    if scheme == "uniform":
        count = np.searchsorted(pools.item_first_seen, time, side="right")
        index = np.minimum((u * count).astype(np.int64), np.maximum(count - 1, 0))
        return np.where(count > 0, pools.items[index], -1)
    if scheme == "popularity":
        count = np.searchsorted(pools.click_times, time, side="right")
        index = np.minimum((u * count).astype(np.int64), np.maximum(count - 1, 0))
        return np.where(count > 0, pools.click_items_by_time[index], -1)
    code = np.searchsorted(pools.categories, hist_category)
    lo = np.searchsorted(pools.by_cat_key, code * pools.span, side="left")
    offset = np.clip(time - pools.t0, -1, pools.span - 1)  # -1: before every item of the category
    hi = np.searchsorted(pools.by_cat_key, code * pools.span + offset, side="right")
    index = lo + np.minimum((u * (hi - lo)).astype(np.int64), np.maximum(hi - lo - 1, 0))
    return np.where(hi > lo, pools.by_cat_items[np.minimum(index, pools.by_cat_items.size - 1)], -1)


@dataclass
class FirstClicks:
    """When each user first clicked each item: sorted (user, item) keys and the first click time."""

    keys: np.ndarray
    first_time: np.ndarray

    @classmethod
    def of(cls, clicks: Clicks) -> FirstClicks:
        key = _user_item_key(clicks.user, clicks.item)
        order = np.lexsort((clicks.timestamp, key))
        key, time = key[order], clicks.timestamp[order]
        first = np.r_[True, key[1:] != key[:-1]]
        return cls(key[first], time[first])

    def time_of(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """The user's first click on the item, or the largest int64 where there is none."""
        key = _user_item_key(user, item)
        found = np.minimum(np.searchsorted(self.keys, key), max(self.keys.size - 1, 0))
        hit = (self.keys.size > 0) & (self.keys[found] == key)
        return np.where(hit, self.first_time[found], np.iinfo(np.int64).max)


def sample_negatives(
    positives: Arrays, clicks: Clicks, pools: ItemPools, config: PipelineConfig
) -> tuple[Arrays, dict]:
    """Negatives for positives with histories attached: returns positives + negatives, and counts.

    Each positive gets ``floor(r)`` negatives plus one more with probability ``frac(r)``, where
    ``r = (1 - positive_rate) / positive_rate``. A candidate the user clicked at any time up to the
    end of the sample's day (any earlier day included, so also any history item) is redrawn
    (``negative_max_tries`` times, then the negative is dropped and counted). ``history-category``
    needs a history: positives with an empty one draw uniformly instead (step 3 drops them anyway).
    """
    ratio = config.negatives_per_positive
    whole, frac = int(np.floor(ratio)), ratio - np.floor(ratio)
    extra = (
        hash_uniform(config.seed, _SALT_COUNT, positives["user"], positives["timestamp"], positives["item"])
        < frac
    )
    count = whole + extra.astype(np.int64)
    parent = np.repeat(np.arange(positives["user"].size), count)
    slot = np.arange(parent.size) - np.repeat(np.cumsum(count) - count, count)
    neg = take(positives, parent)
    neg["label"] = np.zeros(parent.size, dtype=np.int8)
    first_clicks = FirstClicks.of(clicks)
    # the first second of the day after the sample's (calendar days in the data's time zone)
    day_end = (neg["day"] + 1) * SECONDS_PER_DAY - config.utc_offset_hours * 3600
    item = np.full(parent.size, -1, dtype=np.int64)
    pending = np.arange(parent.size)
    for attempt in range(config.negative_max_tries):
        if pending.size == 0:
            break
        keys = (neg["user"][pending], neg["timestamp"][pending], neg["item"][pending], slot[pending])
        u = hash_uniform(config.seed, _SALT_NEG + 16 * attempt, *keys)
        time = neg["timestamp"][pending]
        scheme = config.negative_scheme
        if scheme == "history-category":
            with_history = neg["hist_len"][pending] > 0
            pick = hash_uniform(config.seed, _SALT_HISTPOS + 16 * attempt, *keys)
            position = neg["hist_end"][pending] - 1 - (pick * neg["hist_len"][pending]).astype(np.int64)
            hist_category = np.where(
                with_history, clicks.category[np.clip(position, 0, clicks.category.size - 1)], -1
            )
            candidate = np.where(
                with_history,
                _draw(pools, scheme, u, time, hist_category),
                _draw(pools, "uniform", u, time, None),
            )
        else:
            candidate = _draw(pools, scheme, u, time, None)
        was_clicked = first_clicks.time_of(neg["user"][pending], candidate) < day_end[pending]
        ok = (candidate >= 0) & ~was_clicked
        item[pending[ok]] = candidate[ok]
        pending = pending[~ok]
    filled = item >= 0
    neg["item"] = item
    neg["category"] = _category_of(pools, item)
    neg = take(neg, filled)
    counts = {"negatives_drawn": int(filled.sum()), "negatives_unfilled": int((~filled).sum())}
    return concat(positives, neg), counts


def negative_audit(samples: Arrays, clicks: Clicks, pools: ItemPools, max_len: int) -> dict:
    """Shares of the negatives that break the protocol (all 0 by construction; measured, not assumed):
    an item the user clicked before the sample's time (any day), an item in the sample's history,
    an item first seen after the sample's time (look-ahead in the pool)."""
    neg = take(samples, samples["label"] == 0)
    n = neg["user"].size
    if n == 0:
        return {"negatives": 0}
    clicked_before = FirstClicks.of(clicks).time_of(neg["user"], neg["item"]) < neg["timestamp"]
    in_history = _target_in_history(neg, clicks.item, neg["item"], max_len)
    look_ahead = pools.first_seen(neg["item"]) > neg["timestamp"]
    return {
        "negatives": int(n),
        "clicked_before_sample": float(clicked_before.mean()),
        "in_history": float(in_history.mean()),
        "first_seen_after_sample": float(look_ahead.mean()),
    }


def _category_of(pools: ItemPools, item: np.ndarray) -> np.ndarray:
    order = np.argsort(pools.items, kind="stable")
    found = np.searchsorted(pools.items[order], item)
    return pools.item_category[order][np.minimum(found, max(pools.items.size - 1, 0))]


def _user_item_key(user: np.ndarray, item: np.ndarray) -> np.ndarray:
    """(user, item) as one int64 via a scramble (a collision, about 2^-64 per pair, is negligible)."""
    with np.errstate(over="ignore"):
        h = _mix64(np.asarray(user).astype(np.int64).view(np.uint64) * _GOLDEN)
        h = _mix64(h ^ (np.asarray(item).astype(np.int64).view(np.uint64) + _GOLDEN))
    return h.view(np.int64)


# ----------------------------------------------------------------------------- steps 3 to 5
def drop_empty_history(samples: Arrays) -> Arrays:
    """Step 3: samples whose user clicked nothing before the sample's time are dropped."""
    return take(samples, samples["hist_len"] > 0)


def _target_in_history(samples: Arrays, click_values: np.ndarray, target: np.ndarray, max_len: int):
    """Whether each sample's ``target`` value is among its history's ``click_values`` (chunked)."""
    out = np.zeros(samples["user"].size, dtype=bool)
    padded = np.append(click_values, -1)  # -1 matches no id
    for lo in range(0, out.size, _CHUNK_ROWS):
        part = take(samples, slice(lo, lo + _CHUNK_ROWS))
        index = history_positions(part, max_len, padding=click_values.size)
        out[lo : lo + _CHUNK_ROWS] = (padded[index] == target[lo : lo + _CHUNK_ROWS, None]).any(axis=1)
    return out


def target_category_in_history(samples: Arrays, clicks: Clicks, max_len: int) -> np.ndarray:
    """Whether each sample's target category is among its history's categories."""
    return _target_in_history(samples, clicks.category, samples["category"], max_len)


def mark_category_in_history(samples: Arrays, clicks: Clicks, max_len: int) -> Arrays:
    """Add ``cat_in_hist`` (target category among the history's), computed once and carried along."""
    return {**samples, "cat_in_hist": target_category_in_history(samples, clicks, max_len)}


def filter_category(samples: Arrays, clicks: Clicks, max_len: int) -> Arrays:
    """Step 4 (optional): keep a sample only if its target's category appears in its history."""
    if "cat_in_hist" not in samples:
        samples = mark_category_in_history(samples, clicks, max_len)
    return take(samples, samples["cat_in_hist"])


def temporal_split(samples: Arrays, last_day: int, validation_days: int) -> tuple[Arrays, Arrays]:
    """Step 5: samples on the last ``validation_days`` calendar days (up to ``last_day``) are validation."""
    is_valid = samples["day"] > last_day - validation_days
    return take(samples, ~is_valid), take(samples, is_valid)


def limit_train_samples(train: Arrays, valid: Arrays, max_train_samples: int | None, seed: int):
    """Drop whole users (seeded random order) until the training split has at most ``max_train_samples``."""
    if max_train_samples is None or train["user"].size <= max_train_samples:
        return train, valid
    users, counts = np.unique(train["user"], return_counts=True)
    order = np.argsort(hash_uniform(seed, _SALT_TRAIN_USERS, users), kind="stable")
    kept = users[order][np.cumsum(counts[order]) <= max_train_samples]
    return take(train, np.isin(train["user"], kept)), take(valid, np.isin(valid["user"], kept))


def sort_samples(samples: Arrays) -> Arrays:
    """A deterministic order: by time, user, label (positive first) and item."""
    return take(
        samples, np.lexsort((samples["item"], -samples["label"], samples["user"], samples["timestamp"]))
    )


# ----------------------------------------------------------------------------- id maps
ID_MAPS_FORMAT = 1
"""Bump when :class:`IdMaps` changes the meaning of its fields (checkpoints store them)."""


@dataclass
class IdMaps:
    """Sorted raw ids that get their own rows: raw id ``r`` maps to ``FIRST_ID + position``, every
    other raw id to ``OOV_ID`` (:mod:`mdaf.schema`); ``PAD_ID`` is padding only."""

    users: np.ndarray
    items: np.ndarray
    categories: np.ndarray

    @staticmethod
    def lookup(table: np.ndarray, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.int64)
        if table.size == 0:
            return np.full(raw.shape, OOV_ID, dtype=np.int64)
        pos = np.searchsorted(table, raw)
        hit = (pos < table.size) & (table[np.minimum(pos, table.size - 1)] == raw)
        return np.where(hit, pos + FIRST_ID, OOV_ID).astype(np.int64)

    def sizes(self) -> tuple[int, int, int]:
        """Table sizes, the padding and out-of-vocabulary rows included."""
        return self.users.size + FIRST_ID, self.items.size + FIRST_ID, self.categories.size + FIRST_ID

    def to_dict(self) -> dict:
        """Every field (arrays stay NumPy) and :data:`ID_MAPS_FORMAT`: what travels with a model."""
        return {"format": ID_MAPS_FORMAT, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_dict(cls, values: dict) -> IdMaps:
        """The inverse of :meth:`to_dict`; arrays may come as anything ``np.asarray`` takes (tensors too)."""
        if values.get("format") != ID_MAPS_FORMAT:
            raise ValueError(
                f"id maps of format {values.get('format')!r}; this version reads {ID_MAPS_FORMAT}"
            )
        missing = [f.name for f in fields(cls) if f.name not in values and f.default is MISSING]
        if missing:
            raise ValueError(f"id maps lack {missing}")
        return cls(
            **{
                f.name: np.asarray(values[f.name]) if f.type in ("np.ndarray", np.ndarray) else values[f.name]
                for f in fields(cls)
                if f.name in values
            }
        )


def _clicks_in_histories(splits: Sequence[Arrays], clicks: Clicks) -> np.ndarray:
    """Mask of the clicks covered by at least one history of ``splits``."""
    size = clicks.user.size + 1  # +1: a history may end past the last click
    depth = np.zeros(size, dtype=np.int64)
    for split in splits:
        depth += np.bincount(split["hist_end"] - split["hist_len"], minlength=size)
        depth -= np.bincount(split["hist_end"], minlength=size)
    return np.cumsum(depth)[:-1] > 0


def fit_id_maps(splits: Sequence[Arrays], clicks: Clicks, min_count: int) -> IdMaps:
    """Ids seen at least ``min_count`` times in ``splits`` (the training split alone, or every split
    for the transductive vocabulary): a user counts its samples, an item or category its targets and
    the history clicks it appears in (each click once). Rarer ids share the out-of-vocabulary row,
    which therefore trains on them, like a production CTR model's hashed or default bucket."""
    used = _clicks_in_histories(splits, clicks)

    def frequent(*values: np.ndarray) -> np.ndarray:
        ids, counts = np.unique(np.concatenate(values), return_counts=True)
        return ids[counts >= min_count]

    return IdMaps(
        frequent(*(s["user"] for s in splits)),
        frequent(*(s["item"] for s in splits), clicks.item[used]),
        frequent(*(s["category"] for s in splits), clicks.category[used]),
    )


def oov_stats(split: Arrays, clicks: Clicks, maps: IdMaps) -> dict:
    """Shares of a split that map to the out-of-vocabulary id: users, target items of positives and of
    negatives, and the most recent history item (which hides repeat clicks when unknown)."""
    if split["user"].size == 0:
        return {}
    positive = split["label"] == 1
    target_oov = IdMaps.lookup(maps.items, split["item"]) == OOV_ID
    last = np.clip(split["hist_end"] - 1, 0, max(clicks.item.size - 1, 0))
    last_oov = (IdMaps.lookup(maps.items, clicks.item[last]) == OOV_ID)[split["hist_len"] > 0]
    return {
        "users": float((IdMaps.lookup(maps.users, split["user"]) == OOV_ID).mean()),
        "target_item_positives": float(target_oov[positive].mean()) if positive.any() else float("nan"),
        "target_item_negatives": float(target_oov[~positive].mean()) if (~positive).any() else float("nan"),
        "last_history_item": float(last_oov.mean()) if last_oov.size else float("nan"),
    }


def array_specs(max_len: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per batch-contract key: the shape of one row and the dtype (:mod:`mdaf.schema`)."""
    int64, row = np.dtype(np.int64), ()
    return {
        "user": (row, int64),
        "item": (row, int64),
        "category": (row, int64),
        "hist_items": ((max_len,), int64),
        "hist_cats": ((max_len,), int64),
        "hist_len": (row, int64),
        "label": (row, np.dtype(np.float32)),
        "timestamp": (row, int64),
    }


def materialize_chunks(samples: Arrays, clicks: Clicks, maps: IdMaps, max_len: int) -> Iterator[Arrays]:
    """The batch-contract arrays in consecutive row chunks (ids mapped, histories gathered), so a
    split larger than RAM can be written to disk piece by piece."""
    click_item = np.append(IdMaps.lookup(maps.items, clicks.item), PAD_ID)  # a last entry for padding
    click_cat = np.append(IdMaps.lookup(maps.categories, clicks.category), PAD_ID)
    for lo in range(0, samples["user"].size, _CHUNK_ROWS):
        part = take(samples, slice(lo, lo + _CHUNK_ROWS))
        index = history_positions(part, max_len, padding=clicks.user.size)
        yield {
            "user": IdMaps.lookup(maps.users, part["user"]),
            "item": IdMaps.lookup(maps.items, part["item"]),
            "category": IdMaps.lookup(maps.categories, part["category"]),
            "hist_items": click_item[index],
            "hist_cats": click_cat[index],
            "hist_len": part["hist_len"].astype(np.int64),
            "label": part["label"].astype(np.float32),
            "timestamp": part["timestamp"].astype(np.int64),
        }


def materialize(samples: Arrays, clicks: Clicks, maps: IdMaps, max_len: int) -> Arrays:
    """The batch-contract arrays of a split, in memory."""
    n = samples["user"].size
    out = {k: np.empty((n, *row), dtype=dtype) for k, (row, dtype) in array_specs(max_len).items()}
    lo = 0
    for chunk in materialize_chunks(samples, clicks, maps, max_len):
        hi = lo + chunk["user"].size
        for key, value in chunk.items():
            out[key][lo:hi] = value
        lo = hi
    return out


# ----------------------------------------------------------------------------- statistics
def sample_stats(samples: Arrays, clicks: Clicks | None, max_len: int) -> dict:
    """Table 1/6-style statistics of a sample set (raw ids)."""
    n = int(samples["user"].size)
    stats = {
        "samples": n,
        "users": int(np.unique(samples["user"]).size),
        "items": int(np.unique(samples["item"]).size),
        "categories": int(np.unique(samples["category"]).size),
        "positive_rate": float(samples["label"].mean()) if n else float("nan"),
    }
    if "hist_len" in samples and clicks is not None:
        lengths = samples["hist_len"]
        q = np.percentile(lengths, [25, 50, 75, 90]) if n else [float("nan")] * 4
        stats["history_length"] = {
            "mean": float(lengths.mean()) if n else float("nan"),
            "min": int(lengths.min(initial=0)),
            "p25": float(q[0]),
            "p50": float(q[1]),
            "p75": float(q[2]),
            "p90": float(q[3]),
            "max": int(lengths.max(initial=0)),
            "share_empty": float((lengths == 0).mean()) if n else float("nan"),
            "share_full": float((lengths == max_len).mean()) if n else float("nan"),
        }
        in_hist = samples.get("cat_in_hist")
        if in_hist is None:
            in_hist = target_category_in_history(samples, clicks, max_len)
        stats["target_category_in_history"] = float(in_hist.mean()) if n else float("nan")
    return stats


def event_stats(events: Arrays) -> dict:
    from mdaf.data.reader import BEHAVIORS

    n = int(events["user"].size)
    counts = np.bincount(np.asarray(events["behavior"], dtype=np.int64), minlength=len(BEHAVIORS))
    return {
        "rows": n,
        "users": int(np.unique(events["user"]).size),
        "items": int(np.unique(events["item"]).size),
        "categories": int(np.unique(events["category"]).size),
        "behaviors": {b: int(c) for b, c in zip(BEHAVIORS, counts, strict=True)},
    }
