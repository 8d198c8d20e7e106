"""One experiment: several models x seeds on one prepared dataset, with floors, gate tables and tests.

This is the code behind ``examples/train_taobao.py`` and ``mdaf train``: it trains each model
with each seed, scores the untrained floors, analyses the gate, tests the differences, and writes
``results.json``, ``summary.md`` and the plots after every model so an interrupted run still
leaves a usable report.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mdaf.train.analysis import (
    aggregate_seeds,
    bootstrap_auc_difference,
    gate_by_history_length,
    gate_statistics,
)
from mdaf.train.checkpoint import seed_everything
from mdaf.train.config import TrainConfig
from mdaf.train.distributed import init_distributed, resolve_device
from mdaf.train.floors import FLOOR_DESCRIPTIONS, floor_scores, oriented_floor
from mdaf.train.metrics import gauc
from mdaf.train.report import RESULTS_FILE, interval_vs_floor, render_console, standing, write_report
from mdaf.train.threads import set_num_threads
from mdaf.train.trainer import LAST_CHECKPOINT, Evaluation, Trainer

GATE_BINS = 50
SECONDS_PER_DAY = 86_400
UNDERTRAINED_SHARE = 0.5
"""A model is flagged as under-trained when its training AUC rose above 0.5 by less than this share of
the median model's rise: its comparison would measure a failure to fit, not what its architecture adds
(a model that fits less than another one but is not stuck near chance is not flagged)."""
SELECTION_RULE = (
    "Settings are chosen on the training days only: the last {holdout_days} training day(s) are held out;"
    " each model trains on the earlier days with each learning rate in {lrs} (seed {seed}), early stopping"
    " and the kept checkpoint follow the held-out AUC, and the learning rate with the best held-out AUC is"
    " used for every seed. Validation is scored once, after training, and never chooses anything."
)


def machine_description() -> dict[str, Any]:
    """What the numbers were measured on: CPU model and cores, torch threads, GPU name."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine = f"{cpu}, {cores} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if gpu:
        machine += f", GPU {gpu}"
    return {
        "machine": machine,
        "cpu": cpu,
        "cores": cores,
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }


def stats_table(stats: Any) -> list[dict[str, Any]] | None:
    """The pipeline's per-step statistics as table rows (Table 6): one row per step, scalar columns,
    plus the mean and median history length when a step reports its distribution."""
    if not isinstance(stats, Mapping) or not stats:
        return None
    rows = []
    for step, values in stats.items():
        if not isinstance(values, Mapping):
            continue
        row: dict[str, Any] = {"step": step}
        for key, value in values.items():
            if isinstance(value, (int, float, bool)):
                row[key] = value
            elif key == "history_length" and isinstance(value, Mapping):
                row["history mean"] = value.get("mean")
                row["history p50"] = value.get("p50")
        if len(row) > 1 and step != "vocabulary":  # the vocabulary is described under the table
            rows.append(row)
    if not rows:
        return None
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return [{k: row.get(k) for k in columns} for row in rows]


def gate_report(evaluation: Evaluation) -> dict[str, Any] | None:
    if evaluation.gate is None:
        return None
    counts, edges = np.histogram(np.clip(evaluation.gate, 0.0, 1.0), bins=GATE_BINS, range=(0.0, 1.0))
    return {
        "stats": gate_statistics(evaluation.gate),
        "by_history_length": gate_by_history_length(evaluation.gate, evaluation.hist_len),
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
    }


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def holdout_split(train: Mapping[str, np.ndarray], utc_offset_hours: int, holdout_days: int):
    """The training split as (earlier days, last ``holdout_days`` calendar days), for choosing
    settings and the epoch without looking at validation."""
    if holdout_days < 1:
        raise ValueError(f"holdout_days must be >= 1, got {holdout_days}")
    day = (np.asarray(train["timestamp"], dtype=np.int64) + utc_offset_hours * 3600) // SECONDS_PER_DAY
    held_out = day > day.max(initial=0) - holdout_days
    if held_out.all() or not held_out.any():
        raise ValueError(
            f"the training split spans {np.unique(day).size} day(s): too few to hold out {holdout_days}"
            " day(s) for choosing settings"
        )
    fit = {k: np.asarray(v)[~held_out] for k, v in train.items()}
    holdout = {k: np.asarray(v)[held_out] for k, v in train.items()}
    return fit, holdout


