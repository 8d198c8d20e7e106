"""Ad exploration, two experiments: the paper's simulation (reduced) and a market with budgets.

1. Li et al. (KDD 2010), Algorithm 4, reduced: one seed, random feedback, one-level CFB, greedy
   against epsilon-greedy, epsilon-decreasing, EG and confidence-based exploration, 1,000
   iterations over 1,000 pages (``examples/li2010_simulation.py``; its full run, 5 seeds and all
   figures: ``python examples/li2010_simulation.py --jobs 2``).
2. The same algorithms with this project's graduation variant, UCB1 and Thompson sampling on a
   seeded, non-stationary market where ads arrive, leave and run out of budget
   (``mdaf.explore.simulator``): a table with every column explained, and a PNG of cumulative
   clicks and regret.

    python examples/explore_ads.py [--seed 0] [--iterations 1000] [--rounds 6000] [--out runs/explore]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import li2010_simulation  # noqa: E402  (the sibling example)

from mdaf.explore.simulator import COLUMNS, SimulationConfig, compare_policies  # noqa: E402

MARKET_ROUNDS = 6000


def plot_cumulative_clicks(results, path: Path) -> None:
    """Cumulative clicks (left) and cumulative regret (right) per policy."""
    fig, (clicks_ax, regret_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, result in results.items():
        clicks_ax.plot(np.cumsum(result.clicks), label=name, linewidth=1.4)
        regret_ax.plot(np.cumsum(result.best - result.expected), label=name, linewidth=1.4)
    clicks_ax.set_ylabel("cumulative clicks")
    clicks_ax.set_title("Cumulative clicks per exploration policy")
    regret_ax.set_ylabel("cumulative regret (expected clicks)")
    regret_ax.set_title("Regret against the oracle slate of the live ads (same for all)")
    for ax in (clicks_ax, regret_ax):
        ax.set_xlabel("page view")
        ax.grid(alpha=0.3)
    clicks_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def market_findings(table: pd.DataFrame, seed: int) -> list[str]:
    """What the market run shows, in sentences computed from the table."""
    greedy = table.loc["greedy"]
    ranked = table.sort_values("expected_clicks", ascending=False)
    better = [name for name in ranked.index
              if ranked.loc[name, "expected_clicks"] > greedy["expected_clicks"]]
    best = ranked.index[0]
    lines = [f"market seed {seed}: ranked by expected clicks (= by regret, one benchmark for all): "
             + ", ".join(f"{name} {ranked.loc[name, 'expected_clicks']:.0f}" for name in ranked.index) + "."]
    lines.append(f"{len(better)} of {len(table) - 1} policies beat greedy "
                 f"({greedy['expected_clicks']:.0f} expected clicks, reach {greedy['reach_%']:.0f}%, "
                 f"starved {greedy['starved_%']:.0f}%): "
                 + (", ".join(better) if better else "none") + ".")
    if best == "greedy":
        others = table.drop(index="greedy")
        wider = int((others["reach_%"] > greedy["reach_%"]).sum())
        fairer = int((others["starved_%"] < greedy["starved_%"]).sum())
        lines.append(f"exploration did not pay off in clicks within {table.attrs['config']['n_rounds']} page "
                     f"views; {wider} of {len(others)} policies reach more ads and {fairer} starve fewer "
                     "advertisers than greedy.")
    else:
        gain = 100 * (ranked.loc[best, "expected_clicks"] / greedy["expected_clicks"] - 1)
        lines.append(f"best: {best}, {gain:+.1f}% expected clicks over greedy, reach "
                     f"{ranked.loc[best, 'reach_%']:.0f}%, starved {ranked.loc[best, 'starved_%']:.0f}%.")
    lines.append("One seed: differences of a few percent are within seed-to-seed noise (try --seed).")
    return lines


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=li2010_simulation.REDUCED_ITERATIONS,
                        help="iterations of the paper's simulation (every page once each)")
    parser.add_argument("--rounds", type=int, default=MARKET_ROUNDS, help="page views of the market")
    parser.add_argument("--out", type=Path, default=Path("runs/explore"), help="output directory")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    print("== 1. Li et al. (KDD 2010) simulation, reduced ==")
    li2010_simulation.main(["--reduced", "--seeds", str(args.seed), "--iterations", str(args.iterations),
                            "--out", str(args.out / "li2010")])

    print("\n== 2. market with arrivals, departures and budgets ==")
    config = SimulationConfig(seed=args.seed, n_rounds=args.rounds)
    print("config:", json.dumps(asdict(config)))
    table, results, market = compare_policies(config)
    print(f"market: {market.n_ads} ads ({int((market.arrival > 0).sum())} arriving during the run), "
          f"{config.n_pages} pages, {config.n_rounds} page views, {config.n_slots} slots, "
          f"warm-start mean CTR {100 * market.warm_mean_ctr:.2f}%")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(2).to_string())
    print("columns:")
    for column in table.columns:
        print(f"  {column:16s} {COLUMNS[column]}")
    for line in market_findings(table, args.seed):
        print(line)

    table.to_csv(args.out / "explore_table.csv")
    (args.out / "explore_config.json").write_text(json.dumps(asdict(config), indent=2))
    plot_cumulative_clicks(results, args.out / "explore_cumulative_clicks.png")
    print(f"saved {args.out / 'explore_table.csv'}, {args.out / 'explore_cumulative_clicks.png'}, "
          f"{args.out / 'li2010'}")
    return table


if __name__ == "__main__":
    main()
