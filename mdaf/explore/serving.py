"""The serving loop: candidates -> ranker -> exploration policy -> shown ads -> feedback.

``serve`` scores the request's candidates with the ranker (CFB or a trained model), marks the
graduated ads from the CFB counts, and lets the policy fill the slots; ``feedback`` takes the clicks,
updates the CFB counts and the policy (the EG weights), and logs every shown ad with its propensity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mdaf.explore.cfb import BetaBackoffCFB, ClickFeedbackModel, is_number
from mdaf.explore.logs import InteractionLog
from mdaf.explore.policies import Slate, SlatePolicy
from mdaf.explore.rankers import CFBRanker, ServingRequest
from mdaf.explore.slots import Candidates


@dataclass(frozen=True)
class ServedSlate:
    """What was shown for one request: its context, time and the policy's slate."""

    context: int
    timestamp: int
    slate: Slate

    @property
    def ads(self) -> np.ndarray:
        return self.slate.ads


class ServingLoop:
    """Ranks, explores, logs and learns for a stream of requests.

    Args:
        policy: the slate policy. cfb: a click-feedback model, ``LinearCFB`` (the paper's) or
            ``BetaBackoffCFB`` (a fresh ``BetaBackoffCFB`` by default).
        ranker: callable ``request -> CTRs`` (default: ``CFBRanker(cfb)``).
        n_slots: ads per page view. graduation_threshold: ad impressions (all contexts) after
            which an ad leaves the exploration candidates for the exploitation pool.
        log: where shown ads are logged (``None``: no logging). seed: the policy's random stream.
    """

    def __init__(self, policy: SlatePolicy, cfb: ClickFeedbackModel | None = None, ranker=None,
                 n_slots: int = 3, graduation_threshold: float = 100.0, log: InteractionLog | None = None,
                 seed: int = 0):
        if not is_number(n_slots) or int(n_slots) != n_slots or n_slots < 1:
            raise ValueError(f"n_slots must be a positive integer, got {n_slots!r}")
        if not (is_number(graduation_threshold) and np.isfinite(graduation_threshold)
                and graduation_threshold >= 0):
            raise ValueError(f"graduation_threshold must be a finite number >= 0, "
                             f"got {graduation_threshold!r}")
        if cfb is not None and not isinstance(cfb, ClickFeedbackModel):
            raise ValueError(f"cfb must be a ClickFeedbackModel (LinearCFB or BetaBackoffCFB), "
                             f"got {type(cfb)}")
        self.policy = policy
        self.cfb = BetaBackoffCFB() if cfb is None else cfb
        self.ranker = CFBRanker(self.cfb) if ranker is None else ranker
        self.n_slots = int(n_slots)
        self.graduation_threshold = float(graduation_threshold)
        self.log = log
        self.rng = np.random.default_rng(seed)

    def candidates(self, request: ServingRequest) -> Candidates:
        estimate = self.cfb.estimate(request.context, request.ads)
        if isinstance(self.ranker, CFBRanker) and self.ranker.cfb is self.cfb:
            scores = estimate.ctr  # the same numbers: skip a second lookup
        else:
            scores = np.asarray(self.ranker(request), dtype=np.float64)
        return Candidates.from_estimate(request.ads, scores, estimate, self.graduation_threshold)

    def serve(self, request: ServingRequest, timestamp: int = 0) -> ServedSlate:
        slate = self.policy.select(self.candidates(request), self.n_slots, self.rng)
        return ServedSlate(context=int(request.context), timestamp=int(timestamp), slate=slate)

    def feedback(self, served: ServedSlate, clicks) -> None:
        clicks = np.asarray(clicks, dtype=np.float64).reshape(-1)
        self.policy.update(served.slate, clicks)
        self.cfb.update(served.context, served.ads, 1.0, clicks)
        if self.log is not None:
            self.log.append(served.context, served.ads, clicks, served.slate.propensities, served.timestamp,
                            positions=np.arange(served.ads.size), explored=served.slate.explored)
