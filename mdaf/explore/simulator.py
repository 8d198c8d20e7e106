"""A seeded ad market to compare exploration policies on the same stream of page views.

The market (``AdMarket.generate``) fixes, from the seed: the page of every page view (Zipf-like
popularity), each ad's arrival and departure (ads arrive through the run and leave after an
exponential lifetime: non-stationary), the pages each ad targets, the true CTR of every (page, ad)
(a Beta-distributed ad CTR times a log-normal page affinity), each advertiser's cost per click and
budget (an ad stops being a candidate once its budget is spent), and the uniform noise that decides
clicks. Every policy faces the same market and noise (common random numbers), so differences come
from the policies, not the draws.

Per policy the loop is ``ServingLoop``: CFB ranker (``BetaBackoffCFB``), the policy, CFB and policy
updates. Reported (``COLUMNS`` explains each): clicks, CTR, regret against one benchmark for every
policy (the expected clicks of the best slate of the ads live on the page, budgets ignored: it
depends on the market only, so ranking by regret is ranking by expected clicks), reach, and budget
pacing. Every policy's settings follow a fixed rule from what the system knows before serving (the
mean CTR of the warm-start history), not a per-market choice (``default_policies``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from mdaf.explore.cfb import BetaBackoffCFB, ClickFeedbackModel
from mdaf.explore.li2010 import PAPER_EPSILONS, theorem1_settings
from mdaf.explore.policies import (
    ConfidencePolicy,
    EGEpsilonGreedyPolicy,
    EpsilonDecreasingPolicy,
    EpsilonGreedyPolicy,
    GraduationEGPolicy,
    GreedyPolicy,
    SlatePolicy,
    ThompsonSamplingPolicy,
    UCB1Policy,
    thompson_prior,
    ucb1_constant,
)
from mdaf.explore.rankers import ServingRequest
from mdaf.explore.serving import ServingLoop

STARVED_SPEND_FRACTION = 0.1
#: What each column of ``SimulationResult.summary`` means (printed by the example).
COLUMNS = {
    "clicks": "realised clicks over the run",
    "expected_clicks": "expected clicks of the shown slates (sum of true CTRs): less noisy than clicks",
    "ctr_%": "clicks / impressions",
    "regret": "oracle expected clicks (best slate of the live ads, budgets ignored; the same for every "
              "policy) minus expected_clicks",
    "reach_%": "ads shown at least once, % of the ads that entered the market",
    "budget_used_%": "spend / budget, summed over the advertisers that entered",
    "exhausted_%": "advertisers whose whole budget was spent (their ad left the candidates), %",
    "starved_%": f"advertisers who spent less than {STARVED_SPEND_FRACTION:.0%} of their budget (hardly "
                 "shown), %",
    "seconds": "wall time of the policy's run (noisy on a shared machine)",
}


@dataclass(frozen=True)
class SimulationConfig:
    """Market and serving settings (printed and saved with every comparison)."""

    seed: int = 0
    n_rounds: int = 15_000
    n_pages: int = 8
    n_initial_ads: int = 40
    arrival_rate: float = 0.0055
    mean_lifetime: float = 9_000.0
    page_coverage: float = 0.5
    ctr_alpha: float = 2.0
    ctr_beta: float = 40.0
    page_affinity_sigma: float = 0.5
    budget_clicks_min: float = 20.0
    budget_clicks_max: float = 200.0
    cpc_min: float = 0.2
    cpc_max: float = 2.0
    n_slots: int = 3
    graduation_threshold: float = 100.0
    prior_alpha: float = 1.0
    prior_beta: float = 19.0
    min_impressions: float = 30.0
    warm_start_impressions: int = 300

    def __post_init__(self):
        if self.n_rounds < 1 or self.n_pages < 1 or self.n_slots < 1:
            raise ValueError("n_rounds, n_pages and n_slots must be >= 1")
        if self.n_initial_ads < 1:
            raise ValueError(f"n_initial_ads must be >= 1, got {self.n_initial_ads}")
        if not 0 < self.page_coverage <= 1:
            raise ValueError(f"page_coverage must be in (0, 1], got {self.page_coverage}")
        if self.arrival_rate < 0 or self.mean_lifetime <= 0:
            raise ValueError("arrival_rate must be >= 0 and mean_lifetime > 0")
        if self.warm_start_impressions < 0:
            raise ValueError(f"warm_start_impressions must be >= 0, got {self.warm_start_impressions}")


@dataclass(frozen=True)
class AdMarket:
    """Everything random about the market, drawn once from the seed (arrays indexed by ad id)."""

    pages: np.ndarray          # (n_rounds,) page of each page view
    arrival: np.ndarray        # (A,) first round the ad is live
    departure: np.ndarray      # (A,) first round it is gone
    targets: np.ndarray        # (n_pages, A) bool, the ad bids on the page
    true_ctr: np.ndarray       # (n_pages, A)
    cpc: np.ndarray            # (A,) cost per click
    budget: np.ndarray         # (A,) total budget
    click_noise: np.ndarray    # (n_rounds, A) float32 uniforms: click iff noise < true CTR
    warm_impressions: np.ndarray  # (n_pages, A) history of the ads live at round 0, loaded in every CFB
    warm_clicks: np.ndarray       # (n_pages, A)

    @property
    def n_ads(self) -> int:
        return int(self.arrival.size)

    @classmethod
    def generate(cls, config: SimulationConfig) -> AdMarket:
        rng = np.random.default_rng(config.seed)
        n_new = int(rng.poisson(config.arrival_rate * config.n_rounds))
        arrival = np.concatenate([np.zeros(config.n_initial_ads, np.int64),
                                  np.sort(rng.integers(1, config.n_rounds, n_new))]).astype(np.int64)
        n_ads = arrival.size
        lifetime = rng.exponential(config.mean_lifetime, n_ads)
        departure = np.minimum(arrival + np.ceil(lifetime).astype(np.int64) + 1, config.n_rounds)
        targets = rng.random((config.n_pages, n_ads)) < config.page_coverage
        targets[rng.integers(0, config.n_pages, n_ads), np.arange(n_ads)] = True  # every ad bids somewhere
        base = rng.beta(config.ctr_alpha, config.ctr_beta, n_ads)
        affinity = rng.lognormal(-0.5 * config.page_affinity_sigma ** 2, config.page_affinity_sigma,
                                 (config.n_pages, n_ads))
        true_ctr = np.clip(base * affinity, 0.0, 0.5)
        cpc = rng.uniform(config.cpc_min, config.cpc_max, n_ads)
        budget = cpc * rng.uniform(config.budget_clicks_min, config.budget_clicks_max, n_ads)
        popularity = 1.0 / np.arange(1, config.n_pages + 1) ** 0.8
        pages = rng.choice(config.n_pages, size=config.n_rounds, p=popularity / popularity.sum())
        click_noise = rng.random((config.n_rounds, n_ads), dtype=np.float32)
        # The market opens with established ads: each initial ad has a history spread evenly over
        # its pages (it does not count against the budget); the ads arriving later start cold.
        share = targets[:, :config.n_initial_ads] / targets[:, :config.n_initial_ads].sum(axis=0)
        warm_impressions = np.zeros((config.n_pages, n_ads), np.int64)
        warm_impressions[:, :config.n_initial_ads] = np.round(config.warm_start_impressions * share)
        warm_clicks = rng.binomial(warm_impressions, true_ctr)
        return cls(pages=pages.astype(np.int64), arrival=arrival, departure=departure, targets=targets,
                   true_ctr=true_ctr, cpc=cpc, budget=budget, click_noise=click_noise,
                   warm_impressions=warm_impressions, warm_clicks=warm_clicks)

    @property
    def warm_mean_ctr(self) -> float:
        """The CTR of the warm-start history: what the system knows before serving."""
        return float(self.warm_clicks.sum() / max(self.warm_impressions.sum(), 1))

    def warm_start(self, cfb: ClickFeedbackModel) -> None:
        """Load the initial ads' history into a click-feedback model."""
        for page in range(self.warm_impressions.shape[0]):
            ads = np.flatnonzero(self.warm_impressions[page])
            cfb.update(page, ads, self.warm_impressions[page, ads], self.warm_clicks[page, ads])


