"""The ``mdaf`` command: ``prepare``, ``train``, ``evaluate``, ``predict`` and ``report``.

``examples/train_taobao.py`` is ``mdaf train``; both run :func:`mdaf.train.experiment.run_experiment`.
Pipeline options are generated from ``mdaf.data.PipelineConfig`` and training options from
``mdaf.train.TrainConfig``, so the command line always offers every parameter. Only the chosen
command's options are built (they import torch and pandas), so ``mdaf --help`` answers at once.
Every mistake a user can make on the command line ends in one error line under the command's usage,
exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mdaf.train.threads import bound_openmp_spinning

DEFAULT_CACHE_DIR = os.environ.get("MDAF_CACHE_DIR", ".cache/mdaf")
DEFAULT_MODELS = ("mdaf", "bst")
# CPU defaults: the default run (generated data, MDAF and BST) in a few minutes on 2 cores
CPU_DEFAULT_EPOCHS = 2
CPU_DEFAULT_TRAIN_SAMPLES = 16_000
CPU_TRAIN_DEFAULTS = {"batch_size": 512, "lr": 1e-3, "train_eval_samples": 4_000}

# pipeline fields whose flag would be confused with a training flag
PIPELINE_RENAMES = {"seed": "data-seed"}
PIPELINE_HELP = {
    "max_len": "history length L kept per sample (most recent clicks)",
    "negative_scheme": "negatives: uniform (the paper), popularity or history-category (hard negatives)",
    "positive_rate": "share of positives after negative sampling (0.4: 1.5 negatives per click)",
    "category_filter": "keep a sample only if its target's category is in its history",
    "user_fraction": "keep this fraction of users (seeded)",
    "max_samples_per_user": "cap of clicks kept per user in each split (none: no cap)",
    "max_train_samples": "drop whole users until the training split fits this size (none: no cap)",
    "validation_days": "last calendar days used as validation",
    "window": "time window START,END in Unix seconds (none: keep every timestamp)",
    "utc_offset_hours": "time zone of the calendar days (the data is UTC+8)",
    "negative_max_tries": "redraws before a negative that collides with a click is dropped",
    "vocabulary": "train (ids fitted on the training days, rare and unseen ids share a trained"
    " out-of-vocabulary id) or all-days (transductive, for comparison only)",
    "oov_min_count": "ids seen fewer times than this in the vocabulary's days map to the out-of-vocabulary"
    " id",
    "seed": "seed of the pipeline's sampling",
}
TRAIN_FLAGS_HANDLED_APART = ("epochs", "seed", "device", "progress")
# shown in --help beside the paper's defaults
CPU_DEFAULTS_HELP = {k: f"{v:g}" if isinstance(v, float) else str(v) for k, v in CPU_TRAIN_DEFAULTS.items()}
PIPELINE_CPU_DEFAULTS_HELP = {"max_train_samples": f"{CPU_DEFAULT_TRAIN_SAMPLES} for the generated data"}


HELP_FORMAT = argparse.HelpFormatter


class CliError(Exception):
    """A bad argument: reported as one line, exit status 2."""


# --------------------------------------------------------------------------- dataclass <-> argparse
def _parse_optional(kind):
    def parse(text: str):
        if text.strip().lower() in ("none", "null", ""):
            return None
        return kind(text)

    parse.__name__ = f"{kind.__name__} or none"
    return parse


def _parse_int_pair(text: str):
    if text.strip().lower() in ("none", "null", ""):
        return None
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected START,END or none, got {text!r}")
    return int(parts[0]), int(parts[1])


def _argument_type(annotation: Any):
    """argparse ``type`` for a dataclass field annotation; None for booleans (a flag pair)."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = origin in (typing.Union, types.UnionType) and len(args) < len(typing.get_args(annotation))
    base = args[0] if optional else annotation
    if base is bool:
        return None
    if typing.get_origin(base) is tuple:
        return _parse_int_pair
    if base in (int, float, str):
        return _parse_optional(base) if optional else base
    raise TypeError(f"no command-line type for {annotation!r}")


