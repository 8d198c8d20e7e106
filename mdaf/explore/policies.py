"""Slate policies: which candidates fill the slots of one page view, and with what probability.

Every policy exposes ``inclusion_probabilities(candidates, n_slots)``: for each candidate, the
probability that it is shown on this page view given the policy's current state. ``select`` draws a
slate and logs, for every shown ad, that probability as its propensity; the off-policy estimators
(``mdaf.explore.estimators``) use the same numbers for the target policy.

Epsilon policies (fixed, decreasing, and the exponentiated-gradient one of Li et al., KDD 2010)
share one mechanism. Per round an epsilon is fixed (EG: ``d ~ p`` picks ``epsilon_d``), then each of
the ``n_show = min(n_slots, N)`` slots draws ``Bernoulli(epsilon)``: 1 means *explore* (take from the
low-ranked list L), 0 means *exploit* (take the best remaining ad of the high-ranked list H); a slot
whose list is empty takes from the other. H is taken in rank order; the ads from L are drawn
uniformly or, with ``exploration="confidence"``, with probability decreasing in their impressions
(``mdaf.explore.slots``). Exact propensities follow: with ``K`` the number of ads taken from L,

    P(H[j] shown) = P(K < n_show - j),      P(L[i] shown) = sum_k P(K = k) * pi_i(k),

where ``P(K = k)`` mixes the binomial explore counts over ``p_d`` and ``pi_i(k)`` is the inclusion
probability of ``L[i]`` in a draw of ``k`` ads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mdaf.explore.slots import (
    Candidates,
    binomial_pmf,
    capped_inclusion_probabilities,
    high_low_lists,
    low_count_pmf,
    systematic_sample,
)

EXPLORATION_MODES = ("uniform", "confidence")


@dataclass(frozen=True)
class Slate:
    """One page view's decision.

    ``index``: positions into the candidates, in slot order; ``ads``: the shown ad ids;
    ``propensities``: probability each shown ad was going to be shown (see module docstring);
    ``explored``: whether each slot's ad came from the exploration list; ``epsilon_index`` and
    ``epsilon_probs``: the EG draw ``d`` and the vector ``p`` it was drawn from (-1 and empty otherwise).
    """

    index: np.ndarray
    ads: np.ndarray
    propensities: np.ndarray
    explored: np.ndarray
    epsilon_index: int = -1
    epsilon_probs: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _check_slots(n_slots: int) -> int:
    if int(n_slots) != n_slots or n_slots < 1:
        raise ValueError(f"n_slots must be a positive integer, got {n_slots}")
    return int(n_slots)


def _check_epsilon(value: float, name: str = "epsilon") -> float:
    if not (np.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def _rewards(slate: Slate, clicks) -> np.ndarray:
    clicks = np.asarray(clicks, dtype=np.float64).reshape(-1)
    if clicks.shape != slate.ads.shape:
        raise ValueError(f"clicks must have one value per shown ad ({slate.ads.size}), got {clicks.size}")
    if np.any((clicks < 0) | (clicks > 1)) or not np.all(np.isfinite(clicks)):
        raise ValueError("clicks must be in [0, 1] (a click indicator per shown ad)")
    return clicks


class SlatePolicy:
    """Base class: subclasses define ``inclusion_probabilities`` and ``select``."""

    name = "policy"

    def inclusion_probabilities(self, candidates: Candidates, n_slots: int) -> np.ndarray:
        raise NotImplementedError

    def select(self, candidates: Candidates, n_slots: int, rng: np.random.Generator) -> Slate:
        raise NotImplementedError

    def update(self, slate: Slate, clicks) -> None:
        """Learn from the clicks (one per shown ad) on a slate this policy selected."""
        _rewards(slate, clicks)


def _top_slate(candidates: Candidates, order: np.ndarray, n_show: int) -> Slate:
    """The first ``n_show`` of ``order``, shown for sure (a deterministic policy)."""
    index = order[:n_show]
    return Slate(index=index, ads=candidates.ads[index], propensities=np.ones(n_show),
                 explored=np.zeros(n_show, dtype=bool))


class GreedyPolicy(SlatePolicy):
    """Always the top-scored candidates (no exploration; propensity 1 for what it shows)."""

    name = "greedy"

    def inclusion_probabilities(self, candidates: Candidates, n_slots: int) -> np.ndarray:
        n_show = min(_check_slots(n_slots), len(candidates))
        probs = np.zeros(len(candidates))
        probs[np.argsort(-candidates.scores, kind="stable")[:n_show]] = 1.0
        return probs

    def select(self, candidates: Candidates, n_slots: int, rng: np.random.Generator) -> Slate:
        n_show = min(_check_slots(n_slots), len(candidates))
        return _top_slate(candidates, np.argsort(-candidates.scores, kind="stable"), n_show)


class _ListPolicy(SlatePolicy):
    """Exploit from H, explore from L; subclasses say how many slots explore (``_explore_pmf``)."""

    def __init__(self, exploration: str = "uniform", confidence_bonus: float = 1.0):
        if exploration not in EXPLORATION_MODES:
            raise ValueError(f"exploration must be one of {EXPLORATION_MODES}, got {exploration!r}")
        if not confidence_bonus > 0:
            raise ValueError(f"confidence_bonus must be > 0, got {confidence_bonus}")
        self.exploration = exploration
        self.confidence_bonus = float(confidence_bonus)

    def _n_show(self, candidates: Candidates, n_slots: int) -> int:
        return min(_check_slots(n_slots), len(candidates))

    def _explore_pmf(self, n_show: int) -> np.ndarray:
        """P(x of the n_show slots draw explore), x = 0..n_show."""
        raise NotImplementedError

    def _draw_explore(self, n_show: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """One draw of the per-slot explore flags, and what ``update`` needs to know about it."""
        raise NotImplementedError

    def exploration_weights(self, candidates: Candidates, low: np.ndarray) -> np.ndarray:
        """Relative chance of each ad of L when exploring.

        ``uniform``: equal. ``confidence``: a UCB-like score ``s_i + c * sqrt(ln(2 + N) / (1 + n_i))``
        (``s_i`` the ranker's score, ``n_i`` the ad's impressions in this context, ``N`` their sum
        over L, ``c`` = ``confidence_bonus``): ads with few impressions get more chances.
        """
        if self.exploration == "uniform":
            return np.ones(low.size)
        n = candidates.impressions[low]
        bonus = np.sqrt(np.log(2.0 + n.sum()) / (1.0 + n))
        return candidates.scores[low] + self.confidence_bonus * bonus

    def _inclusion(self, candidates: Candidates, n_show: int, high: np.ndarray, low: np.ndarray,
                   weights: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Inclusion probabilities of all candidates, and the per-k draws from L they used."""
        k_pmf = low_count_pmf(self._explore_pmf(n_show), high.size, low.size)
        probs = np.zeros(len(candidates))
        # H[j] is shown iff fewer than n_show - j ads come from L.
        cdf = np.cumsum(k_pmf)
        n_high_shown = min(high.size, n_show)
        probs[high[:n_high_shown]] = cdf[n_show - 1 - np.arange(n_high_shown)]
        low_draws = {}
        for k in np.flatnonzero(k_pmf > 0).tolist():
            low_draws[k] = capped_inclusion_probabilities(weights, k)
            probs[low] += k_pmf[k] * low_draws[k]
        return np.minimum(probs, 1.0), low_draws

    def inclusion_probabilities(self, candidates: Candidates, n_slots: int) -> np.ndarray:
        high, low = high_low_lists(candidates)
        n_show = self._n_show(candidates, n_slots)
        return self._inclusion(candidates, n_show, high, low, self.exploration_weights(candidates, low))[0]

    def select(self, candidates: Candidates, n_slots: int, rng: np.random.Generator) -> Slate:
        n_show = self._n_show(candidates, n_slots)
        high, low = high_low_lists(candidates)
        weights = self.exploration_weights(candidates, low)
        propensities, low_draws = self._inclusion(candidates, n_show, high, low, weights)
        explore, info = self._draw_explore(n_show, rng)
        n_low = min(max(int(explore.sum()), n_show - high.size), low.size)
        draw = low_draws[n_low] if n_low in low_draws else capped_inclusion_probabilities(weights, n_low)
        low_pick = low[systematic_sample(draw, rng)]
        index, explored = np.empty(n_show, dtype=np.int64), np.empty(n_show, dtype=bool)
        h = l = 0
        for slot, wants_low in enumerate(explore.tolist()):
            take_low = l < n_low if wants_low else h >= n_show - n_low
            if take_low:
                index[slot], l = low_pick[l], l + 1
            else:
                index[slot], h = high[h], h + 1
            explored[slot] = take_low
        return Slate(index=index, ads=candidates.ads[index], propensities=propensities[index],
                     explored=explored, **info)


