"""Serving-time exploration throughput, page views per second (CPU only, numpy, one core).

- ``test_serving_loop_throughput``: one page view at a time through ``ServingLoop`` (CFB estimates,
  the policy's slate with exact propensities, feedback), 40 candidates, 3 slots.
- ``test_li2010_simulation_throughput``: the Algorithm 4 simulation loop (``li2010_simulation``),
  every page of the paper-shaped ground truth (1,000 pages) per iteration; the issue asks for at
  least 10,000 page views per second on one core.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_benchmark  # benchmarks/ is on sys.path under pytest

from mdaf.explore.li2010_simulation import GroundTruth, PolicySpec, SimulationSettings, simulate
from mdaf.explore.policies import ConfidencePolicy, EGEpsilonGreedyPolicy, GraduationEGPolicy, GreedyPolicy
from mdaf.explore.rankers import ServingRequest
from mdaf.explore.serving import ServingLoop

PAGE_VIEWS = 500
POLICIES = {
    "greedy": GreedyPolicy,
    "eg-epsilon-greedy": EGEpsilonGreedyPolicy,
    "confidence": ConfidencePolicy,
    "graduation-eg-ucb-bonus": lambda: GraduationEGPolicy(exploration="ucb-bonus", ucb_bonus=0.4),
}
SIMULATION_ITERATIONS = 100
MIN_SIMULATION_PAGE_VIEWS_PER_SECOND = 10_000


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


@pytest.mark.parametrize("kind, epsilon, levels", [
    ("greedy", 0.0, 1), ("epsilon-greedy", 0.5, 1), ("EG", 0.0, 1), ("confidence", 0.5, 1),
    ("confidence", 0.5, 2),
])
def test_li2010_simulation_throughput(benchmark, kind, epsilon, levels):
    truth = GroundTruth.generate()
    settings = SimulationSettings(iterations=SIMULATION_ITERATIONS, levels=levels)
    page_views = SIMULATION_ITERATIONS * truth.ads.shape[0]

    def run():
        simulate(truth, PolicySpec(kind, epsilon), settings)

    run_benchmark(benchmark, run, device=torch.device("cpu"), rounds=3, policy=kind, levels=levels,
                  page_views=page_views)
    if benchmark.stats is not None:
        rate = page_views / benchmark.stats.stats.min
        benchmark.extra_info["page_views_per_second"] = rate
        assert rate >= MIN_SIMULATION_PAGE_VIEWS_PER_SECOND, f"{rate:.0f} page views/s"
