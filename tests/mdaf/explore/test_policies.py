"""Slate policies: the EG update, exact propensities, graduation and bad input."""

import math

import numpy as np
import pytest

from mdaf.explore.cfb import BetaBackoffCFB
from mdaf.explore.estimators import ips
from mdaf.explore.li2010 import PAPER_EPSILONS
from mdaf.explore.logs import InteractionLog
from mdaf.explore.policies import (
    ConfidencePolicy,
    EGEpsilonGreedyPolicy,
    EpsilonDecreasingPolicy,
    EpsilonGreedyPolicy,
    GraduationEGPolicy,
    GraduationEpsilonGreedyPolicy,
    GreedyPolicy,
    ReservedSlotsPolicy,
    ThompsonSamplingPolicy,
    UCB1Policy,
    thompson_inclusion_bounds,
    thompson_prior,
    ucb1_constant,
)
from mdaf.explore.rankers import ServingRequest
from mdaf.explore.serving import ServingLoop
from mdaf.explore.slots import Candidates


def make_candidates(n=9, n_graduated=4, seed=0):
    rng = np.random.default_rng(seed)
    impressions = rng.integers(0, 60, n).astype(float)
    return Candidates(ads=rng.permutation(100)[:n], scores=rng.uniform(0.01, 0.2, n), impressions=impressions,
                      clicks=np.floor(impressions * 0.1), graduated=np.arange(n) < n_graduated)


# --- exponentiated-gradient epsilon -------------------------------------------------------------

def test_eg_update_matches_hand_computed_steps():
    # The paper's names: beta is the additive bonus in the exponent, kappa the uniform mix.
    policy = EGEpsilonGreedyPolicy(epsilons=(0.0, 0.2, 0.5), tau=0.1, beta=0.01, kappa=0.3).eg
    np.testing.assert_allclose(policy.weights, [1, 1, 1])
    np.testing.assert_allclose(policy.probabilities, [1 / 3, 1 / 3, 1 / 3])

    # Step 1: d = 1, click 0.5, p = 1/3 each. log w_i = tau * (c 1[i=d] + beta) / p_i:
    # [0.1 * 0.01 * 3, 0.1 * 0.51 * 3, 0.1 * 0.01 * 3] = [0.003, 0.153, 0.003].
    policy.update(1, 0.5)
    np.testing.assert_allclose(policy.log_weights, [0.003, 0.153, 0.003], rtol=1e-12)
    np.testing.assert_allclose(policy.weights, [math.exp(0.003), math.exp(0.153), math.exp(0.003)],
                               rtol=1e-12)
    # p = 0.7 * w / (2 e^0.003 + e^0.153) + 0.1
    p1 = [0.321390479785551, 0.357219040428897, 0.321390479785551]
    np.testing.assert_allclose(policy.probabilities, p1, rtol=1e-12)

    # Step 2: d = 0, reward 1, with the probabilities p1 it was drawn from.
    policy.update(0, 1.0)
    log_w2 = [0.003 + 0.1 * 1.01 / p1[0], 0.153 + 0.1 * 0.01 / p1[1], 0.003 + 0.1 * 0.01 / p1[2]]
    np.testing.assert_allclose(policy.log_weights, log_w2, rtol=1e-12)
    w2 = [math.exp(x) for x in log_w2]
    p2 = [0.7 * w / sum(w2) + 0.1 for w in w2]
    np.testing.assert_allclose(policy.probabilities, p2, rtol=1e-12)
    assert p2[0] > p1[0]


