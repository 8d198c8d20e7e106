"""Off-policy estimators: unbiasedness on a simulated logging policy, slates, bad input."""

import numpy as np
import pytest

from mdaf.explore.estimators import ips, replay, snips
from mdaf.explore.logs import InteractionLog
from mdaf.explore.policies import EpsilonGreedyPolicy, GreedyPolicy
from mdaf.explore.slots import Candidates

CONTEXT_PROBS = np.array([0.5, 0.3, 0.2])
TRUE_CTR = np.array([[0.10, 0.30, 0.05, 0.20],
                     [0.40, 0.05, 0.15, 0.10],
                     [0.02, 0.08, 0.50, 0.25]])
LOGGING = np.array([[0.4, 0.1, 0.3, 0.2],
                    [0.1, 0.5, 0.2, 0.2],
                    [0.4, 0.3, 0.1, 0.2]])
TARGET = np.array([[0.0, 0.8, 0.0, 0.2],
                   [1.0, 0.0, 0.0, 0.0],
                   [0.0, 0.1, 0.6, 0.3]])


def simulate_logs(rng, n, logging):
    """n rows per replication, vectorised: (contexts, actions, rewards) of shape (R, n)."""
    contexts = rng.choice(3, size=n, p=CONTEXT_PROBS)
    cum = np.cumsum(logging[contexts], axis=-1)
    actions = (rng.random(contexts.shape)[..., None] > cum).sum(-1)
    rewards = (rng.random(contexts.shape) < TRUE_CTR[contexts, actions]).astype(float)
    return contexts, actions, rewards


def true_value(target):
    return float((CONTEXT_PROBS[:, None] * target * TRUE_CTR).sum())


def test_ips_is_unbiased_and_its_stderr_is_calibrated():
    rng = np.random.default_rng(0)
    value = true_value(TARGET)
    estimates, stderrs, naive = [], [], []
    for _ in range(400):
        x, a, r = simulate_logs(rng, 300, LOGGING)
        est = ips(r, LOGGING[x, a], TARGET[x, a])
        estimates.append(est.value)
        stderrs.append(est.stderr)
        naive.append(r.mean())
    estimates = np.array(estimates)
    se_of_mean = estimates.std(ddof=1) / np.sqrt(estimates.size)
    assert abs(estimates.mean() - value) < 4 * se_of_mean
    # The logged rewards alone measure the logging policy, far from the target's value.
    assert abs(np.mean(naive) - value) > 20 * se_of_mean
    assert np.mean(stderrs) == pytest.approx(estimates.std(ddof=1), rel=0.15)


def test_snips_and_replay_converge_to_the_target_value():
    rng = np.random.default_rng(1)
    value = true_value(TARGET)
    x, a, r = simulate_logs(rng, 200_000, LOGGING)
    est = snips(r, LOGGING[x, a], TARGET[x, a])
    assert abs(est.value - value) < 4 * est.stderr
    # Replay: uniform logging, deterministic target (best action per context).
    uniform = np.full_like(LOGGING, 0.25)
    x, a, r = simulate_logs(rng, 200_000, uniform)
    best = TRUE_CTR.argmax(axis=1)
    est = replay(r, a, best[x])
    assert abs(est.value - true_value(np.eye(4)[best])) < 4 * est.stderr
    assert est.n == pytest.approx(200_000 / 4, rel=0.02)


def test_slate_ips_from_an_epsilon_greedy_log_estimates_greedy_clicks():
    """Rows are shown ads with their probability of being shown; n = page views."""
    ctr = np.array([0.02, 0.30, 0.05, 0.12, 0.20, 0.08])
    candidates = Candidates(ads=np.arange(6), scores=[0.2, 0.1, 0.05, 0.15, 0.02, 0.01],
                            impressions=np.full(6, 100.0), clicks=np.zeros(6),
                            graduated=[True, True, True, False, False, False])
    logger, target = EpsilonGreedyPolicy(0.4), GreedyPolicy()
    rng = np.random.default_rng(2)
    log = InteractionLog()
    page_views = 6000
    for t in range(page_views):
        slate = logger.select(candidates, 2, rng)
        log.append(0, slate.ads, rng.random(slate.ads.size) < ctr[slate.index], slate.propensities, t)
    df = log.to_dataframe()
    target_probs = target.inclusion_probabilities(candidates, 2)[df["action"].to_numpy()]
    est = ips(df["reward"], df["propensity"], target_probs, n=page_views)
    greedy_clicks = ctr[np.argsort(-candidates.scores)[:2]].sum()  # ads 0 and 3: 0.14 per page view
    assert abs(est.value - greedy_clicks) < 4 * est.stderr
    assert abs(df["reward"].sum() / page_views - greedy_clicks) > 4 * est.stderr  # the logger differs


def test_bad_estimator_input():
    with pytest.raises(ValueError, match="empty"):
        ips([], [], [])
    with pytest.raises(ValueError, match="same length"):
        ips([1, 0], [0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="logging_propensities"):
        ips([1, 0], [0.0, 0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="logging_propensities"):
        snips([1, 0], [1.5, 0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="target_propensities"):
        ips([1, 0], [0.5, 0.5], [0.5, -0.1])
    with pytest.raises(ValueError, match="undefined"):
        snips([1, 0], [0.5, 0.5], [0.0, 0.0])
    with pytest.raises(ValueError, match="same length"):
        replay([1, 0], [1], [1, 2])
    assert replay([1.0], [3], [4]).n == 0