def add_dataclass_options(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    dest_prefix: str,
    skip: Sequence[str] = (),
    renames: dict[str, str] | None = None,
    helps: dict[str, str] | None = None,
    choices: dict[str, Sequence[str]] | None = None,
    cpu_defaults: dict[str, str] | None = None,
) -> None:
    """One ``--flag`` per field of ``cls``; values go to ``args.<dest_prefix><field>`` (None if not given).

    The help ends with the field's default (and ``cpu_defaults[field]``, the default on a CPU)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + (renames or {}).get(f.name, f.name.replace("_", "-"))
        default = f.default if f.default is not dataclasses.MISSING else None
        text = (helps or {}).get(f.name) or f.metadata.get("help") or f.name.replace("_", " ")
        kind = _argument_type(hints[f.name])
        text, _, stated = text.partition(" (default: ")  # a help text may state its default itself
        shown = stated.rstrip(")") or _shown_default(default)
        cpu = (cpu_defaults or {}).get(f.name)
        kwargs: dict[str, Any] = {
            "dest": dest_prefix + f.name,
            "default": None,
            "help": f"{text} (default: {shown}{f'; on CPU {cpu}' if cpu else ''})",
        }
        if kind is None:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            allowed = (choices or {}).get(f.name)
            metavar = None if allowed else f.name.upper()
            parser.add_argument(flag, type=kind, metavar=metavar, choices=allowed, **kwargs)


def _shown_default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def dataclass_from_args(
    cls: type, args: argparse.Namespace, dest_prefix: str, base: Any = None, **fixed: Any
):
    """Build ``cls`` from the given flags over ``base`` (or the defaults); a bad value is a CliError."""
    values = dataclasses.asdict(base) if base is not None else {}
    for f in dataclasses.fields(cls):
        given = getattr(args, dest_prefix + f.name, None)
        if given is not None:
            values[f.name] = given
    values.update(fixed)
    try:
        return cls(**values)
    except (ValueError, TypeError) as error:
        raise CliError(str(error)) from error


# --------------------------------------------------------------------------- the parser
DATA_HELP = "UserBehavior.csv(.gz) or a sample of it (default: the generated Taobao-like data)"
TRAIN_DESCRIPTION = (
    "Train each model with each seed, compare with untrained floors, analyse the gate and test the"
    " differences. Writes results.json, summary.md, val_auc.png, gate.png and checkpoints to --out."
)
PREDICT_DESCRIPTION = (
    "Score rows of raw Taobao ids with a trained checkpoint (its id maps turn raw ids into the model's;"
    " ids without a row of their own become the out-of-vocabulary id 1, as in training). --data is either a"
    " UserBehavior file (no header: user_id,item_id,category_id,behavior_type,timestamp), whose every"
    " row is scored with the user's earlier clicks in the same file (or --history-log) as history, or"
    " a CSV with a header holding user_id,item_id,category_id and either hist_item_ids and"
    " hist_category_ids (space-separated raw ids, oldest first) or timestamp with --history-log."
)
COMMAND_HELP = {
    "prepare": "run the data pipeline and print its statistics (Tables 1 and 6)",
    "train": "train models and report the comparison, ablation, gate and dynamics tables",
    "evaluate": "evaluate a checkpoint on the validation split, with floors and gate tables",
    "predict": "score raw Taobao ids with a checkpoint and write the click probabilities as CSV",
    "report": "rebuild summary.md and the plots of a run directory and print its tables",
}


def add_data_arguments(p: argparse.ArgumentParser, cpu_defaults: dict[str, str] | None = None) -> None:
    from mdaf.data import NEGATIVE_SCHEMES, PipelineConfig
    from mdaf.data.pipeline import VOCABULARIES

    group = p.add_argument_group("data pipeline (mdaf.data.PipelineConfig; the paper's defaults)")
    group.add_argument("--data", metavar="PATH", help=DATA_HELP)
    add_cache_argument(group, "cache of prepared datasets and of the generated default data")
    add_dataclass_options(
        group,
        PipelineConfig,
        dest_prefix="pipeline_",
        renames=PIPELINE_RENAMES,
        helps=PIPELINE_HELP,
        choices={"negative_scheme": NEGATIVE_SCHEMES, "vocabulary": tuple(VOCABULARIES)},
        cpu_defaults=cpu_defaults,
    )


def add_cache_argument(p, text: str) -> None:
    p.add_argument(
        "--cache-dir", default=DEFAULT_CACHE_DIR, metavar="DIR", help=f"{text} (default: {DEFAULT_CACHE_DIR})"
    )


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    from mdaf.models import list_models
    from mdaf.train.config import AMP_MODES, SCHEDULES, TrainConfig

    add_data_arguments(p, PIPELINE_CPU_DEFAULTS_HELP)
    run = p.add_argument_group("experiment")
    run.add_argument(
        "--models",
        nargs="+",
        default=list(DEFAULT_MODELS),
        metavar="NAME",
        help=f"models to train, the first is the reference of the tests; 'all' for every model: "
        f"{', '.join(list_models())} (default: {' '.join(DEFAULT_MODELS)})",
    )
    run.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"maximum epochs (default: 20, the paper's; on CPU {CPU_DEFAULT_EPOCHS})",
    )
    run.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        metavar="SEED",
        help="training seeds; several give mean and standard deviation per model (default: 0)",
    )
    add_device_argument(run)
    run.add_argument("--out", metavar="DIR", help="output directory (default: runs/<name>)")
    run.add_argument("--name", help="run name (default: the start time)")
    run.add_argument(
        "--set",
        dest="model_options",
        action="append",
        default=[],
        metavar="[MODEL.]FIELD=VALUE",
        help="model setting, e.g. embed_dim=32 (every model having the field) or bst.num_blocks=2; "
        "repeatable; VALUE is JSON or a string",
    )
    run.add_argument(
        "--lr-candidates",
        type=float,
        nargs="+",
        metavar="LR",
        help="learning rates to choose from per model on the held-out training days (default: --lr alone)",
    )
    run.add_argument(
        "--holdout-days",
        type=int,
        default=1,
        help="last training days held out to choose the learning rate and the epoch; validation chooses"
        " nothing (default: 1)",
    )
    run.add_argument(
        "--n-boot",
        type=int,
        default=1000,
        help="bootstrap resamples for the AUC confidence intervals (default: 1000)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out: each model and seed resumes from its last.pt",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    train = p.add_argument_group("training (mdaf.train.TrainConfig; the paper's defaults)")
    add_dataclass_options(
        train,
        TrainConfig,
        dest_prefix="train_",
        skip=TRAIN_FLAGS_HANDLED_APART,
        choices={"amp": AMP_MODES, "schedule": SCHEDULES},
        cpu_defaults=CPU_DEFAULTS_HELP,
    )


def add_device_argument(p) -> None:
    p.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)"
    )


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="best.pt or last.pt written by mdaf train")
    p.add_argument(
        "--data", metavar="PATH", help="data file (default: the one the checkpoint was trained on)"
    )
    add_cache_argument(p, "cache of prepared datasets")
    add_device_argument(p)
    p.add_argument("--eval-batch-size", type=int, default=4096, help="evaluation batch size (default: 4096)")
    p.add_argument("--out", metavar="PATH", help="also write the evaluation as JSON here")


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint", required=True, metavar="PATH", help="best.pt or last.pt written by mdaf train"
    )
    p.add_argument("--data", required=True, metavar="PATH", help="rows to score (see above)")
    p.add_argument(
        "--out", required=True, metavar="PATH", help="CSV written: the rows' ids and a score column"
    )
    p.add_argument(
        "--history-log",
        metavar="PATH",
        help="UserBehavior file whose clicks before each row's timestamp form its history"
        " (default: --data itself when it is a UserBehavior file)",
    )
    add_device_argument(p)
    p.add_argument("--batch-size", type=int, default=4096, help="rows scored per batch (default: 4096)")


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    p.add_argument("--stats-out", metavar="PATH", help="also write the statistics as JSON here")


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a directory written by mdaf train (holding results.json)")


ADD_ARGUMENTS = {
    "prepare": add_prepare_arguments,
    "train": add_train_arguments,
    "evaluate": add_evaluate_arguments,
    "predict": add_predict_arguments,
    "report": add_report_arguments,
}
DESCRIPTIONS = {"train": TRAIN_DESCRIPTION, "predict": PREDICT_DESCRIPTION}


def build_parser(prog: str = "mdaf", commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``mdaf`` parser; only ``commands`` (default: all) get their options, which import torch."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="MDAF: prepare Taobao UserBehavior data, train and evaluate CTR models, score raw"
        " ids, and report the paper's tables.",
        formatter_class=HELP_FORMAT,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMAND_HELP.items():
        p = sub.add_parser(
            name, help=help_text, description=DESCRIPTIONS.get(name, help_text), formatter_class=HELP_FORMAT
        )
        if commands is None or name in commands:
            ADD_ARGUMENTS[name](p)
    return parser


def subcommand_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of one subcommand (its usage line goes with its errors)."""
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]