@pytest.mark.parametrize("make_policy", [
    lambda: EGEpsilonGreedyPolicy(epsilons=(0.1, 0.6), tau=0.2, beta=0.0, kappa=0.2),
    lambda: GraduationEGPolicy(epsilons=(0.1, 0.6), tau=0.2, beta=0.0, kappa=0.2),
], ids=["paper", "graduation"])
def test_eg_update_from_a_slate_uses_the_draw_probabilities_and_the_page_view_click(make_policy):
    policy = make_policy()
    policy.eg.log_weights = np.array([0.4, -0.1])
    probs_at_draw = policy.eg.probabilities.copy()
    slate = policy.select(make_candidates(), 3, np.random.default_rng(1))
    assert slate.epsilon_index in (0, 1)
    np.testing.assert_array_equal(slate.epsilon_probs, probs_at_draw)
    policy.update(slate, [1, 0, 1])  # a page view with a click: c = 1
    expected = np.array([0.4, -0.1])
    expected[slate.epsilon_index] += 0.2 * 1.0 / probs_at_draw[slate.epsilon_index]
    np.testing.assert_allclose(policy.eg.log_weights, expected, rtol=1e-12)


def test_eg_probabilities_sum_to_one_and_respect_the_floor():
    T, kappa = 5, 0.15
    policy = EGEpsilonGreedyPolicy(epsilons=np.linspace(0, 1, T), tau=0.5, beta=0.01, kappa=kappa).eg
    rng = np.random.default_rng(0)
    for _ in range(3000):
        p = policy.probabilities
        assert abs(p.sum() - 1.0) < 1e-12
        assert p.min() >= kappa / T - 1e-15
        d = int(rng.choice(T, p=p))
        # A reward that strongly favours the largest epsilon drives the others to the floor.
        policy.update(d, float(rng.random() < 0.2 + 0.6 * (d == T - 1)), p)
    p = policy.probabilities
    assert p.argmax() == T - 1
    np.testing.assert_allclose(np.sort(p)[:-1], kappa / T, rtol=1e-6)


# --- exact propensities -------------------------------------------------------------------------

def eg_with_skewed_weights(exploration):
    policy = GraduationEGPolicy(epsilons=(0.0, 0.3, 0.8), exploration=exploration, ucb_bonus=0.1)
    policy.eg.log_weights = np.array([0.0, 1.0, -0.5])
    return policy


def paper_eg_with_skewed_weights():
    policy = EGEpsilonGreedyPolicy(epsilons=(0.1, 0.5, 0.9), r=1, q=3, n=8)
    policy.eg.log_weights = np.array([0.0, 1.0, -0.5])
    return policy


def check_propensities_against_frequencies(policy, candidates, n_slots, n_draws=6000):
    """Exact inclusion probabilities sum to the slots, are logged as propensities, match frequencies."""
    exact = policy.inclusion_probabilities(candidates, n_slots)
    assert abs(exact.sum() - n_slots) < 1e-9
    rng = np.random.default_rng(123)
    slates = [policy.select(candidates, n_slots, rng) for _ in range(n_draws)]
    index = np.stack([s.index for s in slates])
    assert index.shape == (n_draws, n_slots)
    assert np.all(np.sort(index, axis=1)[:, 1:] != np.sort(index, axis=1)[:, :-1])  # distinct ads per slate
    np.testing.assert_allclose(np.stack([s.propensities for s in slates]), exact[index], rtol=1e-12)
    freq = np.bincount(index.reshape(-1), minlength=len(candidates)) / n_draws
    stderr = np.sqrt(exact * (1 - exact) / n_draws)
    assert np.all(np.abs(freq - exact) <= 4.5 * stderr + 1e-12), (freq, exact)
    return slates


@pytest.mark.parametrize("make_policy, n_slots, n_candidates", [
    (lambda: EpsilonGreedyPolicy(0.3), 3, 12),
    (lambda: EpsilonGreedyPolicy(0.7, r=0, q=2, n=5), 4, 9),       # H shorter than the picks
    (paper_eg_with_skewed_weights, 3, 9),
    (lambda: ConfidencePolicy(0.4, w=50, b=20, threshold=10), 3, 11),
    (lambda: ConfidencePolicy(0.9, r=0, q=2, n=6, w=40, b=15, threshold=5), 3, 9),
], ids=["eps-greedy", "eps-short-H", "eg", "confidence", "confidence-short-queue"])
def test_paper_policies_log_exact_propensities(make_policy, n_slots, n_candidates):
    candidates = make_candidates(n=n_candidates)
    policy = make_policy()
    slates = check_propensities_against_frequencies(policy, candidates, n_slots, n_draws=4000)
    ranked = np.argsort(-candidates.scores, kind="stable")
    # Only the top n candidates are ever shown, and the reserved top r always.
    assert set(np.concatenate([s.index for s in slates]).tolist()) <= set(ranked[:policy.n].tolist())
    assert all(s.index[:policy.r].tolist() == ranked[:policy.r].tolist() for s in slates)


