"""Slate policies: which candidates fill the slots of one page view, and with what probability.

Every policy exposes ``inclusion_probabilities(candidates, n_slots)``: for each candidate, the
probability that it is shown on this page view given the policy's current state. ``select`` draws a
slate and logs, for every shown ad, that probability as its propensity; the off-policy estimators
(``mdaf.explore.estimators``) use the same numbers for the target policy.

The algorithms of Li et al., KDD 2010 (``mdaf.explore.li2010``), with the paper's symbols:
``EpsilonGreedyPolicy`` (Algorithm 1: r reserved, H = ranks r+1..n-q, L = the bottom q, random picks
inside each list), ``EpsilonDecreasingPolicy`` (Algorithm 1 with the paper's schedule),
``EGEpsilonGreedyPolicy`` (Algorithm 2: epsilon learned by exponentiated gradient) and
``ConfidencePolicy`` (Algorithm 3: promotional queue weighted by 1 - tanh(x / b), cap w). Their
propensities are exact.

Not the paper's, kept as separately named variants (this project's): ``GraduationEpsilonGreedyPolicy``,
``GraduationEGPolicy`` and ``ReservedSlotsPolicy`` split the candidates by *graduation* instead of
rank: an ad leaves the explorable list L once its impressions over all contexts reach the
graduation threshold; H (the graduated ads) is taken in rank order, each slot explores with
probability epsilon, and the ads of L are drawn uniformly or, with ``exploration="ucb-bonus"``, with
a UCB-like bonus for few impressions (``mdaf.explore.slots``). Exact propensities follow: with ``K``
the number of ads taken from L,

    P(H[j] shown) = P(K < n_show - j),      P(L[i] shown) = sum_k P(K = k) * pi_i(k),

where ``P(K = k)`` mixes the binomial explore counts over the EG distribution ``p`` and ``pi_i(k)``
is the inclusion probability of ``L[i]`` in a draw of ``k`` ads. ``UCB1Policy`` and
``ThompsonSamplingPolicy`` are the usual bandit baselines; ``ucb1_constant`` and
``thompson_prior`` put their settings on the CTR scale by a fixed rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mdaf.explore.cfb import is_number
from mdaf.explore.li2010 import (
    PAPER_EPSILONS,
    ExponentiatedGradient,
    algorithm1_inclusion,
    algorithm1_slates,
    algorithm3_inclusion,
    algorithm3_slates,
    check_probability,
    decreasing_epsilon,
)
from mdaf.explore.slots import (
    Candidates,
    binomial_pmf,
    capped_inclusion_probabilities,
    high_low_lists,
    low_count_pmf,
    systematic_sample,
)

EXPLORATION_MODES = ("uniform", "ucb-bonus")


@dataclass(frozen=True)
class Slate:
    """One page view's decision.

    ``index``: positions into the candidates, in slot order; ``ads``: the shown ad ids;
    ``propensities``: probability each shown ad was going to be shown (see module docstring);
    ``explored``: whether each slot's ad came from the exploration list (L, or Algorithm 3's
    promotional queue); ``epsilon_index`` and ``epsilon_probs``: the EG draw ``d`` and the vector
    ``p`` it was drawn from (-1 and empty otherwise).
    """

    index: np.ndarray
    ads: np.ndarray
    propensities: np.ndarray
    explored: np.ndarray
    epsilon_index: int = -1
    epsilon_probs: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _check_slots(n_slots: int) -> int:
    if not is_number(n_slots) or int(n_slots) != n_slots or n_slots < 1:
        raise ValueError(f"n_slots must be a positive integer, got {n_slots!r}")
    return int(n_slots)


def _check_count(value, name: str, minimum: int = 0) -> int:
    if not is_number(value) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_positive(value, name: str) -> float:
    if not (is_number(value) and np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _rewards(slate: Slate, clicks) -> np.ndarray:
    clicks = np.asarray(clicks, dtype=np.float64).reshape(-1)
    if clicks.shape != slate.ads.shape:
        raise ValueError(f"clicks must have one value per shown ad ({slate.ads.size}), got {clicks.size}")
    if not np.all(np.isfinite(clicks)) or np.any((clicks < 0) | (clicks > 1)):
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


def _rank_order(candidates: Candidates) -> np.ndarray:
    return np.argsort(-candidates.scores, kind="stable")


def _eg_update(eg: ExponentiatedGradient, slate: Slate, clicks) -> None:
    """Algorithm 2's step for one page view: ``c`` = 1 if any shown ad was clicked."""
    rewards = _rewards(slate, clicks)
    if slate.epsilon_index < 0:
        raise ValueError("slate was not selected by an EG policy (no epsilon index)")
    eg.update(slate.epsilon_index, float(rewards.max()) if rewards.size else 0.0, slate.epsilon_probs)


