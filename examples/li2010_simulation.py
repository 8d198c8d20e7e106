"""The simulation of Li et al. (KDD 2010, Algorithm 4): EE algorithms on a paper-shaped ad market.

Full run (5 seeds, every figure of the paper; writes the PNGs, the final table and the curves to
``benchmarks/results/explore``; see the README for its time)::

    python examples/li2010_simulation.py --jobs 2

Reduced run (one seed, the first scenario, five algorithms, 1,000 iterations)::

    python examples/li2010_simulation.py --reduced --out runs/li2010

``--from-curves DIR [DIR ...]`` redraws the figures and the table from saved ``curves.csv.gz`` files:
each run depends only on its seed and settings, so seeds run in separate processes
(``--seeds 0 1``, ``--seeds 2 3`` ...) and merged this way give the single command's results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

try:
    from mdaf.explore import li2010_simulation as sim
except ModuleNotFoundError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mdaf.explore import li2010_simulation as sim

FULL_SEEDS, FULL_ITERATIONS = (0, 1, 2, 3, 4), 2000
REDUCED_ITERATIONS = 1000
# The paper's epsilon-decreasing stays at 0.51 for the first 2,000 iterations (identical to
# epsilon-greedy 0.51 in the full run), so it runs only where asked for.
FULL_POLICIES = tuple(spec for spec in sim.PAPER_POLICIES if spec.kind != "epsilon-decreasing")
# Deterministic feedback and two-level CFB: the comparison's core, to fit a shared 2-core machine.
LATER_POLICIES = (sim.PolicySpec("greedy"), sim.PolicySpec("epsilon-greedy", 0.5), sim.PolicySpec("EG"),
                  sim.PolicySpec("confidence", 0.5))
REDUCED_POLICIES = (sim.PolicySpec("greedy"), sim.PolicySpec("epsilon-greedy", 0.5),
                    sim.PolicySpec("epsilon-decreasing"), sim.PolicySpec("EG"),
                    sim.PolicySpec("confidence", 0.5))
TABLE_COLUMNS = ("coverage_%", "coverage_gain_%", "ctr_%", "ctr_gain_%", "avg_ctr_%", "avg_ctr_gain_%")
COLUMN_HELP = {
    "coverage_%": "CFB coverage at the end: (page, ad) pairs with >= 100 impressions, % of all pairs",
    "coverage_gain_%": "coverage relative to greedy (default CTR 0) of the same scenario and seed, %",
    "ctr_%": "average expected CTR of the last 100 iterations (expected clicks / impressions), %",
    "ctr_gain_%": "that CTR relative to greedy's, %",
    "avg_ctr_%": "average expected CTR over the whole run, %",
    "avg_ctr_gain_%": "that CTR relative to greedy's, % (the price or profit of exploring so far)",
}


def plot_scenario(curves: pd.DataFrame, scenario: str, path: Path, title: str) -> None:
    """Coverage and expected CTR against iterations, mean over seeds with a +-1 std band."""
    data = curves[curves["scenario"] == scenario]
    fig, (cov_ax, ctr_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for policy, group in data.groupby("policy", sort=False):
        stats = group.groupby("iteration")[["coverage_%", "expected_ctr"]].agg(["mean", "std"]).fillna(0.0)
        x = stats.index.to_numpy()
        for ax, column, scale in ((cov_ax, "coverage_%", 1.0), (ctr_ax, "expected_ctr", 100.0)):
            mean, std = stats[(column, "mean")] * scale, stats[(column, "std")] * scale
            line, = ax.plot(x, mean, label=policy, linewidth=1.3)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    seeds = data["seed"].nunique()
    cov_ax.set_ylabel("CFB coverage (% of pairs with >= 100 impressions)")
    ctr_ax.set_ylabel("average expected CTR per 100 iterations (%)")
    for ax in (cov_ax, ctr_ax):
        ax.set_xlabel("iteration (every page served once)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: mean of {seeds} seed(s), band +-1 std")
    cov_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(curves: pd.DataFrame, out: Path) -> pd.DataFrame:
    """Write the figures and the final table under ``out``; print the table and its legend."""
    table = sim.final_table(curves)
    baselines = curves["policy"].str.contains("default CTR")
    for i, scenario in enumerate(curves["scenario"].unique(), start=1):
        plot_scenario(curves[~baselines], scenario, out / f"li2010_figure{i}.png",
                      f"{scenario}, default CTR 0")
    if baselines.any():  # greedy with default CTR 0, mean and 1, on their own scale
        scenario = curves.loc[baselines, "scenario"].iloc[0]
        plot_scenario(curves[baselines | (curves["policy"] == "greedy")], scenario,
                      out / "li2010_default_ctr.png", f"{scenario}, greedy with default CTR 0, mean, 1")
    shown = pd.DataFrame(index=table.index)
    for column in TABLE_COLUMNS:
        shown[column] = [f"{m:.2f} +- {s:.2f}" if pd.notna(s) else f"{m:.2f}"
                         for m, s in zip(table[column], table[f"{column}_std"], strict=True)]
    shown["seeds"] = table["seeds"]
    header = ["scenario", "policy", *shown.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([*index, *map(str, row)]) + " |"
              for index, row in zip(shown.index, shown.itertuples(index=False), strict=True)]
    (out / "li2010_table.md").write_text("\n".join(lines) + "\n")
    table.round(4).to_csv(out / "li2010_table.csv")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 40):
        print(shown.to_string())
    print("columns (mean +- std over seeds):")
    for column in TABLE_COLUMNS:
        print(f"  {column:16s} {COLUMN_HELP[column]}")
    seeds = sorted(curves["seed"].unique().tolist())
    lines = [f"The paper's findings on this run (seeds {seeds}, "
             f"{int(curves['iteration'].max())} iterations):", ""]
    lines += [f"- {finding}: **{verdict}** ({evidence})"
              for finding, verdict, evidence in sim.paper_findings(curves)]
    (out / "li2010_findings.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return table


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="one seed, one scenario, 1,000 iterations")
    parser.add_argument("--seeds", type=int, nargs="+", help=f"default {FULL_SEEDS} (reduced: 0)")
    parser.add_argument("--iterations", type=int,
                        help=f"default {FULL_ITERATIONS} (reduced: {REDUCED_ITERATIONS})")
    parser.add_argument("--jobs", type=int, default=1, help="processes")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/explore"))
    parser.add_argument("--from-curves", type=Path, nargs="+", metavar="DIR",
                        help="redraw from DIR/curves.csv.gz (several: runs of other seeds), no simulation")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.from_curves is not None:
        curves = pd.concat([pd.read_csv(d / "curves.csv.gz") for d in args.from_curves], ignore_index=True)
        if curves.duplicated(["scenario", "policy", "seed", "iteration"]).any():
            raise ValueError("--from-curves: the directories share a seed; give each seed once")
        curves.to_csv(args.out / "curves.csv.gz", index=False, float_format="%.6g")
        return report(curves, args.out)

    seeds = args.seeds or ((0,) if args.reduced else FULL_SEEDS)
    iterations = args.iterations or (REDUCED_ITERATIONS if args.reduced else FULL_ITERATIONS)
    if args.reduced:
        grid = sim.experiment_grid(iterations, sim.PAPER_SCENARIOS[:1], REDUCED_POLICIES,
                                   default_ctr_baselines=False)
    else:
        grid = sim.experiment_grid(iterations, sim.PAPER_SCENARIOS, FULL_POLICIES, LATER_POLICIES)
    truth = sim.GroundTruth.generate(sim.GroundTruthConfig(seed=seeds[0]))
    settings = sim.SimulationSettings(iterations=iterations)
    print(f"ground truth (seed {seeds[0]}): {truth.ads.shape[0]} pages, {truth.config.n_ads} ads, "
          f"{truth.n_pairs} (page, ad) pairs ({truth.n_pairs / truth.ads.shape[0]:.1f} per page), "
          f"initial CFB knows {int((truth.known_impressions > 0).sum())}; true CTR median "
          f"{100 * float(pd.Series(truth.true_ctr[truth.valid]).median()):.2f}%")
    print(f"settings: {json.dumps(asdict(settings))}; seeds {list(seeds)}")
    start = time.perf_counter()
    frames = []
    for seed in seeds:  # one seed at a time, saved as it completes
        frames.append(sim.run_experiments([seed], grid, jobs=args.jobs))
        curves = pd.concat(frames, ignore_index=True)
        curves.to_csv(args.out / "curves.csv.gz", index=False, float_format="%.6g")
        print(f"seed {seed} done at {time.perf_counter() - start:.0f} s", flush=True)
    print(f"simulated {curves.groupby(['scenario', 'policy', 'seed']).ngroups} runs in "
          f"{time.perf_counter() - start:.0f} s; simulation loop "
          f"{curves['page_views_per_second'].median():,.0f} page views/s per process (median)")
    return report(curves, args.out)


if __name__ == "__main__":
    main()
