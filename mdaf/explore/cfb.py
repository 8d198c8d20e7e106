"""Click-feedback models (CFB): CTR estimates from aggregated impressions and clicks.

Both models count impressions and clicks per (context, ad), per ad and per context, and answer
``estimate(context, ads) -> CFBEstimate``; rankers, the serving loop and the policies use either.

- ``LinearCFB``, the paper's (Li et al., KDD 2010): a CTR per aggregation level counts from
  ``threshold`` impressions, below it the ``default_ctr`` (0, the mean of the initial CTRs, or 1);
  the score is a linear combination of the levels, ``weights`` (0.7, 0.3) for (page, ad) and
  (publisher, ad group). One level: ``weights=(1.0,)``.
- ``BetaBackoffCFB``, this project's variant (not the paper's): the most specific of
  ``(context, ad)`` -> ``ad`` -> ``context`` with at least ``min_impressions``, smoothed with a
  Beta(alpha, beta) prior, ``(clicks + alpha) / (impressions + alpha + beta)``; the prior mean when
  no level has enough impressions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVEL_PAIR, LEVEL_AD, LEVEL_CONTEXT, LEVEL_PRIOR = 0, 1, 2, 3  # BetaBackoffCFB's levels


@dataclass(frozen=True)
class CFBEstimate:
    """Per-candidate estimates, each an array aligned with the ``ads`` asked for.

    ``ctr``: the CFB score; ``level``: the most specific level with enough impressions, an index
    into the model's ``level_names`` (``len(level_names)``: none, the default or prior);
    ``impressions`` and ``clicks``: the (context, ad) pair counts; ``ad_impressions``: the ad's
    impressions over all contexts.
    """

    ctr: np.ndarray
    level: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    ad_impressions: np.ndarray


def is_number(value) -> bool:
    """A real scalar (Python or numpy int or float, not bool, not a string)."""
    numeric = isinstance(value, (int, float, np.integer, np.floating))
    return numeric and not isinstance(value, (bool, np.bool_))


def as_id_array(values, name: str) -> np.ndarray:
    """A 1-D int64 array of non-negative ids, or a ValueError naming ``name``."""
    arr = np.asarray(values)
    if arr.dtype == object:
        raise ValueError(f"{name} must hold integer ids, got {values!r}")
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of ids, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be non-negative ids, got {int(arr.min())}")
    return arr


def _as_counts(values, size: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (size,):
        arr = np.broadcast_to(arr, (size,))
    if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0):
        raise ValueError(f"{name} must be finite non-negative counts, got {arr[~(arr >= 0)][:3].tolist()}")
    return arr


def _check_threshold(value, name: str) -> float:
    if not (is_number(value) and np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class ClickFeedbackModel:
    """The counts both CFB models keep; subclasses define ``estimate``.

    Counts per (context, ad), ad and context, plus per (``group_context``, ``group_ad``) for
    models with a coarser level (``LinearCFB``).
    """

    level_names: tuple[str, ...] = ()

    def __init__(self):
        # Each value is [impressions, clicks]; dicts because contexts (pages, users) can be sparse.
        self._pair: dict[tuple[int, int], list[float]] = {}
        self._ad: dict[int, list[float]] = {}
        self._context: dict[int, list[float]] = {}
        self._group: dict[tuple[int, int], list[float]] = {}

    def group_key(self, context: int, ad: int) -> tuple[int, int]:
        """The cell of the coarser level, (publisher, ad group) in the paper."""
        return context, ad

    def update(self, context: int, ads, impressions=1.0, clicks=0.0) -> None:
        """Add ``impressions`` and ``clicks`` (scalars or arrays aligned with ``ads``) in ``context``."""
        context = int(as_id_array(context, "context")[0])
        ads = as_id_array(ads, "ads")
        imps = _as_counts(impressions, ads.size, "impressions")
        clks = _as_counts(clicks, ads.size, "clicks")
        if np.any(clks > imps):
            bad = int(np.argmax(clks > imps))
            raise ValueError(f"clicks must not exceed impressions, got {clks[bad]} clicks for "
                             f"{imps[bad]} impressions of ad {int(ads[bad])}")
        ctx_counts = self._context.setdefault(context, [0.0, 0.0])
        for ad, n, c in zip(ads.tolist(), imps.tolist(), clks.tolist(), strict=True):
            for counts in (self._pair.setdefault((context, ad), [0.0, 0.0]),
                           self._ad.setdefault(ad, [0.0, 0.0]),
                           self._group.setdefault(self.group_key(context, ad), [0.0, 0.0]), ctx_counts):
                counts[0] += n
                counts[1] += c

    def _lookup(self, table: dict, keys: list) -> np.ndarray:
        zero = (0.0, 0.0)
        return np.array([table.get(k, zero) for k in keys], dtype=np.float64).reshape(-1, 2)

    def counts(self, context: int, ads) -> tuple[np.ndarray, np.ndarray]:
        """(impressions, clicks) of the (context, ad) pairs."""
        context = int(as_id_array(context, "context")[0])
        pair = self._lookup(self._pair, [(context, a) for a in as_id_array(ads, "ads").tolist()])
        return pair[:, 0], pair[:, 1]

    def estimate(self, context: int, ads) -> CFBEstimate:
        raise NotImplementedError


class LinearCFB(ClickFeedbackModel):
    """The paper's CFB: a linear combination of per-level CTRs, each with an impression threshold.

    Args:
        weights: one weight per level: (page, ad) first, then (publisher, ad group); (0.7, 0.3) in
            the paper, ``(1.0,)`` for one level. threshold: impressions from which a level's CTR
            counts (100). default_ctr: the CTR of a level below the threshold, in [0, 1].
        publisher_of, ad_group_of: maps (dict or array) from context to publisher and from ad to ad
            group; needed with two levels.
    """

    level_names = ("pair", "publisher-ad-group")

    def __init__(self, weights=(1.0,), threshold: float = 100.0, default_ctr: float = 0.0,
                 publisher_of=None, ad_group_of=None):
        super().__init__()
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.size not in (1, 2) or not (np.isfinite(w).all() and w.min() >= 0 and w.sum() > 0):
            raise ValueError(f"weights must be 1 or 2 non-negative level weights, got {weights!r}")
        if w.size == 2 and (publisher_of is None or ad_group_of is None):
            raise ValueError("two levels need publisher_of (context -> publisher) and "
                             "ad_group_of (ad -> group)")
        if not (is_number(default_ctr) and 0 <= default_ctr <= 1):
            raise ValueError(f"default_ctr must be a number in [0, 1], got {default_ctr!r}")
        self.weights = w
        self.threshold = _check_threshold(threshold, "threshold")
        self.default_ctr = float(default_ctr)
        self.publisher_of, self.ad_group_of = publisher_of, ad_group_of

    def group_key(self, context: int, ad: int) -> tuple[int, int]:
        if self.publisher_of is None:
            return context, ad
        return int(self.publisher_of[context]), int(self.ad_group_of[ad])

    def _level_ctr(self, counts: np.ndarray) -> np.ndarray:
        passed = counts[:, 0] >= max(self.threshold, 1e-12)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(passed, counts[:, 1] / counts[:, 0], self.default_ctr), passed

    def estimate(self, context: int, ads) -> CFBEstimate:
        """``sum_l weights[l] * (CTR_l if impressions_l >= threshold else default_ctr)``."""
        context = int(as_id_array(context, "context")[0])
        ads = as_id_array(ads, "ads").tolist()
        pair = self._lookup(self._pair, [(context, a) for a in ads])
        levels = [pair]
        if self.weights.size == 2:
            levels.append(self._lookup(self._group, [self.group_key(context, a) for a in ads]))
        ctrs, passed = zip(*(self._level_ctr(counts) for counts in levels), strict=True)
        level = np.full(len(ads), len(self.level_names), dtype=np.int64)
        for index in reversed(range(len(levels))):
            level[passed[index]] = index
        return CFBEstimate(ctr=self.weights @ np.stack(ctrs), level=level, impressions=pair[:, 0].copy(),
                           clicks=pair[:, 1].copy(), ad_impressions=self._lookup(self._ad, ads)[:, 0].copy())

    def mean_ctr(self) -> float:
        """Mean CTR of the (context, ad) pairs with at least ``threshold`` impressions (the paper's
        "mean" default CTR when computed on the initial table); NaN if there are none."""
        counts = np.array(list(self._pair.values()), dtype=np.float64).reshape(-1, 2)
        known = counts[counts[:, 0] >= max(self.threshold, 1e-12)]
        return float((known[:, 1] / known[:, 0]).mean()) if known.size else float("nan")


class BetaBackoffCFB(ClickFeedbackModel):
    """This project's CFB (not the paper's): back-off (context, ad) -> ad -> context, Beta-smoothed.

    Args:
        prior_alpha, prior_beta: the Beta prior (pseudo-clicks and pseudo-non-clicks), both > 0.
        min_impressions: a level is used only with at least this many impressions, else the
            estimate falls back to the next, more general level.
    """

    level_names = ("pair", "ad", "context")

    def __init__(self, prior_alpha: float = 1.0, prior_beta: float = 19.0, min_impressions: float = 30.0):
        super().__init__()
        for name, value in (("prior_alpha", prior_alpha), ("prior_beta", prior_beta)):
            if not (is_number(value) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} (of the Beta prior) must be a finite number > 0, got {value!r}")
        self.prior_alpha = float(prior_alpha)
        self.prior_beta = float(prior_beta)
        self.min_impressions = _check_threshold(min_impressions, "min_impressions")

    @property
    def prior_mean(self) -> float:
        return self.prior_alpha / (self.prior_alpha + self.prior_beta)

    def estimate(self, context: int, ads) -> CFBEstimate:
        """Smoothed CTR of each ad in ``context`` from the most specific level with enough impressions."""
        context = int(as_id_array(context, "context")[0])
        ads = as_id_array(ads, "ads").tolist()
        pair = self._lookup(self._pair, [(context, a) for a in ads])
        ad = self._lookup(self._ad, ads)
        ctx = np.array(self._context.get(context, (0.0, 0.0)), dtype=np.float64)
        m = max(self.min_impressions, 1e-12)  # a level with no impressions is never used
        level = np.where(pair[:, 0] >= m, LEVEL_PAIR,
                         np.where(ad[:, 0] >= m, LEVEL_AD, LEVEL_CONTEXT if ctx[0] >= m else LEVEL_PRIOR))
        chosen = np.where((level == LEVEL_PAIR)[:, None], pair,
                          np.where((level == LEVEL_AD)[:, None], ad, ctx if ctx[0] >= m else 0.0))
        n, c = chosen[:, 0], chosen[:, 1]
        return CFBEstimate(
            ctr=(c + self.prior_alpha) / (n + self.prior_alpha + self.prior_beta),
            level=level.astype(np.int64),
            impressions=pair[:, 0].copy(),
            clicks=pair[:, 1].copy(),
            ad_impressions=ad[:, 0].copy(),
        )

