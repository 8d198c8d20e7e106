"""Serving-time exploration for ads: click feedback, exploration policies, logs, off-policy evaluation.

candidates -> ranker (``CFBRanker`` over ``LinearCFB`` (Li et al., KDD 2010) or ``BetaBackoffCFB``, or
``ModelRanker`` over a trained MDAF model) -> policy -> shown ads with exact propensities -> feedback
-> CFB and policy updates; logs -> ``ips`` / ``snips`` / ``replay`` (per page view, clustered
standard errors). Policies: the paper's Algorithms 1-3 (``EpsilonGreedyPolicy``,
``EpsilonDecreasingPolicy``, ``EGEpsilonGreedyPolicy``, ``ConfidencePolicy``; ``mdaf.explore.li2010``),
this project's graduation variants, greedy, UCB1 and Thompson sampling. ``li2010_simulation``
reproduces the paper's simulation (Algorithm 4); ``simulator.compare_policies`` runs the policies on
a seeded, non-stationary ad market with budgets.

numpy and pandas (scipy for Thompson propensities); torch only when ``ModelRanker`` scores with a model.
"""

from mdaf.explore.cfb import BetaBackoffCFB, CFBEstimate, ClickFeedbackModel, LinearCFB
from mdaf.explore.estimators import OffPolicyEstimate, ips, replay, snips
from mdaf.explore.li2010 import PAPER_EPSILONS, ExponentiatedGradient, theorem1_settings
from mdaf.explore.logs import InteractionLog
from mdaf.explore.policies import (
    ConfidencePolicy,
    EGEpsilonGreedyPolicy,
    EpsilonDecreasingPolicy,
    EpsilonGreedyPolicy,
    GraduationEGPolicy,
    GraduationEpsilonGreedyPolicy,
    GreedyPolicy,
    ReservedSlotsPolicy,
    Slate,
    SlatePolicy,
    ThompsonSamplingPolicy,
    UCB1Policy,
    thompson_inclusion_bounds,
    thompson_prior,
    ucb1_constant,
)
from mdaf.explore.rankers import CFBRanker, ModelRanker, ServingRequest
from mdaf.explore.serving import ServedSlate, ServingLoop
from mdaf.explore.simulator import AdMarket, SimulationConfig, SimulationResult, compare_policies, simulate
from mdaf.explore.slots import Candidates

__all__ = [
    "BetaBackoffCFB", "CFBEstimate", "ClickFeedbackModel", "LinearCFB", "OffPolicyEstimate", "ips",
    "replay", "snips", "PAPER_EPSILONS", "ExponentiatedGradient", "theorem1_settings", "InteractionLog",
    "ConfidencePolicy", "EGEpsilonGreedyPolicy", "EpsilonDecreasingPolicy", "EpsilonGreedyPolicy",
    "GraduationEGPolicy", "GraduationEpsilonGreedyPolicy", "GreedyPolicy", "ReservedSlotsPolicy", "Slate",
    "SlatePolicy", "ThompsonSamplingPolicy", "UCB1Policy", "thompson_inclusion_bounds", "thompson_prior",
    "ucb1_constant", "CFBRanker", "ModelRanker", "ServingRequest", "ServedSlate", "ServingLoop", "AdMarket",
    "SimulationConfig", "SimulationResult", "compare_policies", "simulate", "Candidates",
]