@dataclass
class SimulationResult:
    """Per-round and per-ad outcomes of one policy on one market."""

    name: str
    shown: np.ndarray           # (n_rounds,) ads shown (0 when no ad was a candidate)
    clicks: np.ndarray          # (n_rounds,) realised clicks
    expected: np.ndarray        # (n_rounds,) expected clicks of the shown slate
    best: np.ndarray            # (n_rounds,) oracle: expected clicks of the best slate of the live ads
    impressions: np.ndarray     # (A,) per ad
    spend: np.ndarray           # (A,) per ad
    seconds: float
    policy: SlatePolicy         # its state at the end (e.g. the learned EG probabilities)

    def summary(self, market: AdMarket) -> dict:
        entered = market.arrival < self.clicks.size
        impressions = self.impressions.sum()
        spent_fraction = self.spend[entered] / market.budget[entered]
        return {
            "policy": self.name,
            "clicks": int(self.clicks.sum()),
            "expected_clicks": float(self.expected.sum()),
            "ctr_%": 100.0 * self.clicks.sum() / max(impressions, 1),
            "regret": float((self.best - self.expected).sum()),
            "reach_%": 100.0 * (self.impressions[entered] > 0).mean(),
            "budget_used_%": 100.0 * self.spend[entered].sum() / market.budget[entered].sum(),
            "exhausted_%": 100.0 * (spent_fraction >= 1.0 - 1e-9).mean(),
            "starved_%": 100.0 * (spent_fraction < STARVED_SPEND_FRACTION).mean(),
            "seconds": self.seconds,
        }