class GreedyPolicy(SlatePolicy):
    """Always the top-scored candidates (pure exploitation; propensity 1 for what it shows)."""

    name = "greedy"

    def inclusion_probabilities(self, candidates: Candidates, n_slots: int) -> np.ndarray:
        n_show = min(_check_slots(n_slots), len(candidates))
        probs = np.zeros(len(candidates))
        probs[_rank_order(candidates)[:n_show]] = 1.0
        return probs

    def select(self, candidates: Candidates, n_slots: int, rng: np.random.Generator) -> Slate:
        n_show = min(_check_slots(n_slots), len(candidates))
        return _top_slate(candidates, _rank_order(candidates), n_show)


# --- Li et al., KDD 2010 ------------------------------------------------------------------------

class EpsilonGreedyPolicy(SlatePolicy):
    """Algorithm 1 of Li et al. (KDD 2010) on the top ``n`` candidates by score; ``m`` = n_slots.

    F = the top ``r``; H = ranks r+1..n-q; L = the bottom ``q``; each further slot takes a uniformly
    random ad of L with probability ``epsilon``, else one of H (the rest of the other list once one
    is empty). Fewer than ``n`` candidates shrink ``n`` (H first); r < m and q <= n - r are required.
    """

    name = "epsilon-greedy"

    def __init__(self, epsilon: float = 0.1, r: int = 1, q: int = 4, n: int = 10):
        self.epsilon = check_probability(epsilon, "epsilon")
        self.r, self.q = _check_count(r, "r"), _check_count(q, "q", 1)
        self.n = _check_count(n, "n", 1)

    def current_epsilon(self) -> float:
        return self.epsilon

    def _ranked(self, candidates: Candidates) -> np.ndarray:
        return _rank_order(candidates)[:self.n]

    def _draw_epsilon(self, rng: np.random.Generator) -> tuple[float, dict]:
        return self.current_epsilon(), {}

    def _rank_inclusion(self, n: int, m: int) -> np.ndarray:
        return algorithm1_inclusion(n, m, self.r, self.q, self.current_epsilon())

    def inclusion_probabilities(self, candidates: Candidates, n_slots: int) -> np.ndarray:
        ranked = self._ranked(candidates)
        probs = np.zeros(len(candidates))
        probs[ranked] = self._rank_inclusion(ranked.size, _check_slots(n_slots))
        return probs

    def select(self, candidates: Candidates, n_slots: int, rng: np.random.Generator) -> Slate:
        ranked = self._ranked(candidates)
        m = _check_slots(n_slots)
        rank_probs = self._rank_inclusion(ranked.size, m)
        epsilon, info = self._draw_epsilon(rng)
        shown, explored = algorithm1_slates(np.arange(ranked.size)[None, :], epsilon, m, self.r, self.q, rng)
        index = ranked[shown[0]]
        return Slate(index=index, ads=candidates.ads[index], propensities=rank_probs[shown[0]],
                     explored=explored[0], **info)


