"""The Algorithm 4 simulation: the ground truth's shape, determinism, metrics, the final table."""

from dataclasses import replace

import numpy as np
import pytest

from mdaf.explore.li2010_simulation import (
    GroundTruth,
    GroundTruthConfig,
    PolicySpec,
    SimulationSettings,
    default_ctr_value,
    experiment_grid,
    final_table,
    paper_findings,
    run_experiments,
    simulate,
)

SMALL = GroundTruthConfig(seed=5, n_pages=60, n_ads=600, mean_ads_per_page=30, n_publishers=6,
                          n_ad_groups=400)


def test_paper_shaped_ground_truth():
    truth = GroundTruth.generate()
    pages = truth.ads.shape[0]
    per_page = truth.valid.sum(axis=1)
    assert pages == 1000 and per_page.min() >= 10 and 60 < per_page.mean() < 70
    known = (truth.known_impressions > 0).sum() / truth.n_pairs
    assert known == pytest.approx(17_814 / 64_798, abs=0.01)
    assert truth.known_impressions[truth.known_impressions > 0].min() >= 100
    ctr = truth.true_ctr[truth.valid]
    assert 0.008 < np.median(ctr) < 0.012 and ctr.max() <= 0.5
    assert np.unique(truth.publisher).size == 35 and np.unique(truth.ad_group).size == 9184
    for row in truth.ads:  # an ad appears at most once per page
        ads = row[row >= 0]
        assert np.unique(ads).size == ads.size


@pytest.mark.parametrize("spec, settings", [
    (PolicySpec("greedy"), SimulationSettings(iterations=300, levels=2)),
    (PolicySpec("epsilon-greedy", 0.5), SimulationSettings(iterations=300, feedback="deterministic")),
    (PolicySpec("EG"), SimulationSettings(iterations=300, levels=2)),
    (PolicySpec("confidence", 0.9), SimulationSettings(iterations=300, tie_break="random")),
    (PolicySpec("epsilon-decreasing"), SimulationSettings(iterations=300, default_ctr="one")),
])
def test_runs_are_seeded_and_metrics_consistent(spec, settings):
    truth = GroundTruth.generate(SMALL)
    a, b = simulate(truth, spec, settings, seed=3), simulate(truth, spec, settings, seed=3)
    np.testing.assert_array_equal(a.coverage, b.coverage)
    np.testing.assert_array_equal(a.expected_ctr, b.expected_ctr)
    assert a.iteration.tolist() == [100, 200, 300]
    known = int((truth.known_impressions >= 100).sum())
    assert np.all(np.diff(a.coverage) >= 0) and a.coverage[0] >= known and a.coverage[-1] <= truth.n_pairs
    # Expected CTR of shown slates: between the smallest and largest true CTRs.
    assert np.all((a.expected_ctr > 0) & (a.expected_ctr < truth.true_ctr.max()))
    assert (a.eg_probabilities.size == 10) == (spec.kind == "EG")


def test_exploration_raises_coverage_and_default_one_explores_everything():
    truth = GroundTruth.generate(SMALL)
    settings = SimulationSettings(iterations=400)
    greedy = simulate(truth, PolicySpec("greedy"), settings)
    explorer = simulate(truth, PolicySpec("epsilon-greedy", 0.9), settings)
    optimistic = simulate(truth, PolicySpec("greedy"), replace(settings, default_ctr="one"))
    assert explorer.coverage[-1] > greedy.coverage[-1]
    assert optimistic.coverage[-1] > explorer.coverage[-1]
    assert default_ctr_value(truth, "one") == 1.0 and 0 < default_ctr_value(truth, "mean") < 0.1


def test_experiments_and_final_table():
    grid = experiment_grid(200, policies=(PolicySpec("greedy"), PolicySpec("confidence", 0.5)),
                           later_policies=(PolicySpec("greedy"),))
    assert len(grid) == 2 + 1 + 1 + 2  # first scenario, two later ones, two default-CTR baselines
    curves = run_experiments([0, 1], grid, truth_config=SMALL)
    table = final_table(curves)
    assert (table["seeds"] == 2).all()
    greedy_rows = table.xs("greedy", level="policy")
    np.testing.assert_allclose(greedy_rows["coverage_gain_%"], 0.0)
    assert {"coverage_%", "coverage_%_std", "ctr_%", "avg_ctr_gain_%"} <= set(table.columns)
    assert (curves["page_views_per_second"] > 0).all()
    findings = paper_findings(curves)
    assert findings[0][0] == "every EE algorithm beats pure exploitation in CFB coverage"
    assert all(verdict in ("holds", "does not hold") for _, verdict, _ in findings)
    assert any(name.startswith("default CTR 1") for name, _, _ in findings)
    gains = table.loc[[i for i in table.index if i[1] == "confidence 0.5"], "coverage_gain_%"]
    assert (findings[0][1] == "holds") == bool((gains > 0).all())


@pytest.mark.parametrize("build, match", [
    (lambda: SimulationSettings(feedback="both"), "feedback"),
    (lambda: SimulationSettings(levels=3), "levels"),
    (lambda: SimulationSettings(default_ctr=0.5), "default_ctr"),
    (lambda: SimulationSettings(q=10), "q \\(low-rank list size\\)"),
    (lambda: SimulationSettings(iterations=0), "iterations"),
    (lambda: SimulationSettings(tie_break="none"), "tie_break"),
    (lambda: PolicySpec("softmax"), "kind"),
    (lambda: GroundTruthConfig(n_ad_groups=20_000), "n_ad_groups"),
    (lambda: GroundTruthConfig(known_fraction=0.0), "known_fraction"),
])
def test_bad_settings_are_rejected(build, match):
    with pytest.raises(ValueError, match=match):
        build()
