"""Compare ad exploration policies on a simulated, non-stationary ad market.

Greedy, fixed epsilon-greedy, epsilon-decreasing, the exponentiated-gradient epsilon-greedy of
Li et al. (KDD 2010) with uniform and confidence-based exploration, UCB1 and Thompson sampling all
serve the same seeded stream of page views (``mdaf.explore.simulator``). Prints the configuration
and the comparison table, and saves the table (CSV), the configuration (JSON) and a PNG of
cumulative clicks per policy under ``--out``.

    python examples/explore_ads.py [--seed 0] [--rounds 15000] [--out runs/explore]
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

try:
    from mdaf.explore.policies import EGEpsilonGreedyPolicy
except ModuleNotFoundError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mdaf.explore.policies import EGEpsilonGreedyPolicy
from mdaf.explore.simulator import SimulationConfig, compare_policies  # noqa: E402


def plot_cumulative_clicks(results, path: Path) -> None:
    """Cumulative clicks (left) and cumulative regret (right) per policy."""
    fig, (clicks_ax, regret_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, result in results.items():
        clicks_ax.plot(np.cumsum(result.clicks), label=name, linewidth=1.4)
        regret_ax.plot(np.cumsum(result.best - result.expected), label=name, linewidth=1.4)
    clicks_ax.set_ylabel("cumulative clicks")
    clicks_ax.set_title("Cumulative clicks per exploration policy")
    regret_ax.set_ylabel("cumulative regret (expected clicks)")
    regret_ax.set_title("Regret against the best slate of each page view")
    for ax in (clicks_ax, regret_ax):
        ax.set_xlabel("page view")
        ax.grid(alpha=0.3)
    clicks_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=SimulationConfig.n_rounds, help="page views")
    parser.add_argument("--slots", type=int, default=SimulationConfig.n_slots, help="ads per page view")
    parser.add_argument("--out", type=Path, default=Path("runs/explore"), help="output directory")
    args = parser.parse_args(argv)

    config = SimulationConfig(seed=args.seed, n_rounds=args.rounds, n_slots=args.slots)
    print("config:", json.dumps(asdict(config)))
    table, results, market = compare_policies(config)
    print(f"market: {market.n_ads} ads ({int((market.arrival > 0).sum())} arriving during the run), "
          f"{config.n_pages} pages, {config.n_rounds} page views, {config.n_slots} slots")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.round(2).to_string())
    for name, result in results.items():
        if isinstance(result.policy, EGEpsilonGreedyPolicy):
            pairs = zip(result.policy.epsilons, result.policy.probabilities, strict=True)
            probs = ", ".join(f"{e:g}:{p:.2f}" for e, p in pairs)
            print(f"{name}: learned p over epsilons {{{probs}}}")

    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "explore_table.csv")
    (args.out / "explore_config.json").write_text(json.dumps(asdict(config), indent=2))
    plot_cumulative_clicks(results, args.out / "explore_cumulative_clicks.png")
    print(f"saved {args.out / 'explore_table.csv'}, {args.out / 'explore_cumulative_clicks.png'}")
    return table


if __name__ == "__main__":
    main()