class EpsilonDecreasingPolicy(EpsilonGreedyPolicy):
    """Algorithm 1 with the paper's schedule: epsilon 0.51, minus 0.05 every 2,000 iterations, >= 0.01.

    An iteration is one call of ``select`` times ``1 / pages_per_iteration`` (the paper's iteration
    serves every page once).
    """

    name = "epsilon-decreasing"

    def __init__(self, r: int = 1, q: int = 4, n: int = 10, pages_per_iteration: int = 1):
        super().__init__(0.0, r, q, n)
        self.pages_per_iteration = _check_count(pages_per_iteration, "pages_per_iteration", 1)
        self.page_views = 0

    def current_epsilon(self) -> float:
        return float(decreasing_epsilon(self.page_views // self.pages_per_iteration))

    def select(self, candidates: Candidates, n_slots: int, rng: np.random.Generator) -> Slate:
        slate = super().select(candidates, n_slots, rng)
        self.page_views += 1
        return slate


class EGEpsilonGreedyPolicy(EpsilonGreedyPolicy):
    """Algorithm 2: Algorithm 1 with ``epsilon_d``, ``d ~ p`` per page view, ``p`` learned by EG.

    ``tau``, ``beta``, ``kappa`` are the paper's (``ExponentiatedGradient``; ``theorem1_settings``
    gives Theorem 1's values); the click of a page view is 1 if any shown ad was clicked.
    """

    name = "eg-epsilon-greedy"

    def __init__(self, epsilons=PAPER_EPSILONS, tau: float = 0.01, beta: float = 1e-3, kappa: float = 0.1,
                 r: int = 1, q: int = 4, n: int = 10):
        super().__init__(0.0, r, q, n)
        self.eg = ExponentiatedGradient(epsilons, tau=tau, beta=beta, kappa=kappa)

    def _rank_inclusion(self, n: int, m: int) -> np.ndarray:
        per_epsilon = [algorithm1_inclusion(n, m, self.r, self.q, e) for e in self.eg.epsilons.tolist()]
        return self.eg.probabilities @ np.stack(per_epsilon)

    def _draw_epsilon(self, rng: np.random.Generator) -> tuple[float, dict]:
        probs = self.eg.probabilities
        d = int(self.eg.draw(rng))
        return float(self.eg.epsilons[d]), {"epsilon_index": d, "epsilon_probs": probs}

    def update(self, slate: Slate, clicks) -> None:
        _eg_update(self.eg, slate, clicks)


class ConfidencePolicy(SlatePolicy):
    """Algorithm 3 of Li et al. (KDD 2010): confidence-based exploration on the top ``n`` candidates.

    The promotional queue P holds ``q`` ads drawn without replacement from ranks r+1..n with weights
    ``1 - tanh(x / b)`` (``x``: the candidate's (context, ad) impressions; weight 1 below the CFB
    ``threshold``, 0 from the cap ``w``); each further slot pops the head of P with probability
    ``epsilon``, else the head of the ranked list, skipping ads already shown.
    """

    name = "confidence"

    def __init__(self, epsilon: float = 0.5, r: int = 1, q: int = 4, n: int = 10, w: float = 1000.0,
                 b: float = 300.0, threshold: float = 100.0):
        self.epsilon = check_probability(epsilon, "epsilon")
        self.r, self.q = _check_count(r, "r"), _check_count(q, "q", 1)
        self.n = _check_count(n, "n", 1)
        self.w, self.b = _check_positive(w, "w"), _check_positive(b, "b")
        self.threshold = _check_positive(threshold, "threshold")

    def _settings(self, m: int) -> tuple:
        return m, self.r, self.q, self.epsilon, self.w, self.b, self.threshold

    def inclusion_probabilities(self, candidates: Candidates, n_slots: int) -> np.ndarray:
        ranked = _rank_order(candidates)[:self.n]
        probs = np.zeros(len(candidates))
        settings = self._settings(_check_slots(n_slots))
        probs[ranked] = algorithm3_inclusion(candidates.impressions[ranked], *settings)
        return probs

    def select(self, candidates: Candidates, n_slots: int, rng: np.random.Generator) -> Slate:
        ranked = _rank_order(candidates)[:self.n]
        m = _check_slots(n_slots)
        x = candidates.impressions[ranked]
        rank_probs = algorithm3_inclusion(x, *self._settings(m))
        shown, explored = algorithm3_slates(np.arange(ranked.size)[None, :], x[None, :], self.epsilon, m,
                                            self.r, self.q, self.w, self.b, self.threshold, rng)
        index = ranked[shown[0]]
        return Slate(index=index, ads=candidates.ads[index], propensities=rank_probs[shown[0]],
                     explored=explored[0])


# --- this project's graduation variants (not the paper's) ---------------------------------------

class _GraduationListPolicy(SlatePolicy):
    """Exploit from H, explore from L; subclasses say how many slots explore (``_explore_pmf``)."""

    def __init__(self, exploration: str = "uniform", ucb_bonus: float = 1.0):
        if exploration not in EXPLORATION_MODES:
            raise ValueError(f"exploration must be one of {EXPLORATION_MODES}, got {exploration!r}")
        self.exploration = exploration
        self.ucb_bonus = _check_positive(ucb_bonus, "ucb_bonus")

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

        ``uniform``: equal. ``ucb-bonus`` (not the paper's Algorithm 3): a UCB-like score
        ``s_i + c * sqrt(ln(2 + N) / (1 + n_i))`` (``s_i`` the ranker's score, ``n_i`` the ad's
        impressions in this context, ``N`` their sum over L, ``c`` = ``ucb_bonus``).
        """
        if self.exploration == "uniform":
            return np.ones(low.size)
        n = candidates.impressions[low]
        bonus = np.sqrt(np.log(2.0 + n.sum()) / (1.0 + n))
        return candidates.scores[low] + self.ucb_bonus * bonus

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


class GraduationEpsilonGreedyPolicy(_GraduationListPolicy):
    """Graduation lists (not the paper's Algorithm 1): each slot explores with probability ``epsilon``."""

    name = "graduation-epsilon-greedy"

    def __init__(self, epsilon: float = 0.1, exploration: str = "uniform", ucb_bonus: float = 1.0):
        super().__init__(exploration, ucb_bonus)
        self.epsilon = check_probability(epsilon, "epsilon")

    def _explore_pmf(self, n_show: int) -> np.ndarray:
        return binomial_pmf(n_show, self.epsilon)

    def _draw_explore(self, n_show: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        return rng.random(n_show) < self.epsilon, {}


class GraduationEGPolicy(_GraduationListPolicy):
    """Algorithm 2's EG epsilon (paper's ``tau``, ``beta``, ``kappa``) over the graduation lists."""

    name = "graduation-eg"

    def __init__(self, epsilons=PAPER_EPSILONS, tau: float = 0.01, beta: float = 1e-3, kappa: float = 0.1,
                 exploration: str = "uniform", ucb_bonus: float = 1.0):
        super().__init__(exploration, ucb_bonus)
        self.eg = ExponentiatedGradient(epsilons, tau=tau, beta=beta, kappa=kappa)

    def _explore_pmf(self, n_show: int) -> np.ndarray:
        return self.eg.probabilities @ binomial_pmf(n_show, self.eg.epsilons)

    def _draw_explore(self, n_show: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        probs = self.eg.probabilities
        d = int(self.eg.draw(rng))
        return rng.random(n_show) < self.eg.epsilons[d], {"epsilon_index": d, "epsilon_probs": probs}

    def update(self, slate: Slate, clicks) -> None:
        _eg_update(self.eg, slate, clicks)


class ReservedSlotsPolicy(_GraduationListPolicy):
    """``r`` slots for the top of H (graduated ads) and ``q`` drawn from L (not graduated).

    A list too short for its slots hands them to the other; ``r + q`` must not exceed the candidates.
    """

    name = "reserved-slots"

    def __init__(self, r: int, q: int, exploration: str = "uniform", ucb_bonus: float = 1.0):
        super().__init__(exploration, ucb_bonus)
        self.r, self.q = _check_count(r, "r"), _check_count(q, "q")
        if self.r + self.q < 1:
            raise ValueError(f"r + q must be >= 1, got r={r}, q={q}")

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


# --- bandit baselines ---------------------------------------------------------------------------

def ucb1_constant(mean_ctr: float) -> float:
    """UCB1's exploration constant on the CTR scale: ``2 * sqrt(mu (1 - mu))``.

    UCB1's bonus ``sqrt(2 ln N / n)`` is sized for rewards spread over [0, 1] (standard deviation up
    to 1/2); a click with CTR ``mu`` has standard deviation ``sqrt(mu (1 - mu))``, so the bonus is
    scaled by their ratio. ``mu``: the CTR the system knows before serving (e.g. the mean CTR of
    its initial CFB table), not a per-market choice.
    """
    mu = check_probability(mean_ctr, "mean_ctr")
    return 2.0 * math.sqrt(mu * (1.0 - mu))


def thompson_prior(mean_ctr: float) -> tuple[float, float]:
    """Thompson's Beta prior on the CTR scale: mean ``mu``, one pseudo-click: ``(1, (1 - mu) / mu)``."""
    mu = check_probability(mean_ctr, "mean_ctr")
    if mu == 0:
        raise ValueError("mean_ctr must be > 0 for a Beta prior")
    return 1.0, (1.0 - mu) / mu


class UCB1Policy(SlatePolicy):
    """UCB1 on the (context, ad) counts: ``mean_i + c * sqrt(2 ln N / n_i)``, unseen ads first.

    ``c = 1`` is textbook UCB1 for rewards on [0, 1]; ``ucb1_constant`` gives the CTR-scale value.
    """

    name = "ucb1"

    def __init__(self, c: float = 1.0):
        if not (is_number(c) and np.isfinite(c) and c >= 0):
            raise ValueError(f"c must be a finite number >= 0, got {c!r}")
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


def thompson_inclusion_bounds(alpha, beta, m: int, points: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on each ad's probability of being among the ``m`` largest of independent Beta draws.

    For ad ``i`` with ``F_i`` its Beta(alpha_i, beta_i) CDF, ``P_i = integral_0^1 g_i(u) du`` with
    ``g_i(u)`` = P(at most m - 1 other draws exceed ``F_i^-1(u)``), a Poisson-binomial probability.
    ``g_i`` is nondecreasing in ``u``, so its left and right Riemann sums over ``points`` equal cells
    bound ``P_i`` exactly: ``lower <= P_i <= upper`` with ``upper - lower <= 1 / points``.
    """
    from scipy.special import betainc, betaincinv

    a, b = np.asarray(alpha, dtype=np.float64), np.asarray(beta, dtype=np.float64)
    n = a.size
    m = min(_check_slots(m), n)
    points = _check_count(points, "points", 1)
    u = np.linspace(0.0, 1.0, points + 1)
    lower, upper = np.empty(n), np.empty(n)
    for i in range(n):
        x = betaincinv(a[i], b[i], u)                                    # (points + 1,)
        others = np.delete(np.arange(n), i)
        exceed = 1.0 - betainc(a[others, None], b[others, None], x[None, :])  # (n - 1, points + 1)
        at_most = np.zeros((m, u.size))                                  # P(count = c), c < m
        at_most[0] = 1.0
        for p in exceed:
            at_most[1:] = at_most[1:] * (1.0 - p) + at_most[:-1] * p
            at_most[0] *= 1.0 - p
        g = at_most.sum(axis=0)
        lower[i], upper[i] = g[:-1].mean(), g[1:].mean()
    return lower, upper


class ThompsonSamplingPolicy(SlatePolicy):
    """Top ads by a draw from each ad's Beta(alpha + clicks, beta + non-clicks) posterior.

    Propensities: with ``propensity_points`` > 0, the midpoint of ``thompson_inclusion_bounds``
    (error at most ``1 / (2 * propensity_points)``, proven; about 1 s per page view with 40
    candidates and 2,048 points on a busy core); with 0 (fast serving) its slates log NaN, which
    ``InteractionLog`` and the estimators refuse, and ``inclusion_probabilities`` raises.
    ``thompson_prior`` gives a prior on the CTR scale.
    """

    name = "thompson"

    def __init__(self, alpha: float = 1.0, beta: float = 19.0, propensity_points: int = 0):
        self.alpha, self.beta = _check_positive(alpha, "alpha"), _check_positive(beta, "beta")
        self.propensity_points = _check_count(propensity_points, "propensity_points")

    def _posterior(self, candidates: Candidates) -> tuple[np.ndarray, np.ndarray]:
        return self.alpha + candidates.clicks, self.beta + candidates.impressions - candidates.clicks

    def inclusion_probabilities(self, candidates: Candidates, n_slots: int) -> np.ndarray:
        if self.propensity_points == 0:
            raise ValueError("Thompson sampling with propensity_points=0 has no inclusion probabilities: it "
                             "cannot be a target (or logging) policy of off-policy estimators")
        posterior = self._posterior(candidates)
        lower, upper = thompson_inclusion_bounds(*posterior, n_slots, self.propensity_points)
        return 0.5 * (lower + upper)

    def select(self, candidates: Candidates, n_slots: int, rng: np.random.Generator) -> Slate:
        n_show = min(_check_slots(n_slots), len(candidates))
        theta = rng.beta(*self._posterior(candidates))
        index = np.argsort(-theta, kind="stable")[:n_show]
        propensities = (self.inclusion_probabilities(candidates, n_slots)[index] if self.propensity_points
                        else np.full(n_show, np.nan))
        return Slate(index=index, ads=candidates.ads[index], propensities=propensities,
                     explored=np.zeros(n_show, dtype=bool))
