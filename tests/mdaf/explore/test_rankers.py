"""Pluggable rankers: the CFB estimate, or a torch CTR model scoring (user, candidate) pairs."""

import numpy as np
import pytest
import torch
from torch import nn

from mdaf.explore.cfb import BetaBackoffCFB
from mdaf.explore.policies import GreedyPolicy
from mdaf.explore.rankers import CFBRanker, ModelRanker, ServingRequest
from mdaf.explore.serving import ServingLoop
from mdaf.schema import FEATURE_KEYS, DatasetMeta


class TinyCTR(nn.Module):
    """Follows mdaf.schema: masked mean of the history plus user, item and category embeddings."""

    def __init__(self, num_users=20, num_items=50, num_categories=6, dim=8):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.user = nn.Parameter(torch.randn(num_users, dim, generator=gen))
        self.item = nn.Parameter(torch.randn(num_items, dim, generator=gen))
        self.category = nn.Parameter(torch.randn(num_categories, dim, generator=gen))
        self.out = nn.Parameter(torch.randn(dim, generator=gen) * 0.5)
        self.calls = []

    def forward(self, user, item, category, hist_items, hist_cats, hist_len):
        self.calls.append({"training": self.training, "grad": torch.is_grad_enabled(),
                           "batch": dict(user=user, item=item, category=category, hist_items=hist_items,
                                         hist_cats=hist_cats, hist_len=hist_len)})
        valid = (torch.arange(hist_items.shape[1]) < hist_len[:, None]).float()[..., None]
        hist = (self.item[hist_items] + self.category[hist_cats]) * valid
        hist = hist.sum(1) / hist_len.clamp(min=1)[:, None]
        x = self.user[user] + self.item[item] + self.category[category] + hist
        return torch.tanh(x) @ self.out


def padded_batch(user, items, cats, hist_items, hist_cats, width):
    b, n = len(items), len(hist_items)
    hi, hc = torch.zeros(b, width, dtype=torch.int64), torch.zeros(b, width, dtype=torch.int64)
    hi[:, :n], hc[:, :n] = torch.tensor(hist_items), torch.tensor(hist_cats)
    return {"user": torch.full((b,), user), "item": torch.tensor(items), "category": torch.tensor(cats),
            "hist_items": hi, "hist_cats": hc, "hist_len": torch.full((b,), n)}


ITEMS, CATS = [3, 17, 8, 40, 22, 5, 11], [1, 2, 1, 5, 3, 4, 2]
HIST_ITEMS, HIST_CATS = [9, 30, 3, 14], [2, 5, 1, 3]


def test_model_ranker_scores_are_the_model_probabilities():
    model = TinyCTR().train()
    ranker = ModelRanker(model, batch_size=3)
    scores = ranker.score(ITEMS, CATS, user=6, hist_items=HIST_ITEMS, hist_cats=HIST_CATS)
    with torch.no_grad():
        ref = torch.sigmoid(model(**padded_batch(6, ITEMS, CATS, HIST_ITEMS, HIST_CATS, width=12))).double()
    np.testing.assert_allclose(scores, ref.numpy(), rtol=1e-6)
    calls = model.calls[:3]
    assert [c["batch"]["item"].numel() for c in calls] == [3, 3, 1]
    assert all(not c["training"] and not c["grad"] for c in calls)
    assert all(c["batch"][k].dtype == torch.int64 for c in calls for k in FEATURE_KEYS)
    assert model.training  # restored
    np.testing.assert_allclose(ModelRanker(model, batch_size=64).score(ITEMS, CATS, 6, HIST_ITEMS, HIST_CATS),
                               scores, rtol=1e-6)


def test_model_ranker_history_truncation_and_empty_history():
    model = TinyCTR()
    ranker = ModelRanker(model, max_len=2)
    scores = ranker.score(ITEMS, CATS, user=1, hist_items=HIST_ITEMS, hist_cats=HIST_CATS)
    batch = model.calls[-1]["batch"]
    assert batch["hist_items"][0].tolist() == [3, 14] and batch["hist_len"].tolist() == [2] * len(ITEMS)
    with torch.no_grad():
        ref = torch.sigmoid(model(**padded_batch(1, ITEMS, CATS, HIST_ITEMS[-2:], HIST_CATS[-2:], 5)))
    np.testing.assert_allclose(scores, ref.numpy(), rtol=1e-6)
    ranker.score(ITEMS, CATS, user=1)
    batch = model.calls[-1]["batch"]
    assert batch["hist_len"].tolist() == [0] * len(ITEMS) and batch["hist_items"].shape == (len(ITEMS), 1)


def test_model_ranker_bad_input():
    ranker = ModelRanker(TinyCTR())
    with pytest.raises(ValueError, match="categories"):
        ranker(ServingRequest(context=0, ads=np.array(ITEMS)))
    with pytest.raises(ValueError, match="align"):
        ranker.score(ITEMS, CATS[:3])
    with pytest.raises(ValueError, match="hist_items and hist_cats"):
        ranker.score(ITEMS, CATS, hist_items=[1, 2], hist_cats=[1])
    with pytest.raises(ValueError, match="batch_size"):
        ModelRanker(TinyCTR(), batch_size=0)


def test_serving_loop_ranks_with_the_model():
    model = TinyCTR()
    loop = ServingLoop(GreedyPolicy(), ranker=ModelRanker(model), n_slots=3)
    request = ServingRequest(context=6, ads=np.array(ITEMS), categories=np.array(CATS), user=6,
                             hist_items=np.array(HIST_ITEMS), hist_cats=np.array(HIST_CATS))
    served = loop.serve(request)
    scores = ModelRanker(model).score(ITEMS, CATS, 6, HIST_ITEMS, HIST_CATS)
    np.testing.assert_array_equal(served.ads, np.array(ITEMS)[np.argsort(-scores)[:3]])
    loop.feedback(served, [1, 0, 0])
    assert loop.cfb.counts(6, served.ads)[0].tolist() == [1, 1, 1]


def test_cfb_ranker_is_the_cfb_estimate():
    cfb = BetaBackoffCFB(min_impressions=1)
    cfb.update(2, [4, 5], [10, 10], [5, 1])
    scores = CFBRanker(cfb)(ServingRequest(context=2, ads=np.array([4, 5])))
    np.testing.assert_allclose(scores, cfb.estimate(2, [4, 5]).ctr)
    assert scores[0] > scores[1]


def test_model_ranker_wraps_the_real_mdaf_model():
    models = pytest.importorskip("mdaf.models")
    meta = DatasetMeta(num_users=20, num_items=50, num_categories=6, max_len=6)
    try:
        model = models.build_model("mdaf", meta, embed_dim=8, d_state=4, static_mlp_hidden=(16,))
    except (TypeError, ValueError) as err:  # the model's settings changed under us
        pytest.skip(f"tiny mdaf model not buildable: {err}")
    ranker = ModelRanker(model, max_len=meta.max_len, batch_size=4)
    scores = ranker.score(ITEMS, CATS, user=6, hist_items=HIST_ITEMS, hist_cats=HIST_CATS)
    model.eval()
    with torch.no_grad():
        ref = torch.sigmoid(model(**padded_batch(6, ITEMS, CATS, HIST_ITEMS, HIST_CATS, width=meta.max_len)))
    assert scores.shape == (len(ITEMS),) and np.all((scores > 0) & (scores < 1))
    # Right padding beyond the history does not change the prediction.
    np.testing.assert_allclose(scores, ref.double().numpy(), rtol=1e-5, atol=1e-6)