def simulate(market: AdMarket, loop: ServingLoop, name: str = "policy") -> SimulationResult:
    """Run ``loop`` on every page view of ``market`` (rounds with no candidate are skipped)."""
    n_rounds = market.pages.size
    n_slots = loop.n_slots
    shown_count = np.zeros(n_rounds, np.int64)
    clicks = np.zeros(n_rounds, np.int64)
    expected = np.zeros(n_rounds)
    best = np.zeros(n_rounds)
    impressions = np.zeros(market.n_ads, np.int64)
    spend = np.zeros(market.n_ads)
    live = np.zeros(market.n_ads, dtype=bool)
    start = time.perf_counter()
    for t in range(n_rounds):
        page = int(market.pages[t])
        np.logical_and(market.arrival <= t, t < market.departure, out=live)
        eligible = live & market.targets[page]
        ctr = market.true_ctr[page]
        if eligible.any():  # the benchmark ignores budgets: it does not depend on the policy
            k = min(n_slots, int(eligible.sum()))
            best[t] = np.sort(ctr[eligible])[-k:].sum()
        ads = np.flatnonzero(eligible & (spend < market.budget))
        if ads.size == 0:
            continue
        served = loop.serve(ServingRequest(context=page, ads=ads), timestamp=t)
        shown = served.ads
        clicked = market.click_noise[t, shown] < ctr[shown]
        loop.feedback(served, clicked)
        impressions[shown] += 1
        spend[shown] = np.minimum(spend[shown] + clicked * market.cpc[shown], market.budget[shown])
        shown_count[t] = shown.size
        clicks[t] = int(clicked.sum())
        expected[t] = ctr[shown].sum()
    return SimulationResult(name=name, shown=shown_count, clicks=clicks, expected=expected, best=best,
                            impressions=impressions, spend=spend, seconds=time.perf_counter() - start,
                            policy=loop.policy)


def default_policies(config: SimulationConfig, market: AdMarket) -> dict[str, Callable[[], SlatePolicy]]:
    """The compared policies, each a factory so every run starts from a fresh state.

    Settings by rule, not tuned per market: the paper's r = 1, q = 4, n = 10, w, b and candidate
    epsilons; EG's tau, beta, kappa from Theorem 1 (T = 10, N = page views, delta = 0.05); UCB1's
    constant and Thompson's prior on the CTR scale from the warm-start mean CTR (``ucb1_constant``,
    ``thompson_prior``); epsilon-decreasing counts an iteration per ``n_pages`` page views.
    """
    mean_ctr = market.warm_mean_ctr
    eg = theorem1_settings(len(PAPER_EPSILONS), config.n_rounds, 0.05)
    return {
        "greedy": GreedyPolicy,
        "epsilon-greedy 0.1": lambda: EpsilonGreedyPolicy(0.1),
        "epsilon-decreasing": lambda: EpsilonDecreasingPolicy(pages_per_iteration=config.n_pages),
        "EG": lambda: EGEpsilonGreedyPolicy(**eg),
        "confidence 0.5": lambda: ConfidencePolicy(0.5),
        "graduation EG + UCB bonus": lambda: GraduationEGPolicy(**eg, exploration="ucb-bonus",
                                                                ucb_bonus=ucb1_constant(mean_ctr)),
        "UCB1": lambda: UCB1Policy(c=ucb1_constant(mean_ctr)),
        "Thompson": lambda: ThompsonSamplingPolicy(*thompson_prior(mean_ctr)),
    }


def compare_policies(config: SimulationConfig,
                     policies: dict[str, Callable[[], SlatePolicy]] | None = None,
                     ) -> tuple[pd.DataFrame, dict[str, SimulationResult], AdMarket]:
    """Run each policy on the market of ``config``; returns the table, the results and the market."""
    market = AdMarket.generate(config)
    policies = default_policies(config, market) if policies is None else policies
    results = {}
    for name, factory in policies.items():
        cfb = BetaBackoffCFB(config.prior_alpha, config.prior_beta, config.min_impressions)
        market.warm_start(cfb)
        loop = ServingLoop(factory(), cfb=cfb, n_slots=config.n_slots,
                           graduation_threshold=config.graduation_threshold, seed=config.seed)
        results[name] = simulate(market, loop, name)
    table = pd.DataFrame([r.summary(market) for r in results.values()]).set_index("policy")
    table.attrs["config"] = asdict(config)
    return table, results, market