# --------------------------------------------------------------------------- helpers
def _log(text: str) -> None:
    print(text, flush=True)


def resolve_data(path: str | None, cache_dir: str) -> str:
    from mdaf.data import default_dataset

    if path is None:
        generated = default_dataset(cache_dir)
        _log(f"no --data: using the generated Taobao-like dataset {generated}")
        return str(generated)
    if not Path(path).is_file():
        raise CliError(f"--data: file not found: {path}")
    return path


def parse_model_options(options: Sequence[str], models: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``[MODEL.]FIELD=VALUE`` strings into per-model overrides, checked against each model's config."""
    from mdaf.models import MODELS

    overrides: dict[str, dict[str, Any]] = {}
    for option in options:
        key, sep, raw = option.partition("=")
        if not sep or not key:
            raise CliError(f"--set expects [MODEL.]FIELD=VALUE, got {option!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if isinstance(value, list):
            value = tuple(value)
        target, _, field = key.rpartition(".")
        if target:
            if target not in models:
                raise CliError(f"--set {option}: model {target!r} is not among --models {list(models)}")
            targets = [target]
        else:
            targets = [m for m in models if field in MODELS[m].model_class.config_class.field_names()]
        for name in targets:
            if field not in MODELS[name].model_class.config_class.field_names():
                raise CliError(
                    f"--set {option}: {name} has no setting {field!r}; valid: "
                    f"{', '.join(MODELS[name].model_class.config_class.field_names())}"
                )
            overrides.setdefault(name, {})[field] = value
        if not targets:
            raise CliError(f"--set {option}: none of {list(models)} has a setting {field!r}")
    return overrides


def _prepare(args: argparse.Namespace, pipeline_config, data_path: str, dist=None):
    from mdaf.data import prepare
    from mdaf.train.distributed import barrier

    # under torchrun rank 0 builds the cache first; the others then load it
    if dist is not None and dist.enabled and not dist.is_main:
        barrier(dist)
        return prepare(data_path, pipeline_config, cache_dir=args.cache_dir)
    prepared = prepare(data_path, pipeline_config, cache_dir=args.cache_dir, log=_log)
    if dist is not None and dist.enabled:
        barrier(dist)
    return prepared


# --------------------------------------------------------------------------- commands
def cmd_prepare(args: argparse.Namespace) -> int:
    from mdaf.data import PipelineConfig

    config = dataclass_from_args(PipelineConfig, args, "pipeline_")
    data_path = resolve_data(args.data, args.cache_dir)
    _log(f"pipeline config: {config.to_dict()}")
    prepared = _prepare(args, config, data_path)
    _log(f"meta: {prepared.meta}")
    if args.stats_out:
        prepared.save_stats(args.stats_out)
        _log(f"statistics written to {args.stats_out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:

    from mdaf.data import PipelineConfig
    from mdaf.models import list_models
    from mdaf.train.config import TrainConfig
    from mdaf.train.distributed import init_distributed, resolve_device
    from mdaf.train.experiment import run_experiment

    models = list_models() if args.models == ["all"] else list(args.models)
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        raise CliError(f"--models: unknown {unknown}; choose from {', '.join(list_models())} or 'all'")
    if len(set(models)) != len(models):
        raise CliError(f"--models: duplicate names in {models}")
    if len(set(args.seeds)) != len(args.seeds) or any(s < 0 for s in args.seeds):
        raise CliError(f"--seeds: give distinct non-negative seeds, got {args.seeds}")
    if args.holdout_days < 1:
        raise CliError(f"--holdout-days must be >= 1, got {args.holdout_days}")
    if args.lr_candidates and (
        any(lr <= 0 for lr in args.lr_candidates) or len(set(args.lr_candidates)) < len(args.lr_candidates)
    ):
        raise CliError(f"--lr-candidates: give distinct positive learning rates, got {args.lr_candidates}")
    if args.n_boot < 1:
        raise CliError(f"--n-boot must be >= 1, got {args.n_boot}")
    if args.resume and not args.out:
        raise CliError("--resume needs --out, the directory of the run to continue")
    try:
        device = resolve_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError as error:
        raise CliError(f"--device: {error}") from error
    notes = []
    fixed: dict[str, Any] = {"device": args.device, "progress": not args.no_progress}
    if args.epochs is not None:
        fixed["epochs"] = args.epochs
    pipeline_fixed: dict[str, Any] = {}
    if device.type == "cpu":
        # The paper's schedule (20 epochs of batch 2048) takes hours on CPU: the selective scan's CPU
        # path costs about 14 CPU-seconds per 1,000 training samples. Flags given explicitly win.
        cpu = {k: v for k, v in CPU_TRAIN_DEFAULTS.items() if getattr(args, f"train_{k}") is None}
        if args.epochs is None:
            cpu["epochs"] = CPU_DEFAULT_EPOCHS
        if args.data is None and args.pipeline_max_train_samples is None:
            pipeline_fixed["max_train_samples"] = CPU_DEFAULT_TRAIN_SAMPLES
            notes.append(
                f"CPU defaults for the generated data: max_train_samples={CPU_DEFAULT_TRAIN_SAMPLES}"
            )
        if cpu:
            fixed.update(cpu)
            notes.append(
                "CPU defaults: "
                + ", ".join(f"{k}={v}" for k, v in cpu.items())
                + " (the paper: 20 epochs, batch 2048, lr 5e-4; pass the flags to change)"
            )
    train_config = dataclass_from_args(TrainConfig, args, "train_", **fixed)
    pipeline_config = dataclass_from_args(PipelineConfig, args, "pipeline_", **pipeline_fixed)
    overrides = parse_model_options(args.model_options, models)

    dist = init_distributed(device)
    name = args.name or time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out or Path("runs") / name)
    for note in notes:
        if dist.is_main:
            _log(note)
    data_path = resolve_data(args.data, args.cache_dir) if dist.is_main else None
    if dist.enabled:
        import torch.distributed as torch_dist

        shared = [data_path]
        torch_dist.broadcast_object_list(shared, src=0)
        data_path = shared[0]
    if dist.is_main:
        _log(f"pipeline config: {pipeline_config.to_dict()}")
    prepared = _prepare(args, pipeline_config, data_path, dist)
    run_experiment(
        prepared,
        models,
        train_config=train_config,
        seeds=args.seeds,
        out_dir=out_dir,
        data_path=data_path,
        model_overrides=overrides,
        lr_candidates=args.lr_candidates,
        holdout_days=args.holdout_days,
        n_boot=args.n_boot,
        name=name,
        note="; ".join(notes) or None,
        resume=args.resume,
        log=_log,
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from mdaf.data import PipelineConfig
    from mdaf.train.config import TrainConfig
    from mdaf.train.experiment import gate_report
    from mdaf.train.floors import floor_scores, oriented_floor
    from mdaf.train.metrics import gauc
    from mdaf.train.trainer import Trainer

    model, info = load_checkpoint_argument(args.checkpoint, "checkpoint")
    data_path = args.data or info.data_path
    if not data_path:
        raise CliError("--data: the checkpoint does not say which file it was trained on; pass --data")
    if not Path(data_path).is_file():
        raise CliError(f"--data: file not found: {data_path}")
    pipeline_values = dict(info.pipeline_config or {})
    if pipeline_values.get("window") is not None:
        pipeline_values["window"] = tuple(pipeline_values["window"])
    pipeline_config = PipelineConfig(**pipeline_values)
    prepared = _prepare(args, pipeline_config, data_path)
    if dataclasses.asdict(prepared.meta) != dataclasses.asdict(info.meta):
        raise CliError(
            f"the data gives vocabularies {prepared.meta}, the checkpoint was trained on {info.meta}"
        )
    config = TrainConfig(device=args.device, eval_batch_size=args.eval_batch_size, progress=False)
    evaluation = Trainer(model, config, log=_log).evaluate(prepared.valid)
    labels, users = evaluation.labels, evaluation.users
    result: dict[str, Any] = {
        "checkpoint": args.checkpoint,
        "model": info.model_name,
        "data": data_path,
        "metrics": evaluation.metrics,
        "floors": {},
        "gate": gate_report(evaluation),
    }
    for name, scores in floor_scores(prepared.train, prepared.valid).items():
        oriented = oriented_floor(labels, scores)
        result["floors"][name] = {**oriented, "gauc": gauc(users, labels, oriented["sign"] * scores)}
    _log(
        f"{info.model_name} on {data_path} ({len(labels):,} validation samples, positive rate "
        f"{np.mean(labels):.3f}): AUC {evaluation.metrics['auc']:.4f},"
        f" gAUC {evaluation.metrics['gauc']:.4f}, logloss {evaluation.metrics['logloss']:.4f}"
    )
    for name, floor in result["floors"].items():
        _log(f"  {name}: AUC {floor['auc']:.4f} ({floor['direction']}), gAUC {floor['gauc']:.4f}")
    if result["gate"]:
        s = result["gate"]["stats"]
        _log(
            "gate g: "
            + "  ".join(f"{k} {s[k]:.4f}" for k in ("mean", "std", "median", "min", "max", "q25", "q75"))
        )
        for bucket in result["gate"]["by_history_length"]:
            _log(f"  history {bucket['history_length']}: mean g {bucket['mean']:.4f} (n={bucket['count']})")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))
        _log(f"evaluation written to {args.out}")
    return 0


def load_checkpoint_argument(path: str, argument: str):
    """``mdaf.load`` of a checkpoint given on the command line; any unreadable file is a CliError."""
    from mdaf.api import load

    if Path(path).is_dir():
        raise CliError(
            f"{argument}: {path} is a directory; expected best.pt or last.pt written by mdaf train"
        )
    if not Path(path).is_file():
        raise CliError(f"{argument}: checkpoint not found: {path}")
    try:
        return load(path)
    except (ValueError, TypeError, KeyError, RuntimeError) as error:
        raise CliError(f"{argument}: {error}") from error


def read_rows_to_score(path: str, history_log: str | None):
    """The rows of ``mdaf predict --data``, and the behaviour log their histories come from."""
    import pandas as pd

    from mdaf.api import RAW_ID_COLUMNS
    from mdaf.data import read_behaviors

    if not Path(path).is_file():
        raise CliError(f"--data: file not found: {path}")
    if history_log is not None and not Path(history_log).is_file():
        raise CliError(f"--history-log: file not found: {history_log}")
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head != b"\x1f\x8b":  # a gzip is a UserBehavior file; a plain file may be a CSV with a header
        with open(path, errors="replace") as handle:
            first_line = handle.readline()
        if "user_id" in first_line:
            try:
                rows = pd.read_csv(path)
            except (ValueError, pd.errors.ParserError) as error:
                raise CliError(f"--data: {path} is not a readable CSV: {error}") from error
            return rows, history_log
    try:
        rows, report = read_behaviors(path, window=None)
    except ValueError as error:
        raise CliError(f"--data: {error}") from error
    if rows.empty:
        raise CliError(
            f"--data: {path} has no UserBehavior row ({report.bad_lines} bad lines); expected a CSV with the"
            f" columns {', '.join(RAW_ID_COLUMNS)} or a UserBehavior file"
        )
    return rows, history_log or path


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from mdaf.api import predict

    if args.batch_size < 1:
        raise CliError(f"--batch-size must be >= 1, got {args.batch_size}")
    loaded = load_checkpoint_argument(args.checkpoint, "--checkpoint")
    rows, history_log = read_rows_to_score(args.data, args.history_log)
    if loaded.info.id_maps is None:
        raise CliError(
            f"--checkpoint: {args.checkpoint} holds no id maps (written before checkpoint format 2)"
        )
    try:
        arrays = loaded.encode(rows, history_log=history_log)
    except (ValueError, TypeError) as error:
        raise CliError(f"--data: {error}") from error
    device = _device_argument(args.device)
    scores = predict(loaded.model, arrays, device=device, batch_size=args.batch_size)
    kept = [c for c in rows.columns if c not in ("hist_item_ids", "hist_category_ids")]
    out = pd.DataFrame({c: rows[c].to_numpy() for c in kept})
    out["score"] = scores
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.out, index=False, float_format="%.6f")
    unknown_users = float(np.mean(arrays["user"] == 0)) if len(out) else 0.0
    _log(
        f"{loaded.info.model_name}: scored {len(out):,} rows of {args.data} ({unknown_users:.1%} with a user"
        f" unseen in training); mean history length {np.mean(arrays['hist_len']) if len(out) else 0:.1f}"
    )
    _log(f"scores written to {args.out}")
    return 0


