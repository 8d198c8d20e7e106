"""Candidates, the high/low ranked lists, and sampling with exact inclusion probabilities.

This project's graduation lists (not Li et al.'s rank split, ``mdaf.explore.li2010``): an ad
*graduates* once its impressions over all contexts reach ``graduation_threshold``; graduated ads
form the exploitation pool, ranked by score into the high-ranked list H; the others are the
exploration candidates, the low-ranked list L. Exploitation takes H in rank order; exploration
draws from L.

Drawing ``k`` ads from L uses systematic sampling over a random permutation with target inclusion
probabilities ``pi_i = min(1, c * w_i)``, ``sum(pi) = k`` (sampling proportional to size): each ad's
probability of being drawn is exactly ``pi_i``, which is what the logged propensities need.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from mdaf.explore.cfb import CFBEstimate, as_id_array, is_number


@dataclass(frozen=True)
class Candidates:
    """The ads eligible for one page view, with what the policies need to rank them.

    ``ads``: int64 (N,) ids; ``scores``: the ranker's CTR estimates; ``impressions``, ``clicks``:
    (context, ad) counts (Algorithm 3's ``x``, the UCB bonus); ``graduated``: bool, in the
    graduation variants' exploitation pool.
    """

    ads: np.ndarray
    scores: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    graduated: np.ndarray

    def __post_init__(self):
        ads = as_id_array(self.ads, "ads")
        if ads.size == 0:
            raise ValueError("candidate list is empty: at least one ad is needed to fill a slot")
        sorted_ads = np.sort(ads)
        if (sorted_ads[1:] == sorted_ads[:-1]).any():
            raise ValueError("ads must be distinct candidates")
        n = ads.size
        fields = {name: np.asarray(getattr(self, name), dtype=np.float64)
                  for name in ("scores", "impressions", "clicks")}
        for name, arr in fields.items():
            if arr.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) like ads, got {arr.shape}")
        values = np.stack(list(fields.values()))
        if not np.isfinite(values).all() or values.min() < 0:
            raise ValueError("scores, impressions and clicks must be finite and non-negative")
        if (fields["clicks"] > fields["impressions"]).any():
            raise ValueError("clicks must not exceed impressions")
        graduated = np.asarray(self.graduated, dtype=bool)
        if graduated.shape != (n,):
            raise ValueError(f"graduated must have shape ({n},) like ads, got {graduated.shape}")
        object.__setattr__(self, "ads", ads)
        for name, arr in fields.items():
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "graduated", graduated)

    def __len__(self) -> int:
        return int(self.ads.size)

    @classmethod
    def from_estimate(cls, ads, scores, estimate: CFBEstimate, graduation_threshold: float) -> Candidates:
        """Candidates scored by a ranker, with counts and graduation from a CFB estimate."""
        if not (is_number(graduation_threshold) and np.isfinite(graduation_threshold)
                and graduation_threshold >= 0):
            raise ValueError(f"graduation_threshold must be >= 0, got {graduation_threshold}")
        return cls(ads=ads, scores=scores, impressions=estimate.impressions, clicks=estimate.clicks,
                   graduated=estimate.ad_impressions >= graduation_threshold)


def high_low_lists(candidates: Candidates) -> tuple[np.ndarray, np.ndarray]:
    """Indices of H (graduated, best score first) and L (not graduated, best score first)."""
    order = np.argsort(-candidates.scores, kind="stable")
    grad = candidates.graduated[order]
    return order[grad], order[~grad]


def capped_inclusion_probabilities(weights: np.ndarray, k: int) -> np.ndarray:
    """``pi_i = min(1, c * w_i)`` with ``c`` such that ``sum(pi) = k`` (weights > 0, ``k <= len``)."""
    weights = np.asarray(weights, dtype=np.float64)
    n = weights.size
    if not 0 <= k <= n:
        raise ValueError(f"sample size k must be in [0, {n}], got {k}")
    if n and weights.min() <= 0:
        raise ValueError("sampling weights must be > 0")
    pi = np.zeros(n)
    free = np.ones(n, dtype=bool)
    remaining = float(k)
    # Each pass caps at least one unit at 1 or stops, so at most n passes.
    while remaining > 0:
        scaled = remaining * weights[free] / weights[free].sum()
        over = scaled >= 1.0
        if not over.any():
            pi[free] = scaled
            break
        idx = np.flatnonzero(free)[over]
        pi[idx] = 1.0
        free[idx] = False
        remaining -= idx.size
    return pi


def systematic_sample(pi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices drawn with inclusion probability exactly ``pi`` (sum an integer), in random order.

    The units are put in random order, laid end to end on [0, sum(pi)) with lengths ``pi``, and the
    points ``u, u + 1, ...`` (u uniform on [0, 1)) pick the units they fall in.
    """
    pi = np.asarray(pi, dtype=np.float64)
    k = int(round(pi.sum()))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    perm = rng.permutation(pi.size)
    ends = np.cumsum(pi[perm])
    ends[-1] = k  # absorb rounding so the last point always lands inside
    points = rng.random() + np.arange(k)
    chosen = perm[np.searchsorted(ends, points, side="right")]
    return chosen[rng.permutation(k)]


@functools.lru_cache(maxsize=64)
def _binomial_coefficients(n: int) -> np.ndarray:
    return np.array([math.comb(n, i) for i in range(n + 1)], dtype=np.float64)


def binomial_pmf(n: int, p) -> np.ndarray:
    """P(X = x) for x = 0..n, X ~ Binomial(n, p); an array ``p`` gives one row per value."""
    p = np.asarray(p, dtype=np.float64)[..., None]
    x = np.arange(n + 1)
    return _binomial_coefficients(n) * np.power(p, x) * np.power(1.0 - p, n - x)


def low_count_pmf(explore_pmf: np.ndarray, n_high: int, n_low: int) -> np.ndarray:
    """Distribution of the number of ads taken from L, given that of the explore draws.

    ``explore_pmf[x]`` is P(x of the ``n_show = len - 1`` slots drew *explore*). A slot that wants
    an empty list takes from the other one, so the count from L is ``clip(x, n_show - n_high, n_low)``.
    """
    n_show = explore_pmf.size - 1
    out = np.zeros(n_show + 1)
    np.add.at(out, np.clip(np.arange(n_show + 1), n_show - n_high, n_low), explore_pmf)
    return out
