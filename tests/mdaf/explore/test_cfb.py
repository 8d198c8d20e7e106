"""Click-feedback models: the paper's linear combination, the Beta back-off variant, bad input."""

import numpy as np
import pytest

from mdaf.explore.cfb import LEVEL_AD, LEVEL_CONTEXT, LEVEL_PAIR, LEVEL_PRIOR, BetaBackoffCFB, LinearCFB
from mdaf.explore.rankers import CFBRanker, ServingRequest


def test_linear_cfb_combines_levels_above_the_threshold():
    publisher_of = {0: 5, 1: 5, 2: 6}
    ad_group_of = {7: 70, 8: 70, 9: 90}
    cfb = LinearCFB(weights=(0.7, 0.3), threshold=100, default_ctr=0.0, publisher_of=publisher_of,
                    ad_group_of=ad_group_of)
    cfb.update(0, [7], [150], [6])        # pair (0, 7): 4%; cell (5, 70) too
    cfb.update(1, [8], [60], [3])         # pair (1, 8) below 100; cell (5, 70) now 210 impressions, 9 clicks
    cfb.update(2, [9], [99], [9])         # everything of ad 9 below 100
    est = cfb.estimate(1, [7, 8, 9])
    # (1, 7): no pair counts -> default 0, cell (5, 70) = 9 / 210. (1, 8): same. (1, 9): cell (5, 90) empty.
    np.testing.assert_allclose(est.ctr, [0.3 * 9 / 210, 0.3 * 9 / 210, 0.0])
    np.testing.assert_array_equal(est.level, [1, 1, 2])
    np.testing.assert_allclose(cfb.estimate(0, [7]).ctr, [0.7 * 6 / 150 + 0.3 * 9 / 210])
    assert cfb.estimate(0, [7]).level[0] == 0
    np.testing.assert_array_equal(est.impressions, [0, 60, 0])
    np.testing.assert_array_equal(est.ad_impressions, [150, 60, 99])
    # The default CTR stands in for every level below the threshold: 1 explores unknown ads first.
    optimistic = LinearCFB(threshold=100, default_ctr=1.0)
    optimistic.update(0, [1], [500], [10])
    np.testing.assert_allclose(optimistic.estimate(0, [1, 2]).ctr, [0.02, 1.0])
    assert optimistic.mean_ctr() == pytest.approx(0.02)
    assert np.isnan(LinearCFB().mean_ctr())


def test_both_models_serve_the_ranker_through_one_interface():
    for cfb in (LinearCFB(threshold=10), BetaBackoffCFB(min_impressions=10)):
        cfb.update(3, [1, 2], [50, 50], [10, 1])
        ranker = CFBRanker(cfb)
        scores = ranker(ServingRequest(context=3, ads=np.array([1, 2])))
        np.testing.assert_allclose(scores, cfb.estimate(3, [1, 2]).ctr)
        assert scores[0] > scores[1]
        np.testing.assert_array_equal(cfb.counts(3, [2, 1])[0], [50, 50])


@pytest.mark.parametrize("kwargs, match", [
    (dict(weights=(0.7, 0.3)), "publisher_of"),
    (dict(weights=(0.5, 0.3, 0.2)), "weights"),
    (dict(weights=(-1.0,)), "weights"),
    (dict(threshold=np.nan), "threshold"),
    (dict(default_ctr=1.5), "default_ctr"),
    (dict(default_ctr="mean"), "default_ctr"),
])
def test_bad_linear_cfb_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LinearCFB(**kwargs)


def test_prior_when_nothing_is_known():
    cfb = BetaBackoffCFB(prior_alpha=2.0, prior_beta=18.0, min_impressions=10)
    est = cfb.estimate(context=3, ads=[1, 2])
    np.testing.assert_allclose(est.ctr, [0.1, 0.1])
    assert cfb.prior_mean == 0.1
    np.testing.assert_array_equal(est.level, [LEVEL_PRIOR, LEVEL_PRIOR])


def test_fallback_pair_then_ad_then_context():
    a, b, m = 1.0, 9.0, 10
    cfb = BetaBackoffCFB(prior_alpha=a, prior_beta=b, min_impressions=m)
    cfb.update(context=0, ads=[7], impressions=[40], clicks=[8])      # pair (0, 7) has enough
    cfb.update(context=1, ads=[7, 8], impressions=[3, 20], clicks=[1, 2])  # pairs in context 1 too few for 7
    cfb.update(context=2, ads=[9], impressions=[5], clicks=[1])
    est = cfb.estimate(context=1, ads=[7, 8, 5])
    # ad 7 in context 1: 3 impressions < 10 -> its ad level: 43 impressions, 9 clicks.
    # ad 8 in context 1: 20 impressions -> pair level. ad 5: unknown -> context 1 level: 23 / 3.
    np.testing.assert_array_equal(est.level, [LEVEL_AD, LEVEL_PAIR, LEVEL_CONTEXT])
    np.testing.assert_allclose(est.ctr, [(9 + a) / (43 + a + b), (2 + a) / (20 + a + b),
                                         (3 + a) / (23 + a + b)])
    np.testing.assert_array_equal(est.impressions, [3, 20, 0])
    np.testing.assert_array_equal(est.clicks, [1, 2, 0])
    np.testing.assert_array_equal(est.ad_impressions, [43, 20, 0])
    # Context 2 has only 5 impressions: an unknown ad there falls through to the prior.
    assert cfb.estimate(2, [5]).level[0] == LEVEL_PRIOR


def test_backoff_ctr_converges():
    cfb = BetaBackoffCFB(prior_alpha=1.0, prior_beta=19.0, min_impressions=0)
    rng = np.random.default_rng(0)
    for _ in range(6):
        clicks = (rng.random(500) < 0.2).astype(float)
        cfb.update(0, np.zeros(500, np.int64) + 4, 1.0, clicks)
    assert abs(cfb.estimate(0, [4]).ctr[0] - 0.2) < 0.03


@pytest.mark.parametrize("kwargs, match", [
    (dict(impressions=[-1], clicks=[0]), "impressions"),
    (dict(impressions=[3], clicks=[-2]), "clicks"),
    (dict(impressions=[3], clicks=[4]), "exceed"),
    (dict(impressions=[np.nan], clicks=[0]), "impressions"),
])
def test_bad_counts_are_rejected(kwargs, match):
    for cfb in (BetaBackoffCFB(), LinearCFB()):
        with pytest.raises(ValueError, match=match):
            cfb.update(0, [1], **kwargs)


def test_bad_ids_and_priors_are_rejected():
    with pytest.raises(ValueError, match="ads"):
        BetaBackoffCFB().estimate(0, [-3])
    with pytest.raises(ValueError, match="integer"):
        LinearCFB().estimate(0, [1.5])
    with pytest.raises(ValueError, match="integer"):
        LinearCFB().update(0, [2.0])  # a float id is refused, not truncated
    with pytest.raises(ValueError, match="prior"):
        BetaBackoffCFB(prior_alpha=0.0)
    with pytest.raises(ValueError, match="min_impressions"):
        BetaBackoffCFB(min_impressions=np.nan)