def _device_argument(text: str):
    from mdaf.train.distributed import resolve_device

    try:
        return resolve_device(text, 0)
    except ValueError as error:
        raise CliError(f"--device: {error}") from error


def cmd_report(args: argparse.Namespace) -> int:
    from mdaf.train.report import load_results, render_console, write_report

    try:
        results = load_results(args.run_dir)
    except (FileNotFoundError, ValueError) as error:
        raise CliError(f"run_dir: {error}") from error
    summary = write_report(results, args.run_dir)
    _log(render_console(results))
    _log(f"\nsummary: {summary}")
    return 0


COMMANDS = {
    "prepare": cmd_prepare,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "report": cmd_report,
}


def main(argv: Sequence[str] | None = None, prog: str = "mdaf") -> int:
    """``mdaf COMMAND ...``; returns the exit status (2 for anything the user gave wrong)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    bound_openmp_spinning()  # before torch is imported
    # build only the chosen command's options: the others would import torch for nothing
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(prog, commands=[chosen] if chosen in COMMAND_HELP else [])
    args = parser.parse_args(argv)
    return _run(subcommand_parser(parser, args.command), args)


def main_train(argv: Sequence[str] | None = None, prog: str = "train_taobao.py") -> int:
    """``mdaf train`` as a standalone command (the example script)."""
    bound_openmp_spinning()  # before torch is imported
    parser = argparse.ArgumentParser(prog=prog, description=TRAIN_DESCRIPTION, formatter_class=HELP_FORMAT)
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    args.command = "train"
    return _run(parser, args)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run a command; a bad argument, file or value ends in the command's usage, one error line, status 2."""
    try:
        return COMMANDS[args.command](args)
    except (CliError, FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
