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
    paired_batch_ttest,
)
from mdaf.train.checkpoint import seed_everything
from mdaf.train.config import TrainConfig
from mdaf.train.distributed import init_distributed, resolve_device
from mdaf.train.floors import FLOOR_DESCRIPTIONS, floor_scores
from mdaf.train.metrics import auc, gauc
from mdaf.train.report import RESULTS_FILE, render_console, write_report
from mdaf.train.threads import set_num_threads
from mdaf.train.trainer import LAST_CHECKPOINT, Evaluation, Trainer

GATE_BINS = 50


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
            if isinstance(value, (int, float, str, bool)):
                row[key] = value
            elif key == "history_length" and isinstance(value, Mapping):
                row["history mean"] = value.get("mean")
                row["history p50"] = value.get("p50")
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


def verdict_against_floors(
    model_scores: np.ndarray,
    labels: np.ndarray,
    floors: Mapping[str, np.ndarray],
    floor_aucs: Mapping[str, float],
    n_boot: int,
    seed: int,
) -> tuple[str, dict]:
    """Compare a model with the best floor by a paired bootstrap of the AUC difference."""
    best = max(floor_aucs, key=lambda k: floor_aucs[k])
    ci = bootstrap_auc_difference(labels, model_scores, floors[best], n_boot=n_boot, seed=seed)
    span = f"{ci['diff']:+.4f} [{ci['low']:+.4f}, {ci['high']:+.4f}] vs {best}"
    if ci["low"] > 0:
        return f"beats floors: {span}", ci
    if ci["diff"] > 0:
        return f"NOT clearly above floors: {span}", ci
    return f"does NOT beat floors: {span}", ci


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
    n_boot: int = 1000,
    name: str | None = None,
    note: str | None = None,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``models`` x ``seeds`` on ``prepared`` (a ``mdaf.data.PreparedData``) and report.

    The first model is the reference of the significance tests (MDAF by default). Returns the
    results dict that is also written to ``out_dir/results.json``. With ``resume``, each run
    continues from its ``last.pt`` in ``out_dir`` when there is one (a finished run is only
    re-evaluated), so an interrupted experiment restarts where it stopped.
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
    labels = np.asarray(valid["label"], dtype=np.float64)
    users = np.asarray(valid["user"])
    pipeline_config = _to_jsonable(prepared.config)
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
            "n_boot": n_boot,
        },
        "data": {
            "path": data_path,
            "meta": dataclasses.asdict(meta),
            "n_train": int(len(train["label"])),
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
    say(f"train config: {train_config.to_dict()}")
    say(f"CPU threads: {threads} ({threads_source})")

    floors = floor_scores(train, valid)
    for floor_name, scores in floors.items():
        results["floors"][floor_name] = {
            "description": FLOOR_DESCRIPTIONS[floor_name],
            "auc": auc(labels, scores),
            "gauc": gauc(users, labels, scores),
        }
    floor_aucs = {k: v["auc"] for k, v in results["floors"].items()}
    say("untrained floors (validation AUC): " + ", ".join(f"{k} {v:.4f}" for k, v in floor_aucs.items()))

    predictions: dict[tuple[str, int], np.ndarray] = {}
    for model_name in models:
        overrides = model_overrides.get(model_name, {})
        entry: dict[str, Any] = {"runs": []}
        results["models"][model_name] = entry
        for seed in seeds:
            seed_everything(seed)
            model = build_model(model_name, meta, **overrides)
            entry["model_config"] = dataclasses.asdict(model.config)
            entry["parameters"] = parameter_breakdown(model)
            config = train_config.replace(seed=seed)
            run_dir = out_dir / model_name / f"seed{seed}"
            info = {
                "model_name": model_name,
                "model_config": dataclasses.asdict(model.config),
                "meta": dataclasses.asdict(meta),
                "pipeline_config": pipeline_config,
                "data_path": data_path,
                "id_maps": id_maps,  # so that mdaf.load scores raw Taobao ids
            }
            say(
                f"\n== {model_name} (seed {seed}): {entry['parameters']['total']:,} parameters "
                f"{entry['parameters']}"
            )
            trainer = Trainer(
                model, config, out_dir=run_dir, checkpoint_info=info, log=emit, desc=f"{model_name} s{seed}"
            )
            last = run_dir / LAST_CHECKPOINT
            fit = trainer.fit(train, valid, resume=last if resume and last.is_file() else None)
            evaluation = fit.evaluation
            predictions[(model_name, seed)] = evaluation.probs
            entry["runs"].append(
                {
                    "seed": seed,
                    "metrics": evaluation.metrics,
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
            say(
                f"{model_name} seed {seed}: val AUC {evaluation.metrics['auc']:.4f}, gAUC "
                f"{evaluation.metrics['gauc']:.4f}, logloss {evaluation.metrics['logloss']:.4f} "
                f"(best epoch {fit.best_epoch}, {fit.train_seconds:.0f} s)"
            )
        entry["summary"] = aggregate_seeds([r["metrics"] for r in entry["runs"]])
        first_seed = seeds[0]
        entry["verdict"], entry["vs_best_floor"] = verdict_against_floors(
            predictions[(model_name, first_seed)], labels, floors, floor_aucs, n_boot, first_seed
        )
        if dist.is_main:
            results["wall_seconds"] = time.perf_counter() - start
            write_report(results, out_dir)

    reference = models[0]
    for other in models[1:]:
        for seed in seeds:
            results["significance"].append(
                {
                    "seed": seed,
                    "a": reference,
                    "b": other,
                    "ttest": paired_batch_ttest(
                        labels, predictions[(reference, seed)], predictions[(other, seed)], seed=seed
                    ),
                    "bootstrap": bootstrap_auc_difference(
                        labels,
                        predictions[(reference, seed)],
                        predictions[(other, seed)],
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