class EpsilonGreedyPolicy(_ListPolicy):
    """Fixed epsilon: each slot explores with probability ``epsilon``."""

    name = "eps-greedy"

    def __init__(self, epsilon: float = 0.1, exploration: str = "uniform", confidence_bonus: float = 1.0):
        super().__init__(exploration, confidence_bonus)
        self.epsilon = _check_epsilon(epsilon)

    def current_epsilon(self) -> float:
        return self.epsilon

    def _explore_pmf(self, n_show: int) -> np.ndarray:
        return binomial_pmf(n_show, self.current_epsilon())

    def _draw_explore(self, n_show: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        return rng.random(n_show) < self.current_epsilon(), {}


class EpsilonDecreasingPolicy(EpsilonGreedyPolicy):
    """``epsilon_t = epsilon * decay_rounds / (decay_rounds + t)`` after ``t`` served rounds."""

    name = "eps-decreasing"

    def __init__(self, epsilon: float = 0.5, decay_rounds: float = 1000.0, exploration: str = "uniform",
                 confidence_bonus: float = 1.0):
        super().__init__(epsilon, exploration, confidence_bonus)
        if not decay_rounds > 0:
            raise ValueError(f"decay_rounds must be > 0, got {decay_rounds}")
        self.decay_rounds = float(decay_rounds)
        self.rounds = 0

    def current_epsilon(self) -> float:
        return self.epsilon * self.decay_rounds / (self.decay_rounds + self.rounds)

    def select(self, candidates: Candidates, n_slots: int, rng: np.random.Generator) -> Slate:
        slate = super().select(candidates, n_slots, rng)
        self.rounds += 1
        return slate


class EGEpsilonGreedyPolicy(_ListPolicy):
    """Epsilon-greedy whose epsilon is learned by exponentiated gradient (Li et al., KDD 2010).

    ``T`` candidate epsilons ``epsilon_1..epsilon_T`` carry weights ``w`` (start at 1) and
    probabilities ``p`` (start at ``1/T``). Each round draws ``d ~ p`` and fills the slots with
    ``epsilon_d`` (module docstring). On the round's reward ``r`` in [0, 1] (the fraction of shown ads
    clicked), every weight is updated with the importance-weighted reward ``r * 1[i = d] / p_i``
    plus the regularisation ``kappa / p_i`` (an EXP3.P-style bonus for rarely drawn epsilons)::

        w_i <- w_i * exp(tau * (r * 1[i = d] + kappa) / p_i),    i = 1..T
        p_i <- (1 - beta) * w_i / sum_j w_j + beta / T

    where ``p`` on the right of the first line is the vector ``d`` was drawn from. With
    ``kappa = 0`` only ``w_d`` moves. ``beta`` keeps every ``p_i >= beta / T``. Weights are kept as
    ``log w`` in float64 (``p`` only depends on their differences).

    Args:
        epsilons: the candidate epsilons, each in [0, 1].
        tau: learning rate (> 0); kappa: regularisation (>= 0); beta: floor mixing, in (0, 1].
    """

    name = "eg-eps-greedy"

    def __init__(self, epsilons=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5), tau: float = 0.1, kappa: float = 1e-3,
                 beta: float = 0.1, exploration: str = "uniform", confidence_bonus: float = 1.0):
        super().__init__(exploration, confidence_bonus)
        eps = np.asarray(epsilons, dtype=np.float64).reshape(-1)
        if eps.size == 0:
            raise ValueError("epsilons must hold at least one candidate epsilon")
        for i, e in enumerate(eps.tolist()):
            _check_epsilon(e, f"epsilons[{i}]")
        if not (np.isfinite(tau) and tau > 0):
            raise ValueError(f"tau must be > 0, got {tau}")
        if not (np.isfinite(kappa) and kappa >= 0):
            raise ValueError(f"kappa must be >= 0, got {kappa}")
        if not 0 < beta <= 1:
            raise ValueError(f"beta must be in (0, 1], got {beta}")
        self.epsilons = eps
        self.tau, self.kappa, self.beta = float(tau), float(kappa), float(beta)
        self.log_weights = np.zeros(eps.size)

    @property
    def weights(self) -> np.ndarray:
        """``w`` (exp of the log weights; may overflow after very long runs, ``p`` does not)."""
        return np.exp(self.log_weights)

    @property
    def probabilities(self) -> np.ndarray:
        z = np.exp(self.log_weights - self.log_weights.max())
        return (1.0 - self.beta) * z / z.sum() + self.beta / self.epsilons.size

    def update_weights(self, d: int, reward: float, probs: np.ndarray | None = None) -> None:
        """The EG step for a round played with ``epsilon_d`` (drawn from ``probs``) and reward ``r``."""
        if not 0 <= d < self.epsilons.size:
            raise ValueError(f"epsilon index d must be in [0, {self.epsilons.size}), got {d}")
        if not (np.isfinite(reward) and 0.0 <= reward <= 1.0):
            raise ValueError(f"reward must be in [0, 1], got {reward}")
        probs = self.probabilities if probs is None else np.asarray(probs, dtype=np.float64)
        gain = np.full(self.epsilons.size, self.kappa)
        gain[d] += reward
        self.log_weights = self.log_weights + self.tau * gain / probs

    def _explore_pmf(self, n_show: int) -> np.ndarray:
        return self.probabilities @ binomial_pmf(n_show, self.epsilons)

    def _draw_explore(self, n_show: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        probs = self.probabilities
        d = min(int(np.searchsorted(np.cumsum(probs), rng.random(), side="right")), probs.size - 1)
        return rng.random(n_show) < self.epsilons[d], {"epsilon_index": d, "epsilon_probs": probs}

    def update(self, slate: Slate, clicks) -> None:
        rewards = _rewards(slate, clicks)
        if slate.epsilon_index < 0:
            raise ValueError("slate was not selected by an EG policy (no epsilon index)")
        reward = float(rewards.mean()) if rewards.size else 0.0
        self.update_weights(slate.epsilon_index, reward, slate.epsilon_probs)


class ReservedSlotsPolicy(_ListPolicy):
    """``r`` slots for the top of H (exploitation) and ``q`` drawn from L (exploration).

    A list too short for its slots hands them to the other; ``r + q`` must not exceed the candidates.
    """

    name = "reserved-slots"

    def __init__(self, r: int, q: int, exploration: str = "uniform", confidence_bonus: float = 1.0):
        super().__init__(exploration, confidence_bonus)
        if r < 0 or q < 0 or r + q < 1 or int(r) != r or int(q) != q:
            raise ValueError(f"r and q must be non-negative integers with r + q >= 1, got r={r}, q={q}")
        self.r, self.q = int(r), int(q)

    def _n_show(self, candidates: Candidates, n_slots: int) -> int:
        if _check_slots(n_slots) != self.r + self.q:
            raise ValueError(f"n_slots ({n_slots}) must equal r + q ({self.r} + {self.q})")
        if self.r + self.q > len(candidates):
            raise ValueError(f"r + q = {self.r + self.q} slots but only {len(candidates)} candidates")
        return n_slots

    def _explore_pmf(self, n_show: int) -> np.ndarray:
        pmf = np.zeros(n_show + 1)
        pmf[self.q] = 1.0
        return pmf

    def _draw_explore(self, n_show: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        return np.arange(n_show) >= self.r, {}


class UCB1Policy(SlatePolicy):
    """UCB1 on the (context, ad) counts: ``mean_i + c * sqrt(2 ln N / n_i)``, unseen ads first."""

    name = "ucb1"

    def __init__(self, c: float = 1.0):
        if not c >= 0:
            raise ValueError(f"c must be >= 0, got {c}")
        self.c = float(c)

    def _order(self, candidates: Candidates) -> np.ndarray:
        n, clicks = candidates.impressions, candidates.clicks
        total = max(n.sum(), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(n > 0, clicks / n + self.c * np.sqrt(2.0 * np.log(total) / n), np.inf)
        return np.argsort(-score, kind="stable")

    def inclusion_probabilities(self, candidates: Candidates, n_slots: int) -> np.ndarray:
        probs = np.zeros(len(candidates))
        probs[self._order(candidates)[:min(_check_slots(n_slots), len(candidates))]] = 1.0
        return probs

    def select(self, candidates: Candidates, n_slots: int, rng: np.random.Generator) -> Slate:
        return _top_slate(candidates, self._order(candidates), min(_check_slots(n_slots), len(candidates)))


class ThompsonSamplingPolicy(SlatePolicy):
    """Top ads by a draw from each ad's Beta(alpha + clicks, beta + non-clicks) posterior.

    Inclusion probabilities have no closed form: they are Monte Carlo estimates from
    ``propensity_samples`` extra posterior draws (the realised draw included, so a shown ad's
    propensity is at least ``1 / (propensity_samples + 1)``).
    """

    name = "thompson"

    def __init__(self, alpha: float = 1.0, beta: float = 19.0, propensity_samples: int = 100, seed: int = 0):
        if not (alpha > 0 and beta > 0):
            raise ValueError(f"alpha and beta must be > 0, got {alpha}, {beta}")
        if propensity_samples < 1:
            raise ValueError(f"propensity_samples must be >= 1, got {propensity_samples}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.propensity_samples = int(propensity_samples)
        self._mc_rng = np.random.default_rng(seed)

    def _draws(self, candidates: Candidates, size: int, rng: np.random.Generator) -> np.ndarray:
        a = self.alpha + candidates.clicks
        b = self.beta + candidates.impressions - candidates.clicks
        return rng.beta(a, b, size=(size, len(candidates)))

    def _shown_counts(self, theta: np.ndarray, n_show: int) -> np.ndarray:
        top = np.argpartition(-theta, n_show - 1, axis=1)[:, :n_show]
        return np.bincount(top.reshape(-1), minlength=theta.shape[1]).astype(np.float64)

    def inclusion_probabilities(self, candidates: Candidates, n_slots: int) -> np.ndarray:
        n_show = min(_check_slots(n_slots), len(candidates))
        theta = self._draws(candidates, self.propensity_samples, self._mc_rng)
        return self._shown_counts(theta, n_show) / self.propensity_samples

    def select(self, candidates: Candidates, n_slots: int, rng: np.random.Generator) -> Slate:
        n_show = min(_check_slots(n_slots), len(candidates))
        theta = self._draws(candidates, 1, rng)
        index = np.argsort(-theta[0], kind="stable")[:n_show]
        extra = self._draws(candidates, self.propensity_samples, self._mc_rng)
        counts = self._shown_counts(np.concatenate([theta, extra]), n_show)
        return Slate(index=index, ads=candidates.ads[index],
                     propensities=counts[index] / (self.propensity_samples + 1),
                     explored=np.zeros(n_show, dtype=bool))
