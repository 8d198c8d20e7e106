"""The exploration algorithms of Li et al., KDD 2010, with the paper's names and symbols.

Paper: W. Li, X. Wang, R. Zhang, Y. Cui, J. Mao, R. Jin, "Exploitation and Exploration in a
Performance based Contextual Advertising System", KDD 2010. Symbols: ``n`` ranked candidates,
``m`` shown, ``r`` reserved top ads, ``q`` the low-rank (or promotional) list size, ``epsilon``
the probability of exploring, ``w`` the impression cap and ``b`` the shape of the confidence
``C(x) = tanh(x / b)``; Algorithm 2's ``tau``, ``beta``, ``kappa``.

- Algorithm 1 (``algorithm1_slates``): F = the top ``r``; H = ranks r+1..n-q, L = the bottom q;
  until H or L is empty, with probability epsilon a uniformly random ad of L, otherwise one of H,
  is appended to F; then the rest of H and of L. The top ``m`` of F are shown.
- Algorithm 2 (``ExponentiatedGradient``): epsilon drawn per page view from candidates
  epsilon_1..epsilon_T with probabilities ``p``, updated by exponentiated gradient on the clicks.
- Algorithm 3 (``algorithm3_slates``): a promotional queue P of ``q`` ads drawn without replacement
  from ranks r+1..n with weights ``1 - C(x)`` (0 at ``x >= w``; ``C = 0`` below the CFB impression
  threshold); then, until P or the ranked list A is empty, with probability epsilon the head of P,
  otherwise the head of A, is appended to F unless already there; then the rest of P and of A.

The slate functions work on a batch of page views at once (numpy, one row per page view): the
simulation (``mdaf.explore.li2010_simulation``) runs all pages of an iteration in one call and the
per-page-view policies (``mdaf.explore.policies``) call them with one row.
"""

from __future__ import annotations

import math

import numpy as np

from mdaf.explore.cfb import is_number

#: The paper's candidate epsilons for EG and epsilon-decreasing: 0.05 i + 0.01, i = 1..10.
PAPER_EPSILONS = tuple(round(0.05 * i + 0.01, 2) for i in range(1, 11))
#: The paper's epsilon-decreasing schedule: start at 0.51, drop 0.05 every 2,000 iterations.
DECREASING_START, DECREASING_STEP, DECREASING_EVERY, DECREASING_FLOOR = 0.51, 0.05, 2000, 0.01


def theorem1_settings(T: int, N: int, delta: float) -> dict[str, float]:
    """Algorithm 2's ``tau``, ``beta``, ``kappa`` from Theorem 1 (regret bound w.p. 1 - delta).

    ``beta = sqrt(ln(T / delta) / (T N))``, ``kappa = 4 T beta / (3 + beta)``, ``tau = kappa / (2 T)``
    with ``T`` candidate epsilons and ``N`` page views (EG updates).
    """
    if not is_number(T) or int(T) != T or T < 1:
        raise ValueError(f"T (the number of candidate epsilons) must be a positive integer, got {T}")
    if not is_number(N) or int(N) != N or N < 1:
        raise ValueError(f"N (the number of page views) must be a positive integer, got {N}")
    if not (is_number(delta) and np.isfinite(delta) and 0 < delta < 1):
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    beta = math.sqrt(math.log(T / delta) / (T * N))
    kappa = 4 * T * beta / (3 + beta)
    if kappa > 1:
        raise ValueError(f"Theorem 1 gives kappa = {kappa:.3g} > 1 for T={T}, N={N}, delta={delta}: "
                         "N is too small for the bound")
    return {"tau": kappa / (2 * T), "beta": beta, "kappa": kappa}


def decreasing_epsilon(iteration) -> np.ndarray | float:
    """The paper's epsilon-decreasing value at ``iteration`` (0-based): 0.51, 0.46, ... floored at 0.01."""
    steps = np.floor_divide(iteration, DECREASING_EVERY)
    return np.maximum(DECREASING_START - DECREASING_STEP * steps, DECREASING_FLOOR)


