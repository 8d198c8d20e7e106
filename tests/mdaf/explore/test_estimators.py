"""Off-policy estimators: unbiasedness, slates per page view, clustered errors, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

from mdaf.explore.estimators import ips, replay, snips
from mdaf.explore.li2010 import algorithm1_inclusion, algorithm1_slates
from mdaf.explore.logs import InteractionLog

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


SLATE_CTR = np.array([0.12, 0.30, 0.05, 0.02, 0.20, 0.08])  # by rank: the CFB ranking is not the truth


def slate_log(rng, page_views, epsilon=0.4, m=2, r=1, q=2):
    """A log of Algorithm 1 (the paper's epsilon-greedy) over ranks 0..5: one row per shown ad."""
    shown, _ = algorithm1_slates(np.tile(np.arange(6), (page_views, 1)), epsilon, m, r, q, rng)
    clicks = (rng.random(shown.shape) < SLATE_CTR[shown]).astype(float)
    propensities = algorithm1_inclusion(6, m, r, q, epsilon)[shown]
    page_view = np.repeat(np.arange(page_views), m)
    return shown.reshape(-1), clicks.reshape(-1), propensities.reshape(-1), page_view


def test_slate_estimates_are_per_page_view_with_clustered_standard_errors():
    """IPS and SNIPS of greedy (ranks 0 and 1) from epsilon-greedy slates: clicks per page view."""
    rng = np.random.default_rng(2)
    greedy = np.array([1.0, 1.0, 0, 0, 0, 0])
    value = SLATE_CTR[:2].sum()  # 0.42 clicks per page view
    results = {"ips": [], "snips": []}
    for _ in range(300):
        ads, clicks, propensities, page_view = slate_log(rng, 400)
        results["ips"].append(ips(clicks, propensities, greedy[ads], page_views=page_view))
        results["snips"].append(snips(clicks, propensities, greedy[ads], page_views=page_view, slots=2))
    for name, estimates in results.items():
        values = np.array([e.value for e in estimates])
        assert all(e.n == 400 for e in estimates)
        assert abs(values.mean() - value) < 4 * values.std(ddof=1) / np.sqrt(values.size), name
        # Clustered by page view, the standard error matches the spread of the estimates.
        assert np.mean([e.stderr for e in estimates]) == pytest.approx(values.std(ddof=1), rel=0.12), name
    # The same log through InteractionLog: its page_view column gives the clusters.
    ads, clicks, propensities, page_view = slate_log(rng, 50)
    log = InteractionLog()
    for g in range(50):
        rows = page_view == g
        log.append(0, ads[rows], clicks[rows], propensities[rows], timestamp=7)
    df = log.to_dataframe()
    direct = ips(clicks, propensities, greedy[ads], page_views=page_view)
    logged = ips(df["reward"], df["propensity"], greedy[df["action"]], page_views=df["page_view"])
    assert (logged.value, logged.stderr, logged.n) == pytest.approx((direct.value, direct.stderr, direct.n))


def test_page_views_without_rows_count_in_ips():
    est = ips([1.0, 0.0, 1.0], [0.5, 0.5, 1.0], [1.0, 1.0, 1.0], page_views=[0, 0, 1], n_page_views=4)
    # Page-view sums 2, 1, 0, 0: mean 0.75.
    assert est.value == pytest.approx(0.75) and est.n == 4
    assert est.stderr == pytest.approx(np.std([2, 1, 0, 0], ddof=1) / 2)


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
    with pytest.raises(ValueError, match="rewards must be finite"):
        replay([np.nan, 1.0], [1, 2], [1, 2])
    with pytest.raises(ValueError, match="logged_actions must hold integer ids"):
        replay([1.0], [1.5], [1])
    with pytest.raises(ValueError, match="page_views must have one id per row"):
        ips([1, 0], [0.5, 0.5], [0.5, 0.5], page_views=[0])
    with pytest.raises(ValueError, match="page_views must hold integer ids"):
        ips([1, 0], [0.5, 0.5], [0.5, 0.5], page_views=[0.5, 1.0])
    with pytest.raises(ValueError, match="n_page_views \\(1\\) must be at least the 2"):
        ips([1, 0], [0.5, 0.5], [0.5, 0.5], page_views=[0, 1], n_page_views=1)
    with pytest.raises(ValueError, match="slots must be a number > 0"):
        snips([1, 0], [0.5, 0.5], [0.5, 0.5], slots=0)
    with pytest.raises(ValueError, match="rewards must be numbers"):
        ips(["a"], [0.5], [0.5])


def test_single_action_estimates_equal_open_bandit_pipeline():
    """IPS, SNIPS and replay against obp's values on the same log (computed once; see the fixture)."""
    fixture = json.loads((Path(__file__).parent / "fixtures" / "obp_reference.json").read_text())
    log, reference = fixture["log"], fixture["obp_values"]
    assert fixture["provenance"]["obp_version"] == "0.4.1"
    action = np.array(log["action"])
    target = np.array(log["target_dist"])[np.arange(action.size), action]
    assert ips(log["reward"], log["pscore"], target).value == pytest.approx(reference["ips"], rel=1e-12)
    assert snips(log["reward"], log["pscore"], target).value == pytest.approx(reference["snips"], rel=1e-12)
    assert replay(log["reward"], action, log["deterministic_target"]).value == pytest.approx(
        reference["replay"], rel=1e-12)
