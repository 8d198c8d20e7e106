"""Off-policy estimators: the value of a target policy from logs of another (the logging policy).

Unit: every estimate is **expected clicks (reward) per page view**. A log has one row per shown ad:
reward ``r_i``, the logging policy's probability ``p_i`` of showing that ad on that page view (its
propensity) and the target's probability ``t_i`` of showing it (``inclusion_probabilities``);
``page_views`` says which page view each row belongs to (default: one row per page view, a
single-action log). With ``w_i = t_i / p_i`` and ``G`` page views:

- IPS: ``V = sum_i r_i w_i / G``; unbiased when ``p_i > 0`` wherever ``t_i > 0`` and a click on an
  ad does not depend on the other ads shown.
- Self-normalised IPS: ``V = slots * sum_i r_i w_i / sum_i w_i``: ``sum_i w_i / G`` estimates the
  number of ads the target shows per page view (``slots``), so this is IPS with the estimated in
  place of the known normaliser; slightly biased, lower variance.
- Replay (Li et al., WSDM 2011), single-action logs only: the mean reward over the rows where a
  deterministic target would have chosen the logged action; unbiased when the logging policy chose
  uniformly at random.

Standard errors are clustered by page view: the rows of one page view are summed first (they share
the page view's randomness), and the spread is taken over page views.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mdaf.explore.cfb import as_id_array, is_number


@dataclass(frozen=True)
class OffPolicyEstimate:
    """An estimate (per page view), its standard error and the number of page views it averages.

    For ``replay``, ``n`` is the number of matched rows.
    """

    value: float
    stderr: float
    n: int


def _floats(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64).reshape(-1)


def _arrays(rewards, logging_propensities, target_propensities):
    r = _floats(rewards, "rewards")
    p = _floats(logging_propensities, "logging_propensities")
    t = _floats(target_propensities, "target_propensities")
    if r.size == 0:
        raise ValueError("the log is empty: no rows to estimate from")
    if not (r.shape == p.shape == t.shape):
        raise ValueError(f"rewards, logging_propensities and target_propensities must have the same length, "
                         f"got {r.size}, {p.size}, {t.size}")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards must be finite")
    if not np.all(np.isfinite(p)) or np.any((p <= 0) | (p > 1)):
        raise ValueError("logging_propensities must be in (0, 1] (NaN: the logging policy has no exact "
                         "propensities, e.g. Thompson sampling)")
    if not np.all(np.isfinite(t)) or np.any((t < 0) | (t > 1)):
        raise ValueError("target_propensities must be in [0, 1]")
    return r, p, t


def _cluster_sums(values: list[np.ndarray], page_views, n_page_views) -> tuple[list[np.ndarray], int]:
    """Per-page-view sums of each array, padded with zeros to ``n_page_views`` page views."""
    rows = values[0].size
    if page_views is None:
        ids = np.arange(rows)
    else:
        ids = as_id_array(page_views, "page_views")
        if ids.size != rows:
            raise ValueError(f"page_views must have one id per row ({rows}), got {ids.size}")
    _, ids = np.unique(ids, return_inverse=True)
    distinct = int(ids.max()) + 1
    if n_page_views is None:
        n_page_views = distinct
    elif not is_number(n_page_views) or int(n_page_views) != n_page_views:
        raise ValueError(f"n_page_views must be an integer, got {n_page_views!r}")
    elif n_page_views < distinct:
        raise ValueError(f"n_page_views ({n_page_views}) must be at least the {distinct} page views "
                         "in the log")
    n_page_views = int(n_page_views)
    return [np.bincount(ids, weights=v, minlength=n_page_views) for v in values], n_page_views


def _check_slots(slots) -> int:
    if not (is_number(slots) and np.isfinite(slots) and slots > 0):
        raise ValueError(f"slots must be a number > 0 (ads the target shows per page view), got {slots!r}")
    return slots


def ips(rewards, logging_propensities, target_propensities, page_views=None,
        n_page_views: int | None = None) -> OffPolicyEstimate:
    """Inverse propensity scoring per page view: ``sum(r * t / p) / G``.

    ``page_views``: the page view id of each row (default: each row its own). ``n_page_views``:
    ``G``, when some page views logged no row (default: the distinct ids).
    """
    r, p, t = _arrays(rewards, logging_propensities, target_propensities)
    (sums,), g = _cluster_sums([r * t / p], page_views, n_page_views)
    stderr = float(sums.std(ddof=1) / np.sqrt(g)) if g > 1 else float("nan")
    return OffPolicyEstimate(value=float(sums.mean()), stderr=stderr, n=g)


def snips(rewards, logging_propensities, target_propensities, page_views=None,
          slots: float = 1) -> OffPolicyEstimate:
    """Self-normalised IPS per page view: ``slots * sum(r w) / sum(w)``, ``w = t / p``.

    ``slots``: ads the target shows per page view (1 for single-action logs). The standard error is
    the delta method's over page-view sums ``A_g = sum r w``, ``B_g = sum w``.
    """
    r, p, t = _arrays(rewards, logging_propensities, target_propensities)
    slots = _check_slots(slots)
    w = t / p
    (a, b), g = _cluster_sums([r * w, w], page_views, None)
    if b.sum() == 0:
        raise ValueError("the target gives probability 0 to every logged action: SNIPS is undefined")
    ratio = a.sum() / b.sum()
    residual = a - ratio * b
    stderr = float(slots * np.sqrt(g / (g - 1) * (residual ** 2).sum()) / b.sum()) if g > 1 else float("nan")
    return OffPolicyEstimate(value=float(slots * ratio), stderr=stderr, n=g)


def replay(rewards, logged_actions, target_actions) -> OffPolicyEstimate:
    """Mean reward over rows where ``target_actions == logged_actions`` (NaN, n=0 if none match).

    For single-action logs (one shown ad per page view); the actions are integer ids.
    """
    r = _floats(rewards, "rewards")
    a = as_id_array(logged_actions, "logged_actions")
    b = as_id_array(target_actions, "target_actions")
    if r.size == 0:
        raise ValueError("the log is empty: no rows to estimate from")
    if not (r.shape == a.shape == b.shape):
        raise ValueError(f"rewards, logged_actions and target_actions must have the same length, "
                         f"got {r.size}, {a.size}, {b.size}")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards must be finite")
    matched = r[a == b]
    if matched.size == 0:
        return OffPolicyEstimate(value=float("nan"), stderr=float("nan"), n=0)
    stderr = float(matched.std(ddof=1) / np.sqrt(matched.size)) if matched.size > 1 else float("nan")
    return OffPolicyEstimate(value=float(matched.mean()), stderr=stderr, n=int(matched.size))
