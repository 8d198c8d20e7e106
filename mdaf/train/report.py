"""Readable output from a results dict: the paper's tables as markdown, and PNG plots.

Everything here reads only the JSON-able results (``results.json``), so ``mdaf report RUN_DIR``
rebuilds the summary and the plots of any finished or interrupted run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mdaf.data.prepare import protocol_lines

RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.md"
VAL_AUC_PLOT = "val_auc.png"
GATE_PLOT = "gate.png"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _mean_std(summary: Mapping[str, Any], key: str) -> str:
    entry = summary.get(key)
    if not entry:
        return "-"
    if entry["n"] > 1:
        return f"{_fmt(entry['mean'])} ± {_fmt(entry['std'])}"
    return _fmt(entry["mean"])


def comparison_rows(results: Mapping[str, Any], names: Sequence[str]) -> list[list[str]]:
    rows = []
    for name in names:
        model = results["models"][name]
        summary = model.get("summary", {})
        runs = model.get("runs", [])
        best_epochs = ",".join(str(r["best_epoch"]) for r in runs)
        rows.append(
            [
                f"`{name}`",
                _mean_std(summary, "auc"),
                _mean_std(summary, "gauc"),
                _mean_std(summary, "logloss"),
                _mean_std(summary, "train_auc"),
                str(len(runs)),
                best_epochs or "-",
                f"{model.get('parameters', {}).get('total', 0):,}",
                model.get("verdict", "-"),
            ]
        )
    return rows


def floor_rows(results: Mapping[str, Any]) -> list[list[str]]:
    return [
        [
            f"{name} ({floor['description']}{'' if floor.get('sign', 1) > 0 else '; inverted'})",
            _fmt(floor["auc"]),
            _fmt(floor["gauc"]),
            "-",
            "-",
            "-",
            "-",
            "0",
            "untrained",
        ]
        for name, floor in results.get("floors", {}).items()
    ]


COMPARISON_HEADERS = [
    "model",
    "val AUC",
    "val gAUC",
    "val logloss",
    "train AUC",
    "seeds",
    "best epoch",
    "params",
    "vs floors",
]


def render_summary(results: Mapping[str, Any]) -> str:
    """The markdown summary of a run: Tables 2 to 7 of the paper for this data."""
    names = list(results.get("models", {}))
    data = results.get("data", {})
    env = results.get("environment", {})
    out = [f"# MDAF run `{results.get('name', '')}`", ""]
    out.append(
        f"Data: `{data.get('path', '?')}`: {data.get('n_train', 0):,} train /"
        f" {data.get('n_valid', 0):,} validation samples. Machine: {env.get('machine', '?')}."
        f" Wall time {results.get('wall_seconds', 0):.0f} s."
    )
    if results.get("note"):
        out += ["", results["note"]]
    out += ["", "## Overall comparison (Table 2), with untrained floors", ""]
    out.append(md_table(COMPARISON_HEADERS, comparison_rows(results, names) + floor_rows(results)))
    out += [
        "",
        "Mean ± standard deviation over seeds where there are several. Floors are scored in their better"
        " direction, max(AUC, 1 - AUC). 'vs floors': the paired bootstrap 95% interval of the AUC difference"
        " against the best floor, resampling users (first seed). 'train AUC': on training rows at the kept"
        " epoch; a model whose rise above 0.5 there is less than half the median model's is marked"
        " UNDER-TRAINED.",
    ]
    selection = results.get("config", {}).get("selection")
    if selection:
        out += ["", selection["rule"]]
    out += floors_table(results, names)

    reference = results.get("reference_model")
    ablations = [n for n in names if n.startswith("mdaf-")]
    if reference in results.get("models", {}) and ablations:
        ref_auc = results["models"][reference]["summary"]["auc"]["mean"]
        rows = []
        for name in [reference, *ablations]:
            summary = results["models"][name]["summary"]
            delta = summary["auc"]["mean"] - ref_auc
            rows.append([f"`{name}`", _mean_std(summary, "auc"), _mean_std(summary, "gauc"), f"{delta:+.4f}"])
        out += [
            "",
            "## Ablations (Table 3)",
            "",
            md_table(["variant", "val AUC", "val gAUC", "ΔAUC vs MDAF"], rows),
        ]

    gated = [(n, r) for n in names for r in results["models"][n].get("runs", [])[:1] if r.get("gate")]
    if gated:
        rows = []
        for name, run in gated:
            s = run["gate"]["stats"]
            rows.append(
                [
                    f"`{name}` (seed {run['seed']})",
                    *(_fmt(s[k]) for k in ("mean", "std", "median", "min", "max", "q25", "q75")),
                ]
            )
        out += ["", "## Gate distribution on validation (Table 4)", ""]
        out.append(md_table(["model", "mean g", "std", "median", "min", "max", "Q1", "Q3"], rows))
        out.append("")
        out.append("g is the weight of the sequential branch: h = (1 - g) h_static + g h_seq.")
        rows = []
        for name, run in gated:
            for bucket in run["gate"]["by_history_length"]:
                rows.append(
                    [
                        f"`{name}`",
                        bucket["history_length"],
                        f"{bucket['count']:,}",
                        _fmt(bucket["mean"]),
                        _fmt(bucket["std"]),
                    ]
                )
        out += ["", "## Mean gate by history length (Table 5)", ""]
        out.append(md_table(["model", "history length", "samples", "mean g", "std g"], rows))

    steps = data.get("stats_table")
    if steps:
        out += ["", "## Data pipeline and filter impact (Table 6)", ""]
        keys = list(steps[0])
        out.append(md_table(keys, [[row.get(k) for k in keys] for row in steps]))
        protocol = protocol_lines(data.get("stats") or {})
        if protocol:
            out += [""] + [f"- {line}" for line in protocol]

    for name in names:
        runs = results["models"][name].get("runs", [])
        if not runs:
            continue
        run = runs[0]
        rows = [
            [
                r["epoch"],
                r["train_loss"],
                r["train_auc"],
                r["val_auc"],
                r["gap"],
                r["val_logloss"],
                r["val_gauc"],
                f"{r['samples_per_s']:,.0f}",
                "*" if r.get("best") else "",
            ]
            for r in run["history"]
        ]
        stop = "early stop" if run.get("stopped_early") else "epoch limit"
        out += ["", f"## Training dynamics of `{name}` (Table 7), seed {run['seed']} ({stop})", ""]
        out += ["Per epoch on the held-out last training day, which chooses the epoch; '*': kept.", ""]
        headers = [
            "epoch",
            "train loss",
            "train AUC",
            "held-out AUC",
            "gap",
            "held-out logloss",
            "held-out gAUC",
            "samples/s",
            "best",
        ]
        out.append(md_table(headers, rows))

    tests = results.get("significance", [])
    if tests:
        rows = []
        for t in tests:
            boot = t["bootstrap"]
            rows.append(
                [
                    t["seed"],
                    f"`{t['a']}` - `{t['b']}`",
                    f"{boot['diff']:+.4f}",
                    f"[{boot['low']:+.4f}, {boot['high']:+.4f}]",
                    _pvalue(boot["p_a_not_better"]),
                ]
            )
        out += ["", "## Significance (validation)", ""]
        out.append(md_table(["seed", "A - B", "ΔAUC", "95% CI (users resampled)", "p (A not better)"], rows))
        out += [
            "",
            "Paired bootstrap of the AUC difference resampling users (a user's samples and a positive's"
            " negatives are correlated); p is the share of resamples where A does not beat B.",
        ]

    plots = [p for p in (VAL_AUC_PLOT, GATE_PLOT) if p in results.get("plots", [])]
    if plots:
        out += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]

    out += [
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(results.get("config", {}), indent=2, default=str),
        "```",
        "",
    ]
    return "\n".join(out)


def floors_table(results: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """Markdown lines: every model against every floor (AUC difference, user-clustered 95% interval of
    the first seed, seeds whose interval lies above 0)."""
    floors = list(results.get("floors", {}))
    rows = []
    for name in names:
        per_seed = results["models"][name].get("vs_floors", [])
        if not per_seed:
            continue
        cells = [f"`{name}`"]
        for floor in floors:
            ci = per_seed[0][floor]
            wins = sum(1 for s in per_seed if s[floor]["low"] > 0)
            cells.append(f"{ci['diff']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}] {wins}/{len(per_seed)}")
        rows.append(cells)
    if not rows:
        return []
    return [
        "",
        "## Models against every floor (validation)",
        "",
        md_table(["model", *floors], rows),
        "",
        "AUC(model) - AUC(floor in its better direction), 95% interval resampling users (first seed),"
        " then the number of seeds whose interval lies above 0.",
    ]


def _pvalue(p: float) -> str:
    if p is None or math.isnan(p):
        return "-"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


CONSOLE_WIDTH = 120


def interval_vs_floor(per_seed: Sequence[Mapping[str, Mapping[str, float]]], floor: str) -> dict[str, Any]:
    """A model against ``floor``: the first seed's user-clustered interval, the floor's name, and in how
    many seeds the interval lies above 0."""
    wins = sum(1 for seed in per_seed if seed[floor]["low"] > 0)
    return {**per_seed[0][floor], "floor": floor, "wins": wins, "seeds": len(per_seed)}


def standing(ci: Mapping[str, Any]) -> str:
    """Where a model stands against a floor: beats (the interval lies above 0 in every seed), not
    clearly above (a positive difference without that), or below."""
    if ci["wins"] == ci["seeds"]:
        return "beats"
    return "not clearly above" if ci["diff"] > 0 else "below"


def vs_best_floor(results: Mapping[str, Any], model: Mapping[str, Any]) -> dict[str, Any] | None:
    """:func:`interval_vs_floor` for the best floor (None without floors or intervals)."""
    floors = results.get("floors", {})
    per_seed = model.get("vs_floors") or []
    if not floors or not per_seed:
        return None
    best = max(floors, key=lambda k: floors[k]["auc"])
    return interval_vs_floor(per_seed, best) if best in per_seed[0] else None


def _console_verdict(results: Mapping[str, Any], model: Mapping[str, Any]) -> str:
    """The verdict against the best floor, short enough for a terminal column."""
    ci = vs_best_floor(results, model)
    if ci is None:
        return model.get("verdict", "-")
    seeds = f" (above 0 in {ci['wins']}/{ci['seeds']} seeds)" if ci["seeds"] > 1 else ""
    # A model that did not fit says so before its standing, as in the stored verdict.
    flag = "UNDER-TRAINED: " if model.get("undertrained") else ""
    return f"{flag}{standing(ci)} {ci['diff']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}]{seeds}"


def render_console(results: Mapping[str, Any]) -> str:
    """The comparison (with floors) and gate tables, for a terminal of :data:`CONSOLE_WIDTH` columns."""
    names = list(results.get("models", {}))
    floors = results.get("floors", {})
    best_floor = max(floors, key=lambda k: floors[k]["auc"]) if floors else "-"
    lines = ["", "Overall comparison on validation (with untrained floors)"]
    headers = COMPARISON_HEADERS[:-1]  # the verdicts follow the table: they would make it too wide
    rows = [[cell.strip("`") for cell in row[:-1]] for row in comparison_rows(results, names)]
    for name, f in floors.items():
        label = name + ("" if f.get("sign", 1) > 0 else " (inverted)")
        rows.append([label, _fmt(f["auc"]), _fmt(f["gauc"]), *["-"] * 4, "0"])
    widths = [max(len(h), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines += [f"  {name}: untrained, {floor['description']}" for name, floor in floors.items()]
    if floors and names:
        lines.append(f"vs the best floor ({best_floor}): ΔAUC [95% user-clustered bootstrap CI, first seed]")
        lines += [f"  {name}: {_console_verdict(results, results['models'][name])}" for name in names]
    for name in names:
        for run in results["models"][name].get("runs", [])[:1]:
            gate = run.get("gate")
            if not gate:
                continue
            s = gate["stats"]
            lines += [
                "",
                f"Gate g of {name} on validation (seed {run['seed']}): weight of the sequential branch",
            ]
            lines.append(
                "  ".join(f"{k} {_fmt(s[k])}" for k in ("mean", "std", "median", "min", "max", "q25", "q75"))
            )
            lines.append(
                "  by history length: "
                + "  ".join(
                    f"{b['history_length']}: {_fmt(b['mean'])} (n={b['count']})"
                    for b in gate["by_history_length"]
                )
            )
    for t in results.get("significance", []):
        boot = t["bootstrap"]
        lines.append(
            f"{t['a']} - {t['b']} (seed {t['seed']}): ΔAUC {boot['diff']:+.4f}, 95% CI [{boot['low']:+.4f},"
            f" {boot['high']:+.4f}] resampling {boot['clusters']} users, p {_pvalue(boot['p_a_not_better'])}"
        )
    return "\n".join(lines)


def write_plots(results: Mapping[str, Any], out_dir: str | Path) -> list[str]:
    """PNG plots: validation AUC per epoch per model (floors dashed) and the gate distributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    out_dir = Path(out_dir)
    written = []
    models = results.get("models", {})
    if any(m.get("runs") for m in models.values()):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for k, (name, model) in enumerate(models.items()):
            for j, run in enumerate(model.get("runs", [])):
                epochs = [r["epoch"] for r in run["history"]]
                ax.plot(
                    epochs,
                    [r["val_auc"] for r in run["history"]],
                    marker="o",
                    ms=3,
                    color=colors[k % len(colors)],
                    alpha=1.0 if j == 0 else 0.4,
                    label=name if j == 0 else None,
                )
        for name, floor in results.get("floors", {}).items():
            ax.axhline(floor["auc"], ls="--", lw=1, color="gray")
            ax.annotate(name, (ax.get_xlim()[0], floor["auc"]), fontsize=7, color="gray", va="bottom")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("held-out AUC (last training day)")
        ax.set_title("Held-out AUC per epoch (dashed: floors on validation)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / VAL_AUC_PLOT, dpi=110)
        plt.close(fig)
        written.append(VAL_AUC_PLOT)

    gated = [(n, r) for n, m in models.items() for r in m.get("runs", [])[:1] if r.get("gate")]
    if gated:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for name, run in gated:
            hist = run["gate"]["histogram"]
            edges = hist["edges"]
            centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
            total = max(sum(hist["counts"]), 1)
            axes[0].plot(centers, [c / total for c in hist["counts"]], drawstyle="steps-mid", label=name)
            buckets = run["gate"]["by_history_length"]
            axes[1].plot(
                [b["history_length"] for b in buckets], [b["mean"] for b in buckets], marker="o", label=name
            )
        axes[0].set_xlabel("gate g (weight of the sequential branch)")
        axes[0].set_ylabel("share of validation samples")
        axes[0].set_title("Gate distribution (Table 4)")
        axes[1].set_xlabel("history length")
        axes[1].set_ylabel("mean g")
        axes[1].set_title("Mean gate by history length (Table 5)")
        for ax in axes:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / GATE_PLOT, dpi=110)
        plt.close(fig)
        written.append(GATE_PLOT)
    return written


def write_report(results: dict[str, Any], out_dir: str | Path) -> Path:
    """Write plots, ``results.json`` and ``summary.md`` into ``out_dir``; return the summary's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results["plots"] = write_plots(results, out_dir)
    tmp = out_dir / (RESULTS_FILE + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=_json_default))
    tmp.replace(out_dir / RESULTS_FILE)
    summary = out_dir / SUMMARY_FILE
    summary.write_text(render_summary(results))
    return summary


def load_results(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {RESULTS_FILE} found at {run_dir}")
    try:
        results = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a results file written by mdaf train: {error}") from error
    if not isinstance(results, dict) or "models" not in results:
        raise ValueError(f"{path} is not a results file written by mdaf train (no 'models' entry)")
    return results


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
