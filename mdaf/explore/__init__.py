"""Serving-time exploration for ads: click feedback, exploration policies, logs, off-policy evaluation.

candidates -> ranker (``CFBRanker`` or ``ModelRanker`` over a trained MDAF model) -> policy
(greedy, epsilon-greedy, epsilon-decreasing, the exponentiated-gradient epsilon-greedy of Li et al.,
KDD 2010, reserved slots, UCB1, Thompson sampling) -> shown ads with exact propensities -> feedback
-> CFB and policy updates; logs -> ``ips`` / ``snips`` / ``replay``. ``ServingLoop`` wires one
stream; ``simulator.compare_policies`` runs them all on a seeded, non-stationary ad market.

Only numpy and pandas are needed; torch only when ``ModelRanker`` scores with a model.
"""

from mdaf.explore.cfb import CFBEstimate, ClickFeedbackModel
from mdaf.explore.estimators import OffPolicyEstimate, ips, replay, snips
from mdaf.explore.logs import InteractionLog
from mdaf.explore.policies import (
    EGEpsilonGreedyPolicy,
    EpsilonDecreasingPolicy,
    EpsilonGreedyPolicy,
    GreedyPolicy,
    ReservedSlotsPolicy,
    Slate,
    SlatePolicy,
    ThompsonSamplingPolicy,
    UCB1Policy,
)
from mdaf.explore.rankers import CFBRanker, ModelRanker, ServingRequest
from mdaf.explore.serving import ServedSlate, ServingLoop
from mdaf.explore.simulator import AdMarket, SimulationConfig, SimulationResult, compare_policies, simulate
from mdaf.explore.slots import Candidates

__all__ = [
    "CFBEstimate", "ClickFeedbackModel", "OffPolicyEstimate", "ips", "replay", "snips", "InteractionLog",
    "EGEpsilonGreedyPolicy", "EpsilonDecreasingPolicy", "EpsilonGreedyPolicy", "GreedyPolicy",
    "ReservedSlotsPolicy", "Slate", "SlatePolicy", "ThompsonSamplingPolicy", "UCB1Policy", "CFBRanker",
    "ModelRanker", "ServingRequest", "ServedSlate", "ServingLoop", "AdMarket", "SimulationConfig",
    "SimulationResult", "compare_policies", "simulate", "Candidates",
]
