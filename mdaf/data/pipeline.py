"""The MDAF paper's preprocessing (section 5.1.1), one function per step, all vectorised NumPy.

Steps, in order (:func:`prepare` in :mod:`mdaf.data.prepare` chains them and keeps statistics):

1. :func:`extract_clicks` + :func:`positive_samples` + :func:`sample_negatives`: every ``pv``
   event is a positive; each gets negatives (items the user did not click on the same calendar
   day) at the ratio giving ``positive_rate`` (0.4: 1.5 negatives per positive, the fraction
   drawn per positive with the seed). The sampling scheme is explicit:
   ``"uniform"`` over items (the paper's wording, default), ``"popularity"`` (over click events),
   ``"history-category"`` (an item of a category drawn from the sample's history: hard negatives).
   A negative shares its positive's user, time and history.
2. :func:`attach_histories`: the user's clicks strictly before the sample's time, the most
   recent ``max_len`` (right-padded, oldest first: :mod:`mdaf.schema`).
3. :func:`drop_empty_history`.
4. :func:`filter_category` (optional): keep a sample only if its target's category is in its history.
5. :func:`temporal_split`: the last ``validation_days`` calendar days are validation, earlier train.

No future information: a history holds only clicks strictly before its sample; negatives for a
sample on day ``d`` come from items (or clicks) seen by the end of day ``d``; all randomness is a
hash of ``(seed, user, time, item, ...)``, so adding rows on later days changes no earlier sample;
id maps are fitted on the training split alone (:func:`fit_id_maps`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, fields

import numpy as np

from mdaf.data.reader import OFFICIAL_WINDOW

NEGATIVE_SCHEMES = ("uniform", "popularity", "history-category")
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
    seed: int = 0

    def __post_init__(self):
        if self.negative_scheme not in NEGATIVE_SCHEMES:
            raise ValueError(
                f"negative_scheme must be one of {NEGATIVE_SCHEMES}, got {self.negative_scheme!r}"
            )
        if not 0.0 < self.positive_rate <= 1.0:
            raise ValueError(f"positive_rate must be in (0, 1], got {self.positive_rate}")
        if not 0.0 < self.user_fraction <= 1.0:
            raise ValueError(f"user_fraction must be in (0, 1], got {self.user_fraction}")
        for name in ("max_len", "validation_days", "negative_max_tries"):
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
    """Items by the day they were first seen, for negatives that never use a later day."""

    items: np.ndarray  # sorted by (first day, item id)
    item_category: np.ndarray
    item_first_day: np.ndarray
    by_cat_items: np.ndarray  # sorted by (category, first day, item)
    by_cat_key: np.ndarray  # category code * n_days + first day, aligned with by_cat_items
    categories: np.ndarray  # sorted distinct categories of items
    click_items_by_day: np.ndarray  # clicked items sorted by (day, item)
    click_days: np.ndarray
    day0: int
    n_days: int


def item_pools(events: Arrays, clicks: Clicks, utc_offset_hours: int) -> ItemPools:
    """Pools of candidate negatives; an item's category is the one of its first event."""
    item, ts = np.asarray(events["item"], dtype=np.int64), np.asarray(events["timestamp"], dtype=np.int64)
    order = np.lexsort((np.arange(item.size), ts, item))
    first = order[np.r_[True, item[order][1:] != item[order][:-1]]]
    items, category = item[first], np.asarray(events["category"], dtype=np.int64)[first]
    days = day_index(ts[first], utc_offset_hours)
    day0 = int(days.min())
    n_days = int(day_index(ts.max(), utc_offset_hours)) - day0 + 1
    first_day = days - day0
    by_day = np.lexsort((items, first_day))
    categories = np.unique(category)
    cat_code = np.searchsorted(categories, category)
    by_cat = np.lexsort((items, first_day, cat_code))
    click_days = day_index(clicks.timestamp, utc_offset_hours) - day0
    click_order = np.lexsort((clicks.item, click_days))
    return ItemPools(
        items[by_day],
        category[by_day],
        first_day[by_day],
        items[by_cat],
        (cat_code * n_days + first_day)[by_cat],
        categories,
        clicks.item[click_order],
        click_days[click_order],
        day0,
        n_days,
    )


def _draw(pools: ItemPools, scheme: str, u: np.ndarray, day: np.ndarray, hist_category: np.ndarray | None):
    """One candidate item per row (``u`` uniform in [0, 1)); -1 where the pool is empty."""
    if scheme == "uniform":
        count = np.searchsorted(pools.item_first_day, day, side="right")
        index = np.minimum((u * count).astype(np.int64), np.maximum(count - 1, 0))
        return np.where(count > 0, pools.items[index], -1)
    if scheme == "popularity":
        count = np.searchsorted(pools.click_days, day, side="right")
        index = np.minimum((u * count).astype(np.int64), np.maximum(count - 1, 0))
        return np.where(count > 0, pools.click_items_by_day[index], -1)
    code = np.searchsorted(pools.categories, hist_category)
    lo = np.searchsorted(pools.by_cat_key, code * pools.n_days, side="left")
    hi = np.searchsorted(pools.by_cat_key, code * pools.n_days + day, side="right")
    index = lo + np.minimum((u * (hi - lo)).astype(np.int64), np.maximum(hi - lo - 1, 0))
    return np.where(hi > lo, pools.by_cat_items[np.minimum(index, pools.by_cat_items.size - 1)], -1)


