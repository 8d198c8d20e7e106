"""Sampling with exact inclusion probabilities, and the count of ads taken from the low list."""

import numpy as np
import pytest

from mdaf.explore.slots import binomial_pmf, capped_inclusion_probabilities, low_count_pmf, systematic_sample


@pytest.mark.parametrize("k", [0, 1, 3, 5, 7])
def test_capped_inclusion_probabilities(k):
    weights = np.array([10.0, 1.0, 1.0, 2.0, 0.5, 0.5, 3.0])
    pi = capped_inclusion_probabilities(weights, k)
    assert pi.sum() == pytest.approx(k) and np.all((pi >= 0) & (pi <= 1))
    free = pi < 1
    if free.sum() > 1:  # uncapped units stay proportional to their weights
        np.testing.assert_allclose(pi[free] / weights[free], (pi[free] / weights[free])[0])
    if k == 3:  # the weight-10 unit is capped; the remaining 2 spread over the rest, 8 in total
        np.testing.assert_allclose(pi, [1.0, 0.25, 0.25, 0.5, 0.125, 0.125, 0.75])


def test_systematic_sample_hits_the_inclusion_probabilities():
    pi = capped_inclusion_probabilities(np.array([4.0, 1.0, 1.0, 2.0, 0.5, 3.0]), 3)
    rng = np.random.default_rng(0)
    n = 20_000
    counts = np.zeros(pi.size)
    for _ in range(n):
        chosen = systematic_sample(pi, rng)
        assert chosen.size == 3 and np.unique(chosen).size == 3
        counts[chosen] += 1
    np.testing.assert_array_less(np.abs(counts / n - pi), 4.5 * np.sqrt(pi * (1 - pi) / n) + 1e-12)


def test_binomial_and_low_count_pmf():
    pmf = binomial_pmf(3, 0.2)
    np.testing.assert_allclose(pmf, [0.512, 0.384, 0.096, 0.008])
    np.testing.assert_allclose(binomial_pmf(2, [0.0, 1.0]), [[1, 0, 0], [0, 0, 1]])
    # 3 slots, H has 1 ad, L has 5: at least 2 come from L whatever the draws.
    np.testing.assert_allclose(low_count_pmf(pmf, n_high=1, n_low=5), [0, 0, 0.512 + 0.384 + 0.096, 0.008])
    # L has 1 ad: at most 1 from L.
    np.testing.assert_allclose(low_count_pmf(pmf, n_high=5, n_low=1), [0.512, 0.488, 0, 0])


def test_bad_sampling_input():
    with pytest.raises(ValueError, match="sample size"):
        capped_inclusion_probabilities(np.ones(3), 4)
    with pytest.raises(ValueError, match="> 0"):
        capped_inclusion_probabilities(np.array([1.0, 0.0]), 1)
