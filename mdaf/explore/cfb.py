"""Click-feedback model (CFB): smoothed CTR estimates from aggregated impressions and clicks.

Counts are kept at three levels of a hierarchy, from the most specific to the most general:
``(context, ad)`` -> ``ad`` (all contexts) -> ``context`` (all ads). An estimate uses the most
specific level with at least ``min_impressions`` impressions (the fallback of Li et al., KDD 2010,
when a pair has too little history), smoothed with a Beta(alpha, beta) prior::

    ctr = (clicks + alpha) / (impressions + alpha + beta)

When no level has enough impressions the estimate is the prior mean ``alpha / (alpha + beta)``.
Its confidence is the weight the data has against the prior, ``n / (n + alpha + beta)`` with ``n``
the impressions of the level used (0 for the prior alone): it grows with impressions towards 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVEL_PAIR, LEVEL_AD, LEVEL_CONTEXT, LEVEL_PRIOR = 0, 1, 2, 3


@dataclass(frozen=True)
class CFBEstimate:
    """Per-candidate estimates, each an array aligned with the ``ads`` asked for.

    ``ctr``: smoothed CTR; ``confidence``: in [0, 1), grows with the impressions behind ``ctr``;
    ``level``: which hierarchy level gave ``ctr`` (``LEVEL_*``); ``impressions`` and ``clicks``:
    the (context, ad) pair counts; ``ad_impressions``: the ad's impressions over all contexts.
    """

    ctr: np.ndarray
    confidence: np.ndarray
    level: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    ad_impressions: np.ndarray


def as_id_array(values, name: str) -> np.ndarray:
    """A 1-D int64 array of non-negative ids, or a ValueError naming ``name``."""
    arr = np.asarray(values)
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


class ClickFeedbackModel:
    """Impressions and clicks per (context, ad), ad and context, with Beta-smoothed estimates.

    Args:
        prior_alpha, prior_beta: the Beta prior (pseudo-clicks and pseudo-non-clicks), both > 0.
        min_impressions: a level is used only with at least this many impressions, else the
            estimate falls back to the next, more general level.
    """

    def __init__(self, prior_alpha: float = 1.0, prior_beta: float = 19.0, min_impressions: float = 30.0):
        if not (prior_alpha > 0 and prior_beta > 0):
            raise ValueError(f"prior_alpha and prior_beta must be > 0, got {prior_alpha}, {prior_beta}")
        if min_impressions < 0:
            raise ValueError(f"min_impressions must be >= 0, got {min_impressions}")
        self.prior_alpha = float(prior_alpha)
        self.prior_beta = float(prior_beta)
        self.min_impressions = float(min_impressions)
        # Each value is [impressions, clicks]; dicts because contexts (pages, users) can be sparse.
        self._pair: dict[tuple[int, int], list[float]] = {}
        self._ad: dict[int, list[float]] = {}
        self._context: dict[int, list[float]] = {}

    @property
    def prior_mean(self) -> float:
        return self.prior_alpha / (self.prior_alpha + self.prior_beta)

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
            pair_counts = self._pair.setdefault((context, ad), [0.0, 0.0])
            for counts in (pair_counts, self._ad.setdefault(ad, [0.0, 0.0])):
                counts[0] += n
                counts[1] += c
            ctx_counts[0] += n
            ctx_counts[1] += c

    def counts(self, context: int, ads) -> tuple[np.ndarray, np.ndarray]:
        """(impressions, clicks) of the (context, ad) pairs."""
        ads = as_id_array(ads, "ads")
        zero = (0.0, 0.0)
        pair = np.array([self._pair.get((int(context), a), zero) for a in ads.tolist()], dtype=np.float64)
        pair = pair.reshape(-1, 2)
        return pair[:, 0], pair[:, 1]

    def estimate(self, context: int, ads) -> CFBEstimate:
        """Smoothed CTR and confidence of each ad in ``context`` (see the module docstring)."""
        context = int(as_id_array(context, "context")[0])
        ads = as_id_array(ads, "ads")
        zero = (0.0, 0.0)
        pair = np.array([self._pair.get((context, a), zero) for a in ads.tolist()], dtype=np.float64)
        ad = np.array([self._ad.get(a, zero) for a in ads.tolist()], dtype=np.float64)
        pair, ad = pair.reshape(-1, 2), ad.reshape(-1, 2)
        ctx = np.array(self._context.get(context, zero), dtype=np.float64)
        m = max(self.min_impressions, 1e-12)  # a level with no impressions is never used
        level = np.where(pair[:, 0] >= m, LEVEL_PAIR,
                         np.where(ad[:, 0] >= m, LEVEL_AD, LEVEL_CONTEXT if ctx[0] >= m else LEVEL_PRIOR))
        chosen = np.where((level == LEVEL_PAIR)[:, None], pair,
                          np.where((level == LEVEL_AD)[:, None], ad, ctx if ctx[0] >= m else 0.0))
        n, c = chosen[:, 0], chosen[:, 1]
        strength = self.prior_alpha + self.prior_beta
        return CFBEstimate(
            ctr=(c + self.prior_alpha) / (n + strength),
            confidence=n / (n + strength),
            level=level.astype(np.int64),
            impressions=pair[:, 0].copy(),
            clicks=pair[:, 1].copy(),
            ad_impressions=ad[:, 0].copy(),
        )
