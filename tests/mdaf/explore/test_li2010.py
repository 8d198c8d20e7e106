"""Li et al. (KDD 2010): Theorem 1, the batched Algorithms 1 and 3 against their exact inclusion
probabilities, the epsilon-decreasing schedule and the EG batch update."""

import math

import numpy as np
import pytest

from mdaf.explore.li2010 import (
    ExponentiatedGradient,
    algorithm1_inclusion,
    algorithm1_slates,
    algorithm3_inclusion,
    algorithm3_slates,
    confidence_weights,
    decreasing_epsilon,
    theorem1_settings,
)


def test_theorem1_settings():
    s = theorem1_settings(10, 1_000_000, 0.05)
    beta = math.sqrt(math.log(10 / 0.05) / (10 * 1_000_000))
    assert s["beta"] == pytest.approx(beta, rel=1e-12)
    assert s["kappa"] == pytest.approx(40 * beta / (3 + beta), rel=1e-12)
    assert s["tau"] == pytest.approx(s["kappa"] / 20, rel=1e-12)
    with pytest.raises(ValueError, match="N is too small"):
        theorem1_settings(10, 10, 0.05)
    for kwargs, match in ((dict(T=0, N=10, delta=0.1), "T"), (dict(T=2, N=2.5, delta=0.1), "N"),
                          (dict(T=2, N=10, delta=1.0), "delta")):
        with pytest.raises(ValueError, match=match):
            theorem1_settings(**kwargs)


def test_decreasing_schedule():
    np.testing.assert_allclose(decreasing_epsilon(np.array([0, 1999, 2000, 4000, 19_999, 20_000, 10**6])),
                               [0.51, 0.51, 0.46, 0.41, 0.06, 0.01, 0.01])


@pytest.mark.parametrize("n, m, r, q, epsilon", [(10, 3, 1, 4, 0.3), (7, 4, 0, 2, 0.8), (10, 3, 1, 4, 1.0),
                                                 (6, 5, 2, 3, 0.5), (4, 3, 1, 3, 0.5)])  # last: H empty
def test_algorithm1_batch_matches_exact_inclusion(n, m, r, q, epsilon):
    rng = np.random.default_rng(0)
    batch = 40_000
    shown, from_low = algorithm1_slates(np.tile(np.arange(n), (batch, 1)), epsilon, m, r, q, rng)
    assert np.all(np.sort(shown, axis=1)[:, 1:] != np.sort(shown, axis=1)[:, :-1])
    assert np.all(shown[:, :r] == np.arange(r)) and np.all(from_low == (shown >= n - q))
    exact = algorithm1_inclusion(n, m, r, q, epsilon)
    assert exact.sum() == pytest.approx(m)
    freq = np.bincount(shown.reshape(-1), minlength=n) / batch
    assert np.all(np.abs(freq - exact) <= 4.5 * np.sqrt(exact * (1 - exact) / batch) + 1e-12)


@pytest.mark.parametrize("m, r, q, epsilon, w, b, threshold", [(3, 1, 4, 0.5, 1000, 300, 100),
                                                               (4, 0, 2, 0.9, 600, 200, 50),
                                                               (3, 1, 4, 0.0, 1000, 300, 100)])
def test_algorithm3_batch_matches_exact_inclusion(m, r, q, epsilon, w, b, threshold):
    rng = np.random.default_rng(1)
    x = np.array([2500, 40, 700, 120, 0, 999, 1000, 300, 80, 5.0])
    batch = 40_000
    ranked = np.tile(np.arange(x.size), (batch, 1))
    shown, from_promo = algorithm3_slates(ranked, np.tile(x, (batch, 1)), epsilon, m, r, q, w, b, threshold,
                                          rng)
    assert np.all(np.sort(shown, axis=1)[:, 1:] != np.sort(shown, axis=1)[:, :-1])
    exact = algorithm3_inclusion(x, m, r, q, epsilon, w, b, threshold)
    assert exact.sum() == pytest.approx(m)
    freq = np.bincount(shown.reshape(-1), minlength=x.size) / batch
    assert np.all(np.abs(freq - exact) <= 4.5 * np.sqrt(exact * (1 - exact) / batch) + 1e-12)
    if epsilon == 0:  # never explores: the ranked list in order
        assert np.all(shown == np.arange(m)) and not from_promo.any()


def test_confidence_weights():
    x = np.array([0, 99, 100, 300, 999, 1000, 5000.0])
    np.testing.assert_allclose(confidence_weights(x, w=1000, b=300, threshold=100),
                               [1, 1, 1 - np.tanh(1 / 3), 1 - np.tanh(1.0), 1 - np.tanh(999 / 300), 0, 0])


def test_eg_batch_update_is_the_sum_of_the_sequential_steps_at_fixed_p():
    eg = ExponentiatedGradient((0.1, 0.3, 0.5), tau=0.05, beta=0.01, kappa=0.2)
    p = eg.probabilities
    eg.update(np.array([0, 2, 2, 1]), np.array([1.0, 0.0, 1.0, 0.5]), p)
    gains = np.array([1.0, 0.5, 1.0]) + 4 * 0.01
    np.testing.assert_allclose(eg.log_weights, 0.05 * gains / p, rtol=1e-12)
    draws = eg.draw(np.random.default_rng(0), 20_000)
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / 20_000, eg.probabilities, atol=0.015)


@pytest.mark.parametrize("call, match", [
    (lambda: algorithm1_inclusion(10, 3, 3, 4, 0.1), "r \\(reserved ads\\)"),
    (lambda: algorithm1_inclusion(10, 11, 1, 4, 0.1), "m \\(ads shown\\)"),
    (lambda: algorithm1_inclusion(10, 3, 1, 10, 0.1), "q \\(low-rank list size\\)"),
    (lambda: algorithm1_inclusion(10, 3, 1, 4, np.nan), "epsilon"),
    (lambda: algorithm3_inclusion(np.zeros(10), 3, 1, 4, 1.5, 1000, 300, 100), "epsilon"),
    (lambda: ExponentiatedGradient((0.1,), tau=-1.0), "tau"),
])
def test_bad_arguments_are_rejected(call, match):
    with pytest.raises(ValueError, match=match):
        call()