def test_algorithm1_reserves_r_and_explores_the_bottom_q():
    candidates = make_candidates(n=10)
    ranked = np.argsort(-candidates.scores, kind="stable")
    probs = EpsilonGreedyPolicy(0.25, r=1, q=4).inclusion_probabilities(candidates, 3)
    # Two picks after the reserved ad; each is from L with probability 0.25: E[from L] = 0.5.
    np.testing.assert_allclose(probs[ranked[0]], 1.0)
    np.testing.assert_allclose(probs[ranked[1:6]], 1.5 / 5)   # H = ranks 2..6, uniformly
    np.testing.assert_allclose(probs[ranked[6:]], 0.5 / 4)    # L = ranks 7..10, uniformly


def test_confidence_policy_promotes_low_impression_ads_and_never_those_at_the_cap():
    candidates = Candidates(ads=np.arange(6), scores=np.array([0.06, 0.05, 0.04, 0.03, 0.02, 0.01]),
                            impressions=np.array([5000, 1500, 900, 300, 120, 0.0]), clicks=np.zeros(6),
                            graduated=np.ones(6, bool))
    probs = ConfidencePolicy(1.0, r=1, q=2, n=6).inclusion_probabilities(candidates, 2)
    # epsilon = 1: the second slot is the head of P; the ad at 1,500 >= w = 1,000 never enters it.
    assert probs[0] == 1.0 and probs[1] == 0.0
    assert np.all(np.diff(probs[2:]) > 0)  # fewer impressions (weight 1 - tanh(x / 300)): more often


@pytest.mark.parametrize("make_policy, n_slots, n_graduated", [
    (lambda: eg_with_skewed_weights("uniform"), 3, 4),
    (lambda: eg_with_skewed_weights("ucb-bonus"), 3, 4),
    (lambda: eg_with_skewed_weights("ucb-bonus"), 4, 2),   # H shorter than the slots
    (lambda: GraduationEpsilonGreedyPolicy(0.35, exploration="ucb-bonus", ucb_bonus=0.05), 2, 7),
    (lambda: ReservedSlotsPolicy(r=2, q=2, exploration="ucb-bonus", ucb_bonus=0.02), 4, 4),
], ids=["eg-uniform", "eg-ucb-bonus", "eg-short-H", "eps-ucb-bonus", "reserved"])
def test_graduation_policies_log_exact_propensities(make_policy, n_slots, n_graduated):
    candidates = make_candidates(n=9, n_graduated=n_graduated)
    slates = check_propensities_against_frequencies(make_policy(), candidates, n_slots)
    index = np.stack([s.index for s in slates])
    explored = np.stack([s.explored for s in slates])
    # Exploited slots come from the graduated pool, explored ones from the rest.
    assert np.all(candidates.graduated[index] != explored)


def test_ucb_bonus_exploration_favours_ads_with_few_impressions():
    candidates = Candidates(ads=np.arange(5), scores=np.full(5, 0.05),
                            impressions=np.array([0, 5, 50, 500, 5000.0]), clicks=np.zeros(5),
                            graduated=np.zeros(5, bool))
    policy = GraduationEpsilonGreedyPolicy(1.0, exploration="ucb-bonus", ucb_bonus=1.0)
    probs = policy.inclusion_probabilities(candidates, 1)
    assert np.all(np.diff(probs) < 0)
    uniform = GraduationEpsilonGreedyPolicy(1.0).inclusion_probabilities(candidates, 1)
    np.testing.assert_allclose(uniform, 0.2)