def sample_negatives(
    positives: Arrays, clicks: Clicks, pools: ItemPools, config: PipelineConfig
) -> tuple[Arrays, dict]:
    """Negatives for positives with histories attached: returns positives + negatives, and counts.

    Each positive gets ``floor(r)`` negatives plus one more with probability ``frac(r)``, where
    ``r = (1 - positive_rate) / positive_rate``. A candidate the user clicked on the sample's day
    is redrawn (``negative_max_tries`` times, then the negative is dropped and counted).
    ``history-category`` needs a history: positives with an empty one draw uniformly instead
    (step 3 drops them anyway).
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
    day = neg["day"] - pools.day0
    clicked = np.unique(
        _user_day_item_key(clicks.user, day_index(clicks.timestamp, config.utc_offset_hours), clicks.item)
    )
    item = np.full(parent.size, -1, dtype=np.int64)
    pending = np.arange(parent.size)
    for attempt in range(config.negative_max_tries):
        if pending.size == 0:
            break
        keys = (neg["user"][pending], neg["timestamp"][pending], neg["item"][pending], slot[pending])
        u = hash_uniform(config.seed, _SALT_NEG + 16 * attempt, *keys)
        hist_category = None
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
                _draw(pools, scheme, u, day[pending], hist_category),
                _draw(pools, "uniform", u, day[pending], None),
            )
        else:
            candidate = _draw(pools, scheme, u, day[pending], None)
        key = _user_day_item_key(neg["user"][pending], neg["day"][pending], candidate)
        found = np.searchsorted(clicked, key)
        was_clicked = (found < clicked.size) & (clicked[np.minimum(found, max(clicked.size - 1, 0))] == key)
        ok = (candidate >= 0) & ~was_clicked
        item[pending[ok]] = candidate[ok]
        pending = pending[~ok]
    filled = item >= 0
    neg["item"] = item
    neg["category"] = _category_of(pools, item)
    neg = take(neg, filled)
    counts = {"negatives_drawn": int(filled.sum()), "negatives_unfilled": int((~filled).sum())}
    return concat(positives, neg), counts


def _category_of(pools: ItemPools, item: np.ndarray) -> np.ndarray:
    order = np.argsort(pools.items, kind="stable")
    found = np.searchsorted(pools.items[order], item)
    return pools.item_category[order][np.minimum(found, max(pools.items.size - 1, 0))]


def _user_day_item_key(user: np.ndarray, day: np.ndarray, item: np.ndarray) -> np.ndarray:
    """(user, day, item) as one int64 via a scramble: a collision would only skip one redraw."""
    with np.errstate(over="ignore"):
        h = _mix64(np.asarray(user).astype(np.uint64) * _GOLDEN + np.asarray(day).astype(np.uint64))
        h = _mix64(h ^ (np.asarray(item).astype(np.int64).view(np.uint64) + _GOLDEN))
    return h.view(np.int64)


# ----------------------------------------------------------------------------- steps 3 to 5
def drop_empty_history(samples: Arrays) -> Arrays:
    """Step 3: samples whose user clicked nothing before the sample's time are dropped."""
    return take(samples, samples["hist_len"] > 0)


def target_category_in_history(samples: Arrays, clicks: Clicks, max_len: int) -> np.ndarray:
    """Whether each sample's target category is among its history's categories (chunked)."""
    out = np.zeros(samples["user"].size, dtype=bool)
    padded_category = np.append(clicks.category, -1)  # -1 matches no category
    for lo in range(0, out.size, _CHUNK_ROWS):
        part = take(samples, slice(lo, lo + _CHUNK_ROWS))
        index = history_positions(part, max_len, padding=clicks.category.size)
        out[lo : lo + _CHUNK_ROWS] = (padded_category[index] == part["category"][:, None]).any(axis=1)
    return out


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
    """Sorted raw ids seen in training; raw id ``r`` maps to ``1 + position`` (0: padding/unknown)."""

    users: np.ndarray
    items: np.ndarray
    categories: np.ndarray

    @staticmethod
    def lookup(table: np.ndarray, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.int64)
        if table.size == 0:
            return np.zeros(raw.shape, dtype=np.int64)
        pos = np.searchsorted(table, raw)
        hit = (pos < table.size) & (table[np.minimum(pos, table.size - 1)] == raw)
        return np.where(hit, pos + 1, 0).astype(np.int64)

    def sizes(self) -> tuple[int, int, int]:
        """Table sizes, padding id 0 included."""
        return self.users.size + 1, self.items.size + 1, self.categories.size + 1

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


def fit_id_maps(train: Arrays, clicks: Clicks, max_len: int) -> IdMaps:
    """Contiguous ids from the training split only: its users, and the items and categories of
    its targets and of every click inside one of its histories."""
    size = clicks.user.size + 1  # +1: a history may end past the last click
    opened = np.bincount(train["hist_end"] - train["hist_len"], minlength=size)
    closed = np.bincount(train["hist_end"], minlength=size)
    used = np.cumsum(opened - closed)[:-1] > 0  # clicks covered by at least one history
    return IdMaps(
        np.unique(train["user"]),
        np.unique(np.concatenate([train["item"], clicks.item[used]])),
        np.unique(np.concatenate([train["category"], clicks.category[used]])),
    )


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
    click_item = np.append(IdMaps.lookup(maps.items, clicks.item), 0)  # a last entry for padding
    click_cat = np.append(IdMaps.lookup(maps.categories, clicks.category), 0)
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
