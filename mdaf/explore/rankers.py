"""Pluggable rankers: a CTR estimate per candidate of a serving request.

A ranker is any callable ``ranker(request) -> np.ndarray`` of CTRs in [0, 1], one per ad of
``request.ads``. ``CFBRanker`` uses the click-feedback counts; ``ModelRanker`` scores (user,
candidate item) pairs with a trained MDAF model (or any module following ``mdaf.schema``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mdaf.explore.cfb import ClickFeedbackModel, as_id_array


@dataclass(frozen=True)
class ServingRequest:
    """One page view to fill.

    ``context``: the CFB context (a page, or a user); ``ads``: candidate ad ids (item ids for a
    model ranker). For ``ModelRanker`` also: ``categories`` of the candidates, ``user`` and the
    user's clicked ``hist_items`` / ``hist_cats`` (oldest first, unpadded).
    """

    context: int
    ads: np.ndarray
    categories: np.ndarray | None = None
    user: int = 0
    hist_items: np.ndarray | None = None
    hist_cats: np.ndarray | None = None


class CFBRanker:
    """The CTR estimate of a click-feedback model (``LinearCFB`` or ``BetaBackoffCFB``)."""

    def __init__(self, cfb: ClickFeedbackModel):
        if not isinstance(cfb, ClickFeedbackModel):
            raise ValueError(f"cfb must be a ClickFeedbackModel (LinearCFB or BetaBackoffCFB), "
                             f"got {type(cfb)}")
        self.cfb = cfb

    def __call__(self, request: ServingRequest) -> np.ndarray:
        return self.cfb.estimate(request.context, request.ads).ctr


class ModelRanker:
    """Predicted CTR of a torch CTR model for the request's user and each candidate item.

    The model is called as ``model(user=, item=, category=, hist_items=, hist_cats=, hist_len=)``
    with int64 tensors and returns logits (B,) (``mdaf.schema``). Scoring runs in eval mode under
    ``torch.no_grad`` in batches of ``batch_size`` candidates, and returns ``sigmoid(logits)``; the
    model's train/eval mode is restored afterwards.

    Args:
        model: the CTR model (a ``torch.nn.Module``).
        max_len: keep the most recent ``max_len`` history positions (the model's ``meta.max_len``).
        batch_size: candidates per forward pass. device: where to run (default: the model's).
    """

    def __init__(self, model, max_len: int | None = None, batch_size: int = 4096, device=None):
        import torch

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_len is not None and max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.model = model
        self.max_len = max_len
        self.batch_size = int(batch_size)
        if device is None:
            param = next(iter(model.parameters()), None)
            device = param.device if param is not None else torch.device("cpu")
        self.device = torch.device(device)

    def __call__(self, request: ServingRequest) -> np.ndarray:
        r = request
        return self.score(r.ads, r.categories, r.user, r.hist_items, r.hist_cats)

    def score(self, items, categories, user: int = 0, hist_items=None, hist_cats=None) -> np.ndarray:
        """CTR of each (user, item) pair; ``items`` and ``categories`` are aligned int arrays."""
        import torch

        items = as_id_array(items, "items")
        if categories is None:
            raise ValueError("ModelRanker needs the candidates' categories (request.categories)")
        categories = as_id_array(categories, "categories")
        if categories.shape != items.shape:
            raise ValueError(f"categories must align with items: {categories.shape} vs {items.shape}")
        hist_items = as_id_array(np.zeros(0, np.int64) if hist_items is None else hist_items, "hist_items")
        hist_cats = as_id_array(np.zeros(0, np.int64) if hist_cats is None else hist_cats, "hist_cats")
        if hist_items.shape != hist_cats.shape:
            raise ValueError(f"hist_items and hist_cats must align: {hist_items.shape} vs {hist_cats.shape}")
        if self.max_len is not None:
            hist_items, hist_cats = hist_items[-self.max_len:], hist_cats[-self.max_len:]
        n_hist = hist_items.size
        # One padded position when the history is empty: models index at least one step.
        width = max(n_hist, 1)
        hist_row_items = np.zeros(width, np.int64)
        hist_row_cats = np.zeros(width, np.int64)
        hist_row_items[:n_hist], hist_row_cats[:n_hist] = hist_items, hist_cats

        dev = self.device
        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            with torch.no_grad():
                for start in range(0, items.size, self.batch_size):
                    item = torch.from_numpy(items[start:start + self.batch_size]).to(dev)
                    b = item.numel()
                    logits = self.model(
                        user=torch.full((b,), int(user), dtype=torch.int64, device=dev),
                        item=item,
                        category=torch.from_numpy(categories[start:start + self.batch_size]).to(dev),
                        hist_items=torch.from_numpy(hist_row_items).to(dev).expand(b, width).contiguous(),
                        hist_cats=torch.from_numpy(hist_row_cats).to(dev).expand(b, width).contiguous(),
                        hist_len=torch.full((b,), n_hist, dtype=torch.int64, device=dev),
                    )
                    if logits.shape != (b,):
                        raise ValueError(f"model must return logits of shape ({b},), "
                                         f"got {tuple(logits.shape)}")
                    out.append(torch.sigmoid(logits.float()).cpu().numpy().astype(np.float64))
        finally:
            self.model.train(was_training)
        return np.concatenate(out) if out else np.zeros(0)