def test_thompson_has_no_propensities_and_is_refused_for_off_policy_evaluation():
    candidates = make_candidates(n=6)
    policy = ThompsonSamplingPolicy(*thompson_prior(0.05))
    slate = policy.select(candidates, 2, np.random.default_rng(7))
    assert slate.ads.size == 2 and np.isnan(slate.propensities).all()
    with pytest.raises(ValueError, match="Thompson sampling with propensity_points=0 has no inclusion"):
        policy.inclusion_probabilities(candidates, 2)
    log = InteractionLog()
    with pytest.raises(ValueError, match="no exact propensities, e.g. Thompson"):
        log.append(0, slate.ads, [0, 1], slate.propensities)
    with pytest.raises(ValueError, match="logging_propensities"):
        ips([1.0, 0.0], slate.propensities, [0.5, 0.5])


def test_thompson_propensities_are_bounded_by_quadrature():
    alpha, beta = np.array([2, 5, 30, 1, 12, 3.0]), np.array([40, 60, 500, 10, 200, 80.0])
    lower, upper = thompson_inclusion_bounds(alpha, beta, 2, points=1024)
    assert np.all(lower <= upper) and np.all(upper - lower <= 1 / 1024 + 1e-12)
    assert lower.sum() <= 2 <= upper.sum()
    rng = np.random.default_rng(3)
    draws = 400_000
    top = np.argpartition(-rng.beta(alpha, beta, size=(draws, 6)), 1, axis=1)[:, :2]
    freq = np.bincount(top.reshape(-1), minlength=6) / draws
    stderr = np.sqrt(freq * (1 - freq) / draws)
    assert np.all(freq >= lower - 4.5 * stderr) and np.all(freq <= upper + 4.5 * stderr)
    # A policy with propensity points logs the midpoints, which the log and the estimators accept.
    candidates = Candidates(ads=np.arange(6), scores=np.zeros(6), impressions=alpha + beta - 2,
                            clicks=alpha - 1, graduated=np.ones(6, bool))
    policy = ThompsonSamplingPolicy(1.0, 1.0, propensity_points=1024)
    probs = policy.inclusion_probabilities(candidates, 2)
    np.testing.assert_allclose(probs, (lower + upper) / 2, rtol=1e-12)
    slate = policy.select(candidates, 2, rng)
    np.testing.assert_allclose(slate.propensities, probs[slate.index], rtol=1e-12)
    InteractionLog().append(0, slate.ads, [0, 1], slate.propensities)


def test_baseline_settings_are_on_the_ctr_scale():
    assert ucb1_constant(0.5) == pytest.approx(1.0)  # textbook UCB1 for rewards spread over [0, 1]
    assert ucb1_constant(0.05) == pytest.approx(2 * np.sqrt(0.05 * 0.95))
    alpha, beta = thompson_prior(0.04)
    assert alpha == 1.0 and alpha / (alpha + beta) == pytest.approx(0.04)
    for bad in (-0.1, 1.5, np.nan, "0.1"):
        with pytest.raises(ValueError, match="mean_ctr"):
            ucb1_constant(bad)


