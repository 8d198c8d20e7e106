"""Interaction logs: DataFrame adapters, validation, and logging from the serving loop."""

import numpy as np
import pandas as pd
import pytest

from mdaf.explore.cfb import LinearCFB
from mdaf.explore.logs import REQUIRED_COLUMNS, InteractionLog
from mdaf.explore.policies import EGEpsilonGreedyPolicy
from mdaf.explore.rankers import ServingRequest
from mdaf.explore.serving import ServingLoop


def test_dataframe_round_trip():
    log = InteractionLog()
    log.append(3, [10, 11], [1, 0], [0.5, 0.25], timestamp=7, explored=[False, True])
    log.append(4, [12], [0], [1.0], timestamp=8)
    df = log.to_dataframe()
    assert list(df.columns[:5]) == list(REQUIRED_COLUMNS)
    assert df["context"].tolist() == [3, 3, 4] and df["action"].tolist() == [10, 11, 12]
    assert df["position"].tolist() == [0, 1, 0] and df["explored"].tolist() == [False, True, False]
    assert df["page_view"].tolist() == [0, 0, 1]
    back = InteractionLog.from_dataframe(df).to_dataframe()
    pd.testing.assert_frame_equal(back, df)
    # Only the required columns: position and explored get defaults.
    minimal = InteractionLog.from_dataframe(df[list(REQUIRED_COLUMNS)]).to_dataframe()
    assert minimal["explored"].tolist() == [False] * 3 and len(minimal) == 3
    assert minimal["page_view"].tolist() == [0, 1, 2]  # without the column, each row its own page view


def test_bad_logs_are_rejected():
    df = InteractionLog().to_dataframe()
    with pytest.raises(ValueError, match="lacks columns \\['propensity'\\]"):
        InteractionLog.from_dataframe(df.drop(columns=["propensity"]))
    good = pd.DataFrame({"context": [1], "action": [2], "reward": [1.0], "propensity": [0.3],
                         "timestamp": [5]})
    with pytest.raises(ValueError, match="propensity"):
        InteractionLog.from_dataframe(good.assign(propensity=[0.0]))
    with pytest.raises(ValueError, match="integers"):
        InteractionLog.from_dataframe(good.assign(action=["x"]))
    with pytest.raises(ValueError, match="propensity"):
        InteractionLog().append(0, [1, 2], [0, 1], [0.5, 1.2])
    with pytest.raises(ValueError, match="actions must hold integer ids"):
        InteractionLog().append(0, [1.7, 2.0], [0, 1], [0.5, 0.5])  # not truncated to 1
    with pytest.raises(ValueError, match="one value per action"):
        InteractionLog().append(0, [1, 2], [0, 1, 1], [0.5, 0.5])
    with pytest.raises(ValueError, match="rewards must be finite"):
        InteractionLog().append(0, [1], [np.nan], [0.5])


def test_serving_loop_logs_every_shown_ad_with_its_propensity():
    log = InteractionLog()
    policy = EGEpsilonGreedyPolicy(epsilons=(0.2, 0.6), n=5, q=2)
    loop = ServingLoop(policy, cfb=LinearCFB(threshold=3), n_slots=2, log=log, seed=3)
    rng = np.random.default_rng(0)
    ads = np.arange(1, 8)
    for t in range(50):
        request = ServingRequest(context=t % 3, ads=ads)
        expected = policy.inclusion_probabilities(loop.candidates(request), 2)
        served = loop.serve(request, timestamp=t)
        np.testing.assert_allclose(served.slate.propensities, expected[served.slate.index])
        loop.feedback(served, rng.random(2) < 0.3)
    df = log.to_dataframe()
    assert len(df) == 100 and df["timestamp"].tolist() == np.repeat(np.arange(50), 2).tolist()
    assert df["propensity"].between(0, 1, inclusive="right").all()
    assert df["reward"].sum() == sum(loop.cfb.counts(c, ads)[1].sum() for c in range(3))
