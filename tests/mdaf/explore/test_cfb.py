"""Click-feedback model: hierarchical fallback, Beta smoothing, confidence, bad input."""

import numpy as np
import pytest

from mdaf.explore.cfb import LEVEL_AD, LEVEL_CONTEXT, LEVEL_PAIR, LEVEL_PRIOR, ClickFeedbackModel


def test_prior_when_nothing_is_known():
    cfb = ClickFeedbackModel(prior_alpha=2.0, prior_beta=18.0, min_impressions=10)
    est = cfb.estimate(context=3, ads=[1, 2])
    np.testing.assert_allclose(est.ctr, [0.1, 0.1])
    assert cfb.prior_mean == 0.1
    np.testing.assert_array_equal(est.level, [LEVEL_PRIOR, LEVEL_PRIOR])
    np.testing.assert_array_equal(est.confidence, [0.0, 0.0])


def test_fallback_pair_then_ad_then_context():
    a, b, m = 1.0, 9.0, 10
    cfb = ClickFeedbackModel(prior_alpha=a, prior_beta=b, min_impressions=m)
    cfb.update(context=0, ads=[7], impressions=[40], clicks=[8])      # pair (0, 7) has enough
    cfb.update(context=1, ads=[7, 8], impressions=[3, 20], clicks=[1, 2])  # pairs in context 1 too few for 7
    cfb.update(context=2, ads=[9], impressions=[5], clicks=[1])
    est = cfb.estimate(context=1, ads=[7, 8, 5])
    # ad 7 in context 1: 3 impressions < 10 -> its ad level: 43 impressions, 9 clicks.
    # ad 8 in context 1: 20 impressions -> pair level. ad 5: unknown -> context 1 level: 23 / 3.
    np.testing.assert_array_equal(est.level, [LEVEL_AD, LEVEL_PAIR, LEVEL_CONTEXT])
    np.testing.assert_allclose(est.ctr, [(9 + a) / (43 + a + b), (2 + a) / (20 + a + b),
                                         (3 + a) / (23 + a + b)])
    np.testing.assert_allclose(est.confidence, [43 / 53, 20 / 30, 23 / 33])
    np.testing.assert_array_equal(est.impressions, [3, 20, 0])
    np.testing.assert_array_equal(est.clicks, [1, 2, 0])
    np.testing.assert_array_equal(est.ad_impressions, [43, 20, 0])
    # Context 2 has only 5 impressions: an unknown ad there falls through to the prior.
    assert cfb.estimate(2, [5]).level[0] == LEVEL_PRIOR


def test_confidence_grows_with_impressions_and_ctr_converges():
    cfb = ClickFeedbackModel(prior_alpha=1.0, prior_beta=19.0, min_impressions=0)
    rng = np.random.default_rng(0)
    confidences = []
    for _ in range(6):
        clicks = (rng.random(500) < 0.2).astype(float)
        cfb.update(0, np.zeros(500, np.int64) + 4, 1.0, clicks)
        confidences.append(cfb.estimate(0, [4]).confidence[0])
    assert np.all(np.diff(confidences) > 0) and confidences[-1] < 1.0
    assert abs(cfb.estimate(0, [4]).ctr[0] - 0.2) < 0.03


@pytest.mark.parametrize("kwargs, match", [
    (dict(impressions=[-1], clicks=[0]), "impressions"),
    (dict(impressions=[3], clicks=[-2]), "clicks"),
    (dict(impressions=[3], clicks=[4]), "exceed"),
    (dict(impressions=[np.nan], clicks=[0]), "impressions"),
])
def test_bad_counts_are_rejected(kwargs, match):
    cfb = ClickFeedbackModel()
    with pytest.raises(ValueError, match=match):
        cfb.update(0, [1], **kwargs)


def test_bad_ids_and_priors_are_rejected():
    with pytest.raises(ValueError, match="ads"):
        ClickFeedbackModel().estimate(0, [-3])
    with pytest.raises(ValueError, match="integer"):
        ClickFeedbackModel().estimate(0, [1.5])
    with pytest.raises(ValueError, match="prior"):
        ClickFeedbackModel(prior_alpha=0.0)