def test_deterministic_policies_show_the_top_with_propensity_one():
    candidates = make_candidates(n=7)
    slate = GreedyPolicy().select(candidates, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(slate.index, np.argsort(-candidates.scores)[:3])
    np.testing.assert_array_equal(slate.propensities, 1.0)
    unseen = Candidates(ads=[1, 2, 3], scores=[0.1, 0.1, 0.1], impressions=[10, 0, 10], clicks=[5, 0, 1],
                        graduated=[True] * 3)
    assert UCB1Policy().select(unseen, 1, np.random.default_rng(0)).ads.tolist() == [2]
    assert UCB1Policy().select(unseen, 5, np.random.default_rng(0)).ads.size == 3  # fewer ads than slots


def test_epsilon_decreasing_follows_the_paper_schedule():
    policy = EpsilonDecreasingPolicy(pages_per_iteration=2)
    candidates = make_candidates(n=10)
    assert policy.current_epsilon() == pytest.approx(0.51)
    rng = np.random.default_rng(0)
    for _ in range(2 * 2000):  # 2,000 iterations of two page views
        policy.select(candidates, 3, rng)
    assert policy.current_epsilon() == pytest.approx(0.46)
    policy.page_views = 2 * 2000 * 50
    assert policy.current_epsilon() == pytest.approx(0.01)  # floored at 0.01


# --- graduation ---------------------------------------------------------------------------------

def test_an_ad_graduates_from_exploration_to_exploitation():
    cfb = BetaBackoffCFB(min_impressions=5)
    cfb.update(0, [1, 2], [200, 200], [10, 12])
    loop = ServingLoop(ReservedSlotsPolicy(r=1, q=1), cfb=cfb, n_slots=2, graduation_threshold=50)
    request = ServingRequest(context=0, ads=np.array([1, 2, 3]))
    cand = loop.candidates(request)
    np.testing.assert_array_equal(cand.graduated, [True, True, False])
    for _ in range(20):  # ad 3 is the only exploration candidate: always in the explored slot
        served = loop.serve(request)
        assert served.ads.tolist()[1] == 3 and served.slate.explored.tolist() == [False, True]
        np.testing.assert_array_equal(served.slate.propensities, [1.0, 1.0])
        loop.feedback(served, [0, 1])
    cfb.update(0, [3], [29], [0])
    assert not loop.candidates(request).graduated[2]
    cfb.update(0, [3], [1], [1])  # 50 impressions: graduates, and its CTR now ranks it first
    assert loop.candidates(request).graduated[2]
    served = loop.serve(request)
    assert served.ads[0] == 3 and not served.slate.explored[0]


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [
    lambda: EpsilonGreedyPolicy(1.5),
    lambda: EpsilonGreedyPolicy(-0.1),
    lambda: EpsilonGreedyPolicy(np.nan),
    lambda: ConfidencePolicy(2.0),
    lambda: GraduationEpsilonGreedyPolicy(1.1),
    lambda: EGEpsilonGreedyPolicy(epsilons=(0.1, 1.2)),
    lambda: GraduationEGPolicy(epsilons=(0.1, np.nan)),
])
def test_epsilon_outside_unit_interval_is_rejected(build):
    with pytest.raises(ValueError, match="epsilon"):
        build()


@pytest.mark.parametrize("kwargs, match", [
    (dict(epsilons=()), "at least one"), (dict(tau=0.0), "tau"), (dict(beta=-1.0), "beta"),
    (dict(kappa=0.0), "kappa"), (dict(kappa=1.5), "kappa"), (dict(tau=np.nan), "tau"),
])
def test_bad_eg_parameters_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EGEpsilonGreedyPolicy(**kwargs)
    with pytest.raises(ValueError, match=match):
        GraduationEGPolicy(**kwargs)


def test_paper_defaults():
    assert PAPER_EPSILONS == (0.06, 0.11, 0.16, 0.21, 0.26, 0.31, 0.36, 0.41, 0.46, 0.51)
    policy = EGEpsilonGreedyPolicy()
    np.testing.assert_allclose(policy.eg.epsilons, PAPER_EPSILONS)
    assert (policy.r, policy.q, policy.n) == (1, 4, 10)
    confidence = ConfidencePolicy()
    assert (confidence.w, confidence.b, confidence.threshold) == (1000.0, 300.0, 100.0)


