"""Off-policy estimators: the value of a target policy from logs of another (the logging policy).

With rows ``(x_i, a_i, r_i)`` logged with propensity ``p_i = pi_0(a_i | x_i)`` and the target's
probability ``t_i = pi(a_i | x_i)`` of the same action in the same context:

- IPS: ``V = sum_i r_i * t_i / p_i / n``, unbiased when ``p_i > 0`` wherever ``t_i > 0``.
- Self-normalised IPS: ``V = sum_i r_i w_i / sum_i w_i`` with ``w_i = t_i / p_i``: slightly
  biased, lower variance, invariant to a constant shift of the rewards.
- Replay (Li et al., WSDM 2011): the mean reward over the rows where a deterministic target would
  have chosen the logged action; unbiased when the logging policy chose uniformly at random.

Slate logs (one row per shown ad, the propensity the ad's probability of being shown) fit IPS as
they are when clicks on an ad do not depend on the other ads: pass ``n`` = the number of page views
and ``V`` estimates the target's expected clicks per page view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OffPolicyEstimate:
    """An estimate with its standard error and the number of rows it used."""

    value: float
    stderr: float
    n: int


def _arrays(rewards, logging_propensities, target_propensities):
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    p = np.asarray(logging_propensities, dtype=np.float64).reshape(-1)
    t = np.asarray(target_propensities, dtype=np.float64).reshape(-1)
    if r.size == 0:
        raise ValueError("the log is empty: no rows to estimate from")
    if not (r.shape == p.shape == t.shape):
        raise ValueError(f"rewards, logging_propensities and target_propensities must have the same length, "
                         f"got {r.size}, {p.size}, {t.size}")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards must be finite")
    if not np.all(np.isfinite(p)) or np.any((p <= 0) | (p > 1)):
        raise ValueError("logging_propensities must be in (0, 1]")
    if not np.all(np.isfinite(t)) or np.any((t < 0) | (t > 1)):
        raise ValueError("target_propensities must be in [0, 1]")
    return r, p, t


def ips(rewards, logging_propensities, target_propensities, n: int | None = None) -> OffPolicyEstimate:
    """Inverse propensity scoring: ``sum(r * t / p) / n`` (``n`` defaults to the number of rows)."""
    r, p, t = _arrays(rewards, logging_propensities, target_propensities)
    rows = r.size
    n = rows if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    terms = r * t / p
    # Per-row terms padded with zeros for the n - rows units (page views) with no logged row.
    padded_sq = (terms ** 2).sum() / n
    mean = terms.sum() / n
    stderr = float(np.sqrt(max(padded_sq - mean ** 2, 0.0) / max(n - 1, 1))) if n > 1 else float("nan")
    return OffPolicyEstimate(value=float(mean), stderr=stderr, n=rows)


def snips(rewards, logging_propensities, target_propensities) -> OffPolicyEstimate:
    """Self-normalised IPS ``sum(r w) / sum(w)``, ``w = t / p``; stderr by the delta method."""
    r, p, t = _arrays(rewards, logging_propensities, target_propensities)
    w = t / p
    total = w.sum()
    if total == 0:
        raise ValueError("the target gives probability 0 to every logged action: SNIPS is undefined")
    value = float((r * w).sum() / total)
    stderr = float(np.sqrt(((w * (r - value)) ** 2).sum()) / total)
    return OffPolicyEstimate(value=value, stderr=stderr, n=int(r.size))


def replay(rewards, logged_actions, target_actions) -> OffPolicyEstimate:
    """Mean reward over rows where ``target_actions == logged_actions`` (NaN, n=0 if none match)."""
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    a = np.asarray(logged_actions).reshape(-1)
    b = np.asarray(target_actions).reshape(-1)
    if r.size == 0:
        raise ValueError("the log is empty: no rows to estimate from")
    if not (r.shape == a.shape == b.shape):
        raise ValueError(f"rewards, logged_actions and target_actions must have the same length, "
                         f"got {r.size}, {a.size}, {b.size}")
    matched = r[a == b]
    if matched.size == 0:
        return OffPolicyEstimate(value=float("nan"), stderr=float("nan"), n=0)
    stderr = float(matched.std(ddof=1) / np.sqrt(matched.size)) if matched.size > 1 else float("nan")
    return OffPolicyEstimate(value=float(matched.mean()), stderr=stderr, n=int(matched.size))