def compare_with_floors(
    model_scores: np.ndarray,
    labels: np.ndarray,
    users: np.ndarray,
    floors: Mapping[str, np.ndarray],
    floor_results: Mapping[str, Mapping[str, Any]],
    n_boot: int,
    seed: int,
) -> dict[str, dict]:
    """The user-clustered bootstrap interval of AUC(model) - AUC(floor) for every floor, each floor
    taken in its better direction."""
    return {
        name: bootstrap_auc_difference(
            labels,
            model_scores,
            floor_results[name]["sign"] * scores,
            clusters=users,
            n_boot=n_boot,
            seed=seed,
        )
        for name, scores in floors.items()
    }


VERDICT_WORDS = {
    "beats": "beats floors",
    "not clearly above": "NOT clearly above floors",
    "below": "does NOT beat floors",
}


def verdict_against_floors(vs_floors: Sequence[Mapping[str, Mapping[str, float]]], best: str) -> str:
    """One line per model: the user-clustered 95% interval against the best floor in the first seed,
    and in how many seeds the interval lies above 0."""
    ci = interval_vs_floor(vs_floors, best)
    span = f"{ci['diff']:+.4f} [{ci['low']:+.4f}, {ci['high']:+.4f}] vs {best}"
    seeds = f" (interval above 0 in {ci['wins']}/{ci['seeds']} seeds)" if ci["seeds"] > 1 else ""
    return f"{VERDICT_WORDS[standing(ci)]}: {span}{seeds}"


def undertrained_models(entries: Mapping[str, Mapping[str, Any]]) -> tuple[float, dict[str, float]]:
    """The median of the models' mean training AUCs, and the models (with theirs) whose rise above 0.5
    is less than ``UNDERTRAINED_SHARE`` of the median's."""
    train_auc = {
        name: entry["summary"]["train_auc"]["mean"]
        for name, entry in entries.items()
        if "train_auc" in entry.get("summary", {}) and np.isfinite(entry["summary"]["train_auc"]["mean"])
    }
    if not train_auc:
        return float("nan"), {}
    median = float(np.median(list(train_auc.values())))
    bar = 0.5 + UNDERTRAINED_SHARE * (median - 0.5)
    return median, {name: value for name, value in train_auc.items() if value < bar}


def run_artefacts(out_dir: Path, results: Mapping[str, Any], summary: Path) -> list[Path]:
    """Every file a run wrote: results, summary, plots and each model's checkpoints."""
    plots = [out_dir / name for name in results.get("plots", [])]
    return [out_dir / RESULTS_FILE, summary, *plots, *sorted(out_dir.glob("*/seed*/*.pt"))]


