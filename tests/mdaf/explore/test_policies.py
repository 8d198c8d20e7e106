"""Slate policies: the EG update, exact propensities, graduation and bad input."""

import math

import numpy as np
import pytest

from mdaf.explore.cfb import ClickFeedbackModel
from mdaf.explore.policies import (
    EGEpsilonGreedyPolicy,
    EpsilonDecreasingPolicy,
    EpsilonGreedyPolicy,
    GreedyPolicy,
    ReservedSlotsPolicy,
    ThompsonSamplingPolicy,
    UCB1Policy,
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
    tau, kappa, beta = 0.1, 0.01, 0.3
    policy = EGEpsilonGreedyPolicy(epsilons=(0.0, 0.2, 0.5), tau=tau, kappa=kappa, beta=beta)
    np.testing.assert_allclose(policy.weights, [1, 1, 1])
    np.testing.assert_allclose(policy.probabilities, [1 / 3, 1 / 3, 1 / 3])

    # Step 1: d = 1, reward 0.5, p = 1/3 each. log w_i = tau * (r 1[i=d] + kappa) / p_i:
    # [0.1 * 0.01 * 3, 0.1 * 0.51 * 3, 0.1 * 0.01 * 3] = [0.003, 0.153, 0.003].
    policy.update_weights(1, 0.5)
    np.testing.assert_allclose(policy.log_weights, [0.003, 0.153, 0.003], rtol=1e-12)
    np.testing.assert_allclose(policy.weights, [math.exp(0.003), math.exp(0.153), math.exp(0.003)],
                               rtol=1e-12)
    # p = 0.7 * w / (2 e^0.003 + e^0.153) + 0.1
    p1 = [0.321390479785551, 0.357219040428897, 0.321390479785551]
    np.testing.assert_allclose(policy.probabilities, p1, rtol=1e-12)

    # Step 2: d = 0, reward 1, with the probabilities p1 it was drawn from.
    policy.update_weights(0, 1.0)
    log_w2 = [0.003 + 0.1 * 1.01 / p1[0], 0.153 + 0.1 * 0.01 / p1[1], 0.003 + 0.1 * 0.01 / p1[2]]
    np.testing.assert_allclose(policy.log_weights, log_w2, rtol=1e-12)
    w2 = [math.exp(x) for x in log_w2]
    p2 = [0.7 * w / sum(w2) + 0.1 for w in w2]
    np.testing.assert_allclose(policy.probabilities, p2, rtol=1e-12)
    assert p2[0] > p1[0]


def test_eg_update_from_a_slate_uses_the_draw_probabilities_and_mean_click():
    policy = EGEpsilonGreedyPolicy(epsilons=(0.1, 0.6), tau=0.2, kappa=0.0, beta=0.2)
    policy.log_weights = np.array([0.4, -0.1])
    probs_at_draw = policy.probabilities.copy()
    slate = policy.select(make_candidates(), 3, np.random.default_rng(1))
    assert slate.epsilon_index in (0, 1)
    np.testing.assert_array_equal(slate.epsilon_probs, probs_at_draw)
    policy.update(slate, [1, 0, 1])
    expected = np.array([0.4, -0.1])
    expected[slate.epsilon_index] += 0.2 * (2 / 3) / probs_at_draw[slate.epsilon_index]
    np.testing.assert_allclose(policy.log_weights, expected, rtol=1e-12)


def test_eg_probabilities_sum_to_one_and_respect_the_floor():
    T, beta = 5, 0.15
    policy = EGEpsilonGreedyPolicy(epsilons=np.linspace(0, 1, T), tau=0.5, kappa=0.01, beta=beta)
    rng = np.random.default_rng(0)
    for _ in range(3000):
        p = policy.probabilities
        assert abs(p.sum() - 1.0) < 1e-12
        assert p.min() >= beta / T - 1e-15
        d = int(rng.choice(T, p=p))
        # A reward that strongly favours the largest epsilon drives the others to the floor.
        policy.update_weights(d, float(rng.random() < 0.2 + 0.6 * (d == T - 1)), p)
    p = policy.probabilities
    assert p.argmax() == T - 1
    np.testing.assert_allclose(np.sort(p)[:-1], beta / T, rtol=1e-6)


# --- exact propensities -------------------------------------------------------------------------

def eg_with_skewed_weights(exploration):
    policy = EGEpsilonGreedyPolicy(epsilons=(0.0, 0.3, 0.8), exploration=exploration, confidence_bonus=0.1)
    policy.log_weights = np.array([0.0, 1.0, -0.5])
    return policy


@pytest.mark.parametrize("make_policy, n_slots, n_graduated", [
    (lambda: eg_with_skewed_weights("uniform"), 3, 4),
    (lambda: eg_with_skewed_weights("confidence"), 3, 4),
    (lambda: eg_with_skewed_weights("confidence"), 4, 2),   # H shorter than the slots
    (lambda: EpsilonGreedyPolicy(0.35, exploration="confidence", confidence_bonus=0.05), 2, 7),
    (lambda: ReservedSlotsPolicy(r=2, q=2, exploration="confidence", confidence_bonus=0.02), 4, 4),
], ids=["eg-uniform", "eg-confidence", "eg-short-H", "eps-confidence", "reserved"])
def test_logged_propensities_match_empirical_frequencies(make_policy, n_slots, n_graduated):
    candidates = make_candidates(n=9, n_graduated=n_graduated)
    policy = make_policy()
    exact = policy.inclusion_probabilities(candidates, n_slots)
    assert abs(exact.sum() - n_slots) < 1e-9
    rng = np.random.default_rng(123)
    n_draws = 6000
    slates = [policy.select(candidates, n_slots, rng) for _ in range(n_draws)]
    index = np.stack([s.index for s in slates])
    explored = np.stack([s.explored for s in slates])
    assert index.shape == (n_draws, n_slots)
    assert np.all(np.sort(index, axis=1)[:, 1:] != np.sort(index, axis=1)[:, :-1])  # distinct ads per slate
    np.testing.assert_allclose(np.stack([s.propensities for s in slates]), exact[index], rtol=1e-12)
    # Exploited slots come from the graduated pool, explored ones from the rest.
    assert np.all(candidates.graduated[index] != explored)
    counts = np.bincount(index.reshape(-1), minlength=len(candidates))
    freq = counts / n_draws
    stderr = np.sqrt(exact * (1 - exact) / n_draws)
    assert np.all(np.abs(freq - exact) <= 4.5 * stderr + 1e-12), (freq, exact)


def test_confidence_exploration_favours_ads_with_few_impressions():
    candidates = Candidates(ads=np.arange(5), scores=np.full(5, 0.05),
                            impressions=np.array([0, 5, 50, 500, 5000.0]), clicks=np.zeros(5),
                            graduated=np.zeros(5, bool))
    probs = EpsilonGreedyPolicy(1.0, exploration="confidence", confidence_bonus=1.0).inclusion_probabilities(
        candidates, 1)
    assert np.all(np.diff(probs) < 0)
    uniform = EpsilonGreedyPolicy(1.0).inclusion_probabilities(candidates, 1)
    np.testing.assert_allclose(uniform, 0.2)


def test_thompson_propensities_estimate_frequencies():
    candidates = make_candidates(n=6)
    policy = ThompsonSamplingPolicy(alpha=1, beta=9, propensity_samples=400, seed=0)
    rng = np.random.default_rng(7)
    counts = np.zeros(6)
    for _ in range(3000):
        counts[policy.select(candidates, 2, rng).index] += 1
    np.testing.assert_allclose(policy.inclusion_probabilities(candidates, 2), counts / 3000, atol=0.06)


def test_deterministic_policies_show_the_top_with_propensity_one():
    candidates = make_candidates(n=7)
    slate = GreedyPolicy().select(candidates, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(slate.index, np.argsort(-candidates.scores)[:3])
    np.testing.assert_array_equal(slate.propensities, 1.0)
    unseen = Candidates(ads=[1, 2, 3], scores=[0.1, 0.1, 0.1], impressions=[10, 0, 10], clicks=[5, 0, 1],
                        graduated=[True] * 3)
    assert UCB1Policy().select(unseen, 1, np.random.default_rng(0)).ads.tolist() == [2]
    assert UCB1Policy().select(unseen, 5, np.random.default_rng(0)).ads.size == 3  # fewer ads than slots


def test_epsilon_decreasing_schedule():
    policy = EpsilonDecreasingPolicy(0.4, decay_rounds=10)
    candidates = make_candidates()
    for _ in range(30):
        policy.select(candidates, 2, np.random.default_rng(0))
    assert policy.current_epsilon() == pytest.approx(0.4 * 10 / 40)


# --- graduation ---------------------------------------------------------------------------------

def test_an_ad_graduates_from_exploration_to_exploitation():
    cfb = ClickFeedbackModel(min_impressions=5)
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
    lambda: EpsilonDecreasingPolicy(2.0),
    lambda: EGEpsilonGreedyPolicy(epsilons=(0.1, 1.2)),
    lambda: EGEpsilonGreedyPolicy(epsilons=(0.1, np.nan)),
])
def test_epsilon_outside_unit_interval_is_rejected(build):
    with pytest.raises(ValueError, match="epsilon"):
        build()


@pytest.mark.parametrize("kwargs, match", [
    (dict(epsilons=()), "at least one"), (dict(tau=0.0), "tau"), (dict(kappa=-1.0), "kappa"),
    (dict(beta=0.0), "beta"), (dict(beta=1.5), "beta"), (dict(exploration="boltzmann"), "exploration"),
])
def test_bad_eg_parameters_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EGEpsilonGreedyPolicy(**kwargs)


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
    with pytest.raises(ValueError, match="non-negative"):
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
    with pytest.raises(ValueError, match="reward"):
        policy.update_weights(0, 1.5)
    with pytest.raises(ValueError, match="EG policy"):
        policy.update(GreedyPolicy().select(candidates, 3, rng), [0, 0, 0])