@pytest.mark.parametrize("build, match", [
    (lambda: EpsilonGreedyPolicy(0.1, r=1.5), "r must be an integer"),
    (lambda: EpsilonGreedyPolicy(0.1, q=0), "q must be an integer >= 1"),
    (lambda: ConfidencePolicy(0.1, w=0.0), "w must be"),
    (lambda: ConfidencePolicy(0.1, b=np.nan), "b must be"),
    (lambda: GraduationEpsilonGreedyPolicy(0.1, exploration="confidence"), "exploration"),
    (lambda: UCB1Policy(c=np.nan), "c must be"),
    (lambda: ThompsonSamplingPolicy(alpha=0.0), "alpha"),
])
def test_bad_policy_settings_are_rejected(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_paper_policies_reject_lists_that_do_not_fit():
    with pytest.raises(ValueError, match="r \\(reserved ads\\) must be in"):
        EpsilonGreedyPolicy(0.1, r=3).select(make_candidates(n=10), 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="q \\(low-rank list size\\)"):
        EpsilonGreedyPolicy(0.1, q=4).select(make_candidates(n=4), 3, np.random.default_rng(0))


def test_nan_thresholds_are_rejected():
    with pytest.raises(ValueError, match="graduation_threshold"):
        ServingLoop(GreedyPolicy(), graduation_threshold=np.nan)
    with pytest.raises(ValueError, match="graduation_threshold"):
        Candidates.from_estimate([1], [0.1], BetaBackoffCFB().estimate(0, [1]), graduation_threshold=np.nan)
    with pytest.raises(ValueError, match="cfb must be a ClickFeedbackModel"):
        ServingLoop(GreedyPolicy(), cfb={})


def test_empty_candidate_list_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        Candidates(ads=np.zeros(0, np.int64), scores=[], impressions=[], clicks=[], graduated=[])
    loop = ServingLoop(GreedyPolicy())
    with pytest.raises(ValueError, match="empty"):
        loop.serve(ServingRequest(context=0, ads=np.zeros(0, np.int64)))


def test_reserved_slots_larger_than_candidates_are_rejected():
    policy = ReservedSlotsPolicy(r=3, q=2)
    with pytest.raises(ValueError, match="r \\+ q = 5 slots but only 4 candidates"):
        policy.select(make_candidates(n=4), 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="must equal r \\+ q"):
        policy.select(make_candidates(n=9), 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="r must be an integer >= 0"):
        ReservedSlotsPolicy(r=-1, q=2)


def test_other_bad_input_is_rejected():
    candidates = make_candidates()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="n_slots"):
        GreedyPolicy().select(candidates, 0, rng)
    with pytest.raises(ValueError, match="distinct"):
        Candidates(ads=[1, 1], scores=[0.1, 0.2], impressions=[0, 0], clicks=[0, 0], graduated=[False, False])
    with pytest.raises(ValueError, match="shape"):
        Candidates(ads=[1, 2], scores=[0.1], impressions=[0, 0], clicks=[0, 0], graduated=[False, False])
    with pytest.raises(ValueError, match="non-negative"):
        Candidates(ads=[1, 2], scores=[0.1, 0.2], impressions=[-1, 0], clicks=[0, 0],
                   graduated=[False, False])
    policy = EGEpsilonGreedyPolicy()
    slate = policy.select(candidates, 3, rng)
    with pytest.raises(ValueError, match="one value per shown ad"):
        policy.update(slate, [1, 0])
    with pytest.raises(ValueError, match="clicks must be"):
        policy.eg.update(0, 1.5)
    with pytest.raises(ValueError, match="EG policy"):
        policy.update(GreedyPolicy().select(candidates, 3, rng), [0, 0, 0])
    # Probabilities that are zero or of the wrong shape would give infinite weights or NaN.
    with pytest.raises(ValueError, match="probs must be 10 probabilities > 0"):
        policy.eg.update(0, 1.0, np.zeros(10))
    with pytest.raises(ValueError, match="probs must be 10"):
        policy.eg.update(0, 1.0, np.full(3, 1 / 3))
    with pytest.raises(ValueError, match="integer epsilon indices"):
        policy.eg.update(0.5, 1.0)
    with pytest.raises(ValueError, match="d must be in"):
        policy.eg.update(10, 1.0)