def run_experiment(
    prepared: Any,
    models: Sequence[str],
    *,
    train_config: TrainConfig,
    seeds: Sequence[int] = (0,),
    out_dir: str | Path,
    data_path: str | None = None,
    model_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    lr_candidates: Sequence[float] | None = None,
    holdout_days: int = 1,
    n_boot: int = 1000,
    name: str | None = None,
    note: str | None = None,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``models`` x ``seeds`` on ``prepared`` (a ``mdaf.data.PreparedData``) and report.

    Every model follows :data:`SELECTION_RULE`: it trains on the training days before the last
    ``holdout_days``, early-stops on those held-out days, and takes the learning rate of
    ``lr_candidates`` (default: ``train_config.lr`` alone) with the best held-out AUC, chosen with
    the first seed. Validation is scored once per run. The first model is the reference of the
    significance tests (MDAF by default). Returns the results dict that is also written to
    ``out_dir/results.json``. With ``resume``, each run continues from its ``last.pt`` in ``out_dir``
    when there is one (a finished run is only re-evaluated).
    """
    from mdaf.models import build_model, list_models, parameter_breakdown

    if not models:
        raise ValueError("models: give at least one model name")
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; registered: {', '.join(list_models())}")
    if len(set(models)) != len(models):
        raise ValueError(f"models: duplicate names in {list(models)}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: give distinct seeds, got {list(seeds)}")
    lrs = list(lr_candidates) if lr_candidates else [train_config.lr]
    if any(not lr > 0 for lr in lrs) or len(set(lrs)) != len(lrs):
        raise ValueError(f"lr_candidates: give distinct positive learning rates, got {lrs}")
    model_overrides = {k: dict(v) for k, v in (model_overrides or {}).items()}
    unused = sorted(set(model_overrides) - set(models))
    if unused:
        raise ValueError(f"model overrides given for models not being trained: {unused}")

    dist = init_distributed(resolve_device(train_config.device, int(os.environ.get("LOCAL_RANK", "0"))))
    emit = log if log is not None else (lambda text: print(text, flush=True))

    def say(text: str) -> None:
        if dist.is_main:
            emit(text)

    out_dir = Path(out_dir)
    # run artefacts must resolve from any working directory: the data path is stored absolute
    data_path = str(Path(data_path).resolve()) if data_path is not None else None
    id_maps = prepared.id_maps.to_dict() if getattr(prepared, "id_maps", None) is not None else None
    start = time.perf_counter()
    threads, threads_source = set_num_threads(train_config.num_threads)  # before the environment is recorded
    train, valid, meta = prepared.train, prepared.valid, prepared.meta
    fit_part, holdout = holdout_split(train, prepared.config.utc_offset_hours, holdout_days)
    labels = np.asarray(valid["label"], dtype=np.float64)
    users = np.asarray(valid["user"])
    pipeline_config = _to_jsonable(prepared.config)
    rule = SELECTION_RULE.format(holdout_days=holdout_days, lrs=lrs, seed=seeds[0])
    results: dict[str, Any] = {
        "name": name or out_dir.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": note,
        "environment": {**machine_description(), "torch_threads_source": threads_source},
        "reference_model": models[0],
        "config": {
            "train": train_config.to_dict(),
            "pipeline": pipeline_config,
            "seeds": list(seeds),
            "models": list(models),
            "model_overrides": model_overrides,
            "selection": {"rule": rule, "lr_candidates": lrs, "holdout_days": holdout_days},
            "n_boot": n_boot,
        },
        "data": {
            "path": data_path,
            "meta": dataclasses.asdict(meta),
            "n_train": int(len(train["label"])),
            "n_fit": int(len(fit_part["label"])),
            "n_holdout": int(len(holdout["label"])),
            "n_valid": int(len(valid["label"])),
            "train_positive_rate": float(np.mean(train["label"])),
            "valid_positive_rate": float(labels.mean()),
            "stats": _to_jsonable(prepared.stats),
            "stats_table": stats_table(_to_jsonable(prepared.stats)),
        },
        "models": {},
        "floors": {},
        "significance": [],
    }
    say(f"train config: {train_config.to_dict()}\nselection: {rule}")
    say(f"CPU threads: {threads} ({threads_source})")

    floors = floor_scores(train, valid)
    for floor_name, scores in floors.items():
        oriented = oriented_floor(labels, scores)
        results["floors"][floor_name] = {
            "description": FLOOR_DESCRIPTIONS[floor_name],
            **oriented,
            "gauc": gauc(users, labels, oriented["sign"] * scores),
        }
    best_floor = max(results["floors"], key=lambda k: results["floors"][k]["auc"])
    say(
        "untrained floors (validation AUC, better direction): "
        + ", ".join(
            f"{k} {v['auc']:.4f}{'' if v['sign'] > 0 else ' (inverted)'}"
            for k, v in results["floors"].items()
        )
    )

    def train_run(model_name: str, seed: int, lr: float) -> tuple[torch.nn.Module, Trainer, Any]:
        seed_everything(seed)
        model = build_model(model_name, meta, **model_overrides.get(model_name, {}))
        config = train_config.replace(seed=seed, lr=lr)
        run_dir = out_dir / model_name / (f"seed{seed}" if len(lrs) == 1 else f"seed{seed}-lr{lr:g}")
        info = {
            "model_name": model_name,
            "model_config": dataclasses.asdict(model.config),
            "meta": dataclasses.asdict(meta),
            "pipeline_config": pipeline_config,
            "data_path": data_path,
            "id_maps": id_maps,  # so that mdaf.load scores raw Taobao ids
        }
        say(f"\n== {model_name} (seed {seed}, lr {lr:g}): {parameter_breakdown(model)}")
        trainer = Trainer(
            model, config, out_dir=run_dir, checkpoint_info=info, log=emit, desc=f"{model_name} s{seed}"
        )
        last = run_dir / LAST_CHECKPOINT
        fit = trainer.fit(fit_part, holdout, resume=last if resume and last.is_file() else None)
        return model, trainer, fit

    predictions: dict[tuple[str, int], np.ndarray] = {}
    for model_name in models:
        entry: dict[str, Any] = {"runs": [], "vs_floors": []}
        results["models"][model_name] = entry
        sweep = {lr: train_run(model_name, seeds[0], lr) for lr in lrs}
        chosen = max(lrs, key=lambda lr: sweep[lr][2].best_val_auc)
        entry["lr_selection"] = {
            "holdout_auc": {f"{lr:g}": sweep[lr][2].best_val_auc for lr in lrs},
            "chosen": chosen,
        }
        say(f"{model_name}: held-out AUC per lr {entry['lr_selection']['holdout_auc']}, chosen lr {chosen:g}")
        for seed in seeds:
            model, trainer, fit = sweep[chosen] if seed == seeds[0] else train_run(model_name, seed, chosen)
            entry["model_config"] = dataclasses.asdict(model.config)
            entry["parameters"] = parameter_breakdown(model)
            evaluation = trainer.evaluate(valid)
            predictions[(model_name, seed)] = evaluation.probs
            kept = fit.history[fit.best_epoch - 1] if fit.best_epoch >= 1 else {}
            metrics = {
                **evaluation.metrics,
                "train_auc": kept.get("train_auc", float("nan")),
                "holdout_auc": fit.best_val_auc,
            }
            entry["runs"].append(
                {
                    "seed": seed,
                    "lr": chosen,
                    "metrics": metrics,
                    "best_epoch": fit.best_epoch,
                    "epochs_run": fit.epochs_run,
                    "stopped_early": fit.stopped_early,
                    "train_seconds": fit.train_seconds,
                    "history": fit.history,
                    "gate": gate_report(evaluation),
                    # relative to the run folder (results.json's folder), so the run can move
                    "checkpoint": str(fit.best_checkpoint.relative_to(out_dir))
                    if fit.best_checkpoint
                    else None,
                }
            )
            entry["vs_floors"].append(
                compare_with_floors(evaluation.probs, labels, users, floors, results["floors"], n_boot, seed)
            )
            say(
                f"{model_name} seed {seed}: val AUC {metrics['auc']:.4f}, gAUC {metrics['gauc']:.4f},"
                f" logloss {metrics['logloss']:.4f}, train AUC {metrics['train_auc']:.4f}, held-out AUC "
                f"{metrics['holdout_auc']:.4f} (best epoch {fit.best_epoch}, {fit.train_seconds:.0f} s)"
            )
        entry["summary"] = aggregate_seeds([r["metrics"] for r in entry["runs"]])
        entry["verdict"] = verdict_against_floors(entry["vs_floors"], best_floor)
        if dist.is_main:
            results["wall_seconds"] = time.perf_counter() - start
            write_report(results, out_dir)

    median_train_auc, undertrained = undertrained_models(results["models"])
    for model_name, value in undertrained.items():
        entry = results["models"][model_name]
        entry["undertrained"] = True
        entry["verdict"] = (
            f"UNDER-TRAINED (train AUC {value:.3f}, median model {median_train_auc:.3f}): " + entry["verdict"]
        )
    reference = models[0]
    for other in models[1:]:
        for seed in seeds:
            results["significance"].append(
                {
                    "seed": seed,
                    "a": reference,
                    "b": other,
                    "bootstrap": bootstrap_auc_difference(
                        labels,
                        predictions[(reference, seed)],
                        predictions[(other, seed)],
                        clusters=users,
                        n_boot=n_boot,
                        seed=seed,
                    ),
                }
            )
    results["wall_seconds"] = time.perf_counter() - start
    if dist.is_main:
        summary = write_report(results, out_dir)
        emit(render_console(results))
        emit("\nwritten:\n" + "\n".join(f"  {path}" for path in run_artefacts(out_dir, results, summary)))
    return results
