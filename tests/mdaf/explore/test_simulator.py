"""The ad-market simulator: determinism, non-stationarity, budgets, metrics, and the example."""

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mdaf.explore.cfb import BetaBackoffCFB
from mdaf.explore.policies import ConfidencePolicy, EGEpsilonGreedyPolicy, GreedyPolicy, UCB1Policy
from mdaf.explore.serving import ServingLoop
from mdaf.explore.simulator import (
    COLUMNS,
    AdMarket,
    SimulationConfig,
    compare_policies,
    default_policies,
    simulate,
)

SMALL = SimulationConfig(seed=3, n_rounds=600, n_pages=4, n_initial_ads=16, arrival_rate=0.02,
                         mean_lifetime=1500.0, graduation_threshold=20, warm_start_impressions=50)


def test_market_is_seeded_and_non_stationary():
    a, b = AdMarket.generate(SMALL), AdMarket.generate(SMALL)
    for name in ("pages", "arrival", "departure", "targets", "true_ctr", "budget", "click_noise",
                 "warm_clicks"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = AdMarket.generate(replace(SMALL, seed=4))
    assert not np.array_equal(a.true_ctr, c.true_ctr)
    assert (a.arrival > 0).sum() > 0 and (a.departure < SMALL.n_rounds).sum() > 0
    assert np.all(a.departure > a.arrival) and np.all(a.targets.any(axis=0))
    assert np.all((a.true_ctr >= 0) & (a.true_ctr <= 0.5))
    assert a.warm_impressions[:, SMALL.n_initial_ads:].sum() == 0  # late arrivals start cold


def test_comparison_is_deterministic_and_metrics_are_consistent():
    policies = {"greedy": GreedyPolicy, "EG": EGEpsilonGreedyPolicy, "confidence": ConfidencePolicy,
                "UCB1": lambda: UCB1Policy(c=0.4)}
    table1, results, market = compare_policies(SMALL, policies)
    table2, _, _ = compare_policies(SMALL, policies)
    cols = [c for c in table1.columns if c != "seconds"]
    assert table1[cols].equals(table2[cols])
    for name, result in results.items():
        assert np.all(result.best >= result.expected - 1e-12)
        assert np.all(result.shown <= SMALL.n_slots) and np.all(result.clicks <= result.shown)
        assert result.impressions.sum() == result.shown.sum() and (result.shown == SMALL.n_slots).mean() > 0.9
        assert np.all(result.spend <= market.budget + 1e-9)
        assert table1.loc[name, "clicks"] == result.clicks.sum()
        assert 0 <= table1.loc[name, "reach_%"] <= 100 and table1.loc[name, "regret"] >= 0
    assert table1.attrs["config"]["seed"] == SMALL.seed
    # One benchmark for every policy: ranking by regret is ranking by expected clicks.
    for result in results.values():
        np.testing.assert_array_equal(result.best, results["greedy"].best)
    assert table1["regret"].rank().tolist() == (-table1["expected_clicks"]).rank().tolist()
    assert set(table1.columns) == set(COLUMNS)


def test_default_policies_follow_the_rules():
    market = AdMarket.generate(SMALL)
    policies = {name: factory() for name, factory in default_policies(SMALL, market).items()}
    mean_ctr = market.warm_mean_ctr
    assert 0 < mean_ctr < 0.5
    assert policies["UCB1"].c == pytest.approx(2 * np.sqrt(mean_ctr * (1 - mean_ctr)))
    alpha, beta = policies["Thompson"].alpha, policies["Thompson"].beta
    assert alpha / (alpha + beta) == pytest.approx(mean_ctr)
    eg = policies["EG"].eg
    assert eg.kappa == pytest.approx(4 * 10 * eg.beta / (3 + eg.beta))
    assert eg.tau == pytest.approx(eg.kappa / 20)


def test_an_ad_leaves_once_its_budget_is_spent():
    n_rounds = 50
    market = AdMarket(
        pages=np.zeros(n_rounds, np.int64), arrival=np.zeros(2, np.int64), departure=np.full(2, n_rounds),
        targets=np.ones((1, 2), bool), true_ctr=np.array([[1.0, 0.1]]), cpc=np.array([2.0, 1.0]),
        budget=np.array([6.0, 1000.0]), click_noise=np.full((n_rounds, 2), 0.5, np.float32),
        warm_impressions=np.zeros((1, 2), np.int64), warm_clicks=np.zeros((1, 2), np.int64))
    loop = ServingLoop(GreedyPolicy(), cfb=BetaBackoffCFB(min_impressions=1), n_slots=1)
    result = simulate(market, loop)
    # Ad 0 always gets clicked: 3 clicks at cost 2 spend its budget of 6, then only ad 1 is shown.
    assert result.impressions.tolist() == [3, n_rounds - 3]
    assert result.spend[0] == 6.0 and result.clicks[:3].tolist() == [1, 1, 1]
    # The benchmark ignores budgets (it must not depend on the policy): ad 0 stays the oracle's pick.
    assert result.best.tolist() == pytest.approx([1.0] * n_rounds)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="page_coverage"):
        SimulationConfig(page_coverage=0.0)
    with pytest.raises(ValueError, match="n_slots"):
        SimulationConfig(n_slots=0)


def test_example_prints_the_table_and_saves_the_plot(tmp_path, capsys):
    path = Path(__file__).resolve().parents[3] / "examples" / "explore_ads.py"
    spec = importlib.util.spec_from_file_location("explore_ads", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    table = example.main(["--rounds", "300", "--iterations", "100", "--seed", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert len(table) == 8 and {"clicks", "ctr_%", "regret", "reach_%", "budget_used_%"} <= set(table.columns)
    for name in table.index:
        assert name in out
    for column in list(table.columns) + ["coverage_%", "avg_ctr_gain_%"]:  # every column explained
        assert f"  {column} " in out
    assert "market seed 1: ranked by expected clicks" in out and "beat greedy" in out
    assert (tmp_path / "li2010" / "li2010_figure1.png").stat().st_size > 10_000
    assert (tmp_path / "li2010" / "li2010_table.md").read_text().count("|") > 20
    assert (tmp_path / "explore_cumulative_clicks.png").stat().st_size > 10_000
    assert (tmp_path / "explore_table.csv").exists() and (tmp_path / "explore_config.json").exists()