def check_probability(value, name: str) -> float:
    """``value`` as a float in [0, 1], or a ValueError naming ``name``."""
    if not (is_number(value) and np.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_list_sizes(n: int, m: int, r: int, q: int) -> None:
    """``0 <= r < m <= n`` and ``1 <= q <= n - r``, or a ValueError naming the offender."""
    for name, value in (("n", n), ("m", m), ("r", r), ("q", q)):
        if not is_number(value) or int(value) != value:
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if not 1 <= m <= n:
        raise ValueError(f"m (ads shown) must be in [1, n={n}], got {m}")
    if not 0 <= r < m:
        raise ValueError(f"r (reserved ads) must be in [0, m={m}), got {r}")
    if not 1 <= q <= n - r:
        raise ValueError(f"q (low-rank list size) must be in [1, n - r = {n - r}], got {q}")


def _random_order(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """One uniformly random permutation of ``range(cols)`` per row."""
    return np.argsort(rng.random((rows, cols)), axis=1)


def algorithm1_slates(ranked: np.ndarray, epsilon, m: int, r: int, q: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 1 on a batch: the ``m`` shown ads per row, and whether each came from L.

    ``ranked``: (B, n) candidates of each page view, best CFB score first; ``epsilon``: scalar or (B,).
    Returns ``(shown (B, m), from_low (B, m) bool)``, slots in display order.
    """
    ranked = np.asarray(ranked)
    batch, n = ranked.shape
    check_list_sizes(n, m, r, q)
    eps = np.broadcast_to(np.asarray(epsilon, dtype=np.float64), (batch,))
    n_high = n - q - r
    high = np.take_along_axis(ranked[:, r:n - q], _random_order(rng, batch, n_high), axis=1)
    low = np.take_along_axis(ranked[:, n - q:], _random_order(rng, batch, q), axis=1)
    pool = np.concatenate([high, low], axis=1)  # H then L, each in random order
    shown = np.empty((batch, m), dtype=ranked.dtype)
    from_low = np.zeros((batch, m), dtype=bool)
    shown[:, :r] = ranked[:, :r]
    taken_high = np.zeros(batch, dtype=np.int64)
    taken_low = np.zeros(batch, dtype=np.int64)
    rows = np.arange(batch)
    explore = rng.random((batch, m - r)) < eps[:, None]
    for slot in range(r, m):
        # While both lists have ads the Bernoulli draw picks; afterwards the rest of H, then of L.
        both = (taken_high < n_high) & (taken_low < q)
        take_low = np.where(both, explore[:, slot - r], taken_high >= n_high)
        position = np.where(take_low, n_high + np.minimum(taken_low, q - 1), np.minimum(taken_high, n_high))
        shown[:, slot] = pool[rows, np.minimum(position, n - r - 1)]
        from_low[:, slot] = take_low
        taken_low += take_low
        taken_high += ~take_low
    return shown, from_low


def algorithm1_inclusion(n: int, m: int, r: int, q: int, epsilon: float) -> np.ndarray:
    """Exact probability that each rank 1..n is shown by Algorithm 1 (the top ``r``: 1)."""
    check_list_sizes(n, m, r, q)
    eps = check_probability(epsilon, "epsilon")
    n_high, picks = n - q - r, m - r
    # K = ads taken from L among the picks: Binomial(picks, eps) while both lists last, then forced.
    explore = np.array([math.comb(picks, k) * eps ** k * (1 - eps) ** (picks - k) for k in range(picks + 1)])
    from_low = np.clip(np.arange(picks + 1), picks - n_high, q)
    k_pmf = np.bincount(from_low, weights=explore, minlength=picks + 1)
    ks = np.arange(picks + 1)
    probs = np.ones(n)
    probs[r:n - q] = (k_pmf * (picks - ks)).sum() / max(n_high, 1)
    probs[n - q:] = (k_pmf * ks).sum() / q
    return probs


def confidence_weights(impressions: np.ndarray, w: float, b: float, threshold: float) -> np.ndarray:
    """Algorithm 3's promotion weights ``1 - C(x)``, ``C(x) = tanh(x / b)`` (0 below ``threshold``).

    Pairs with ``x >= w`` impressions get weight 0 (never promoted).
    """
    x = np.asarray(impressions, dtype=np.float64)
    confidence = np.where(x < threshold, 0.0, np.tanh(x / b))
    return np.where(x < w, 1.0 - confidence, 0.0)


def algorithm3_slates(ranked: np.ndarray, impressions: np.ndarray, epsilon, m: int, r: int, q: int,
                      w: float, b: float, threshold: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 3 on a batch: the ``m`` shown ads per row, and whether each came from P.

    ``ranked``: (B, n) candidates, best CFB score first; ``impressions``: (B, n) their CFB
    impressions ``x``. P is drawn by successive sampling without replacement with weights
    ``1 - C(x)`` (Efraimidis-Spirakis keys ``u ** (1 / weight)``, largest first); ads of weight 0
    never enter it, so P can be shorter than ``q``.
    """
    ranked = np.asarray(ranked)
    batch, n = ranked.shape
    check_list_sizes(n, m, r, q)
    eps = np.broadcast_to(np.asarray(epsilon, dtype=np.float64), (batch,))
    weights = confidence_weights(np.asarray(impressions)[:, r:], w, b, threshold)
    with np.errstate(divide="ignore"):
        keys = np.where(weights > 0, rng.random(weights.shape) ** (1.0 / weights), -1.0)
    queue_pos = np.argsort(-keys, axis=1, kind="stable")[:, :q]
    queue_len = np.minimum((weights > 0).sum(axis=1), q)
    promo = np.take_along_axis(ranked[:, r:], queue_pos, axis=1)
    rest = ranked[:, r:]
    shown = np.empty((batch, m), dtype=ranked.dtype)
    from_promo = np.zeros((batch, m), dtype=bool)
    shown[:, :r] = ranked[:, :r]
    filled = np.full(batch, r, dtype=np.int64)
    taken_promo = np.zeros(batch, dtype=np.int64)
    taken_rest = np.zeros(batch, dtype=np.int64)
    rows = np.arange(batch)
    # Every step pops one ad from P or A, so q + n - r steps empty both lists.
    for _ in range(q + n - r):
        open_rows = filled < m
        if not open_rows.any():
            break
        both = (taken_promo < queue_len) & (taken_rest < n - r)
        take_promo = np.where(both, rng.random(batch) < eps, taken_promo < queue_len)
        candidate = np.where(take_promo, promo[rows, np.minimum(taken_promo, q - 1)],
                             rest[rows, np.minimum(taken_rest, n - r - 1)])
        duplicate = (shown == candidate[:, None]) & (np.arange(m) < filled[:, None])
        append = open_rows & ~duplicate.any(axis=1)
        slot = np.minimum(filled, m - 1)
        shown[rows[append], slot[append]] = candidate[append]
        from_promo[rows[append], slot[append]] = take_promo[append]
        filled += append
        taken_promo += open_rows & take_promo
        taken_rest += open_rows & ~take_promo
    return shown, from_promo


def algorithm3_inclusion(impressions, m: int, r: int, q: int, epsilon: float, w: float, b: float,
                         threshold: float) -> np.ndarray:
    """Exact probability that each rank 1..n is shown by Algorithm 3, for one page view.

    ``impressions``: (n,) the CFB impressions of the ranked candidates. Enumerates the draws that
    matter: the Bernoulli choices until ``m`` ads are placed and, lazily, the promotional queue only
    as far as it is popped (each next element with probability weight / remaining weight).
    """
    x = np.asarray(impressions, dtype=np.float64).reshape(-1)
    n = x.size
    check_list_sizes(n, m, r, q)
    eps = check_probability(epsilon, "epsilon")
    weights = confidence_weights(x[r:], w, b, threshold)
    queue_len = min(int((weights > 0).sum()), q)
    probs = np.zeros(n)
    probs[:r] = 1.0

    def place(shown: tuple, queue: tuple, popped_rest: int, mass: float) -> None:
        if len(shown) == m:
            probs[list(shown[r:])] += mass
            return
        promo_left, rest_left = len(queue) < queue_len, popped_rest < n - r
        choices = [(eps if rest_left else 1.0, True)] if promo_left else []
        if rest_left:
            choices.append((1.0 - eps if promo_left else 1.0, False))
        for chance, from_promo in choices:
            if chance == 0.0:
                continue
            if not from_promo:
                ad = r + popped_rest
                place(shown if ad in shown else shown + (ad,), queue, popped_rest + 1, mass * chance)
                continue
            remaining = weights.sum() - weights[[j - r for j in queue]].sum()
            for j in np.flatnonzero(weights > 0).tolist():
                ad = r + j
                if ad not in queue:
                    grown = shown if ad in shown else shown + (ad,)
                    place(grown, queue + (ad,), popped_rest, mass * chance * weights[j] / remaining)

    place(tuple(range(r)), (), 0, 1.0)
    return probs


class ExponentiatedGradient:
    """Algorithm 2's distribution ``p`` over candidate epsilons, learned by exponentiated gradient.

    Per page view ``d ~ p`` picks ``epsilon_d``; on its click ``c`` in [0, 1] every weight moves::

        w_k <- w_k * exp(tau * (c * 1[k = d] + beta) / p_k)
        p_k <- (1 - kappa) * w_k / sum_j w_j + kappa / T

    ``beta`` is the additive bonus inside the exponent, ``tau`` its multiplier, ``kappa`` the
    uniform mix that keeps ``p_k >= kappa / T``. Weights are kept as ``log w`` (``p`` depends only on
    their differences). ``theorem1_settings`` gives the paper's values for T, N and delta.

    Args:
        epsilons: the candidates (default: the paper's 0.06 .. 0.51), each in [0, 1].
        tau: > 0. beta: >= 0. kappa: in (0, 1].
    """

    def __init__(self, epsilons=PAPER_EPSILONS, tau: float = 0.01, beta: float = 1e-3, kappa: float = 0.1):
        eps = np.asarray(epsilons, dtype=np.float64).reshape(-1)
        if eps.size == 0:
            raise ValueError("epsilons must hold at least one candidate epsilon")
        for i, e in enumerate(eps.tolist()):
            check_probability(e, f"epsilons[{i}]")
        if not (is_number(tau) and np.isfinite(tau) and tau > 0):
            raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
        if not (is_number(beta) and np.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
        if not (is_number(kappa) and np.isfinite(kappa) and 0 < kappa <= 1):
            raise ValueError(f"kappa must be in (0, 1], got {kappa!r}")
        self.epsilons = eps
        self.tau, self.beta, self.kappa = float(tau), float(beta), float(kappa)
        self.log_weights = np.zeros(eps.size)

    @property
    def weights(self) -> np.ndarray:
        """``w`` (exp of the log weights; may overflow after very long runs, ``p`` does not)."""
        return np.exp(self.log_weights)

    @property
    def probabilities(self) -> np.ndarray:
        z = np.exp(self.log_weights - self.log_weights.max())
        return (1.0 - self.kappa) * z / z.sum() + self.kappa / self.epsilons.size

    def draw(self, rng: np.random.Generator, size: int | None = None):
        """Indices ``d ~ p`` (one, or ``size`` of them)."""
        cdf = np.cumsum(self.probabilities)
        d = np.searchsorted(cdf, rng.random(size), side="right")
        return np.minimum(d, self.epsilons.size - 1)

    def update(self, d, clicks, probs=None) -> None:
        """The EG step for page views played with ``epsilon_d`` (scalar or array) and their clicks.

        Several page views in one call are summed in the exponent with the same ``p`` (``probs``,
        default the current one): exactly the sequential update when ``p`` does not change in
        between, which is how the simulation batches the pages of an iteration.
        """
        d = np.asarray(d).reshape(-1)
        clicks = np.asarray(clicks, dtype=np.float64).reshape(-1)
        if d.size == 0 or d.dtype.kind not in "iu":
            raise ValueError(f"d must be one or more integer epsilon indices, got {d.tolist()!r}")
        if d.min() < 0 or d.max() >= self.epsilons.size:
            raise ValueError(f"d must be in [0, {self.epsilons.size}), got {d.tolist()[:5]}")
        valid = clicks.shape == d.shape and np.isfinite(clicks).all()
        if not (valid and 0 <= clicks.min() <= clicks.max() <= 1):
            raise ValueError(f"clicks must be {d.size} values in [0, 1], one per d, "
                             f"got {clicks.tolist()[:5]}")
        p = self.probabilities if probs is None else np.asarray(probs, dtype=np.float64)
        if p.shape != self.epsilons.shape or not (np.isfinite(p).all() and p.min() > 0):
            raise ValueError(f"probs must be {self.epsilons.size} probabilities > 0 (the p that d was "
                             f"drawn from), got {p.tolist()}")
        gain = np.bincount(d, weights=clicks, minlength=self.epsilons.size) + d.size * self.beta
        self.log_weights = self.log_weights + self.tau * gain / p
