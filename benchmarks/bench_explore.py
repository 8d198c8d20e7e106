"""Serving-time exploration throughput: page views per second of the serving loop, per policy.

One page view = CFB estimates for the candidates, the policy's slate with exact propensities, and
the feedback (CFB, EG weights). ``extra_info`` records page views per second on a 40-candidate,
3-slot request. CPU only (numpy).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_benchmark  # benchmarks/ is on sys.path under pytest

from mdaf.explore.policies import EGEpsilonGreedyPolicy, GreedyPolicy, ThompsonSamplingPolicy
from mdaf.explore.rankers import ServingRequest
from mdaf.explore.serving import ServingLoop

PAGE_VIEWS = 500
POLICIES = {
    "greedy": GreedyPolicy,
    "eg-eps-greedy": EGEpsilonGreedyPolicy,
    "eg-confidence": lambda: EGEpsilonGreedyPolicy(exploration="confidence", confidence_bonus=0.05),
    "thompson": lambda: ThompsonSamplingPolicy(propensity_samples=20),
}


@pytest.mark.parametrize("policy", list(POLICIES))
def test_serving_loop_throughput(benchmark, policy):
    rng = np.random.default_rng(0)
    ctr = rng.beta(2, 40, size=(8, 40))
    requests = [ServingRequest(context=int(p), ads=np.arange(40)) for p in rng.integers(0, 8, PAGE_VIEWS)]
    noise = rng.random((PAGE_VIEWS, 3))

    def run():
        loop = ServingLoop(POLICIES[policy](), n_slots=3, graduation_threshold=50)
        for request, u in zip(requests, noise, strict=True):
            served = loop.serve(request)
            loop.feedback(served, u[: served.ads.size] < ctr[request.context, served.ads])

    run_benchmark(benchmark, run, device=torch.device("cpu"), rounds=3, policy=policy, page_views=PAGE_VIEWS)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["page_views_per_second"] = PAGE_VIEWS / benchmark.stats.stats.min
