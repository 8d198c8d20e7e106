"""The ``mdaf`` command: ``prepare``, ``train``, ``evaluate`` and ``report``.

``examples/train_taobao.py`` is ``mdaf train``; both run :func:`mdaf.train.experiment.run_experiment`.
Pipeline options are generated from ``mdaf.data.PipelineConfig`` and training options from
``mdaf.train.TrainConfig``, so the command line always offers every parameter.
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
) -> None:
    """One ``--flag`` per field of ``cls``; values go to ``args.<dest_prefix><field>`` (None if not given)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + (renames or {}).get(f.name, f.name.replace("_", "-"))
        default = f.default if f.default is not dataclasses.MISSING else None
        text = (helps or {}).get(f.name) or f.metadata.get("help") or f.name.replace("_", " ")
        kind = _argument_type(hints[f.name])
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        kwargs: dict[str, Any] = {
            "dest": dest_prefix + f.name,
            "default": None,
            "help": f"{text} (default: {shown})",
        }
        if kind is None:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            allowed = (choices or {}).get(f.name)
            metavar = None if allowed else f.name.upper()
            parser.add_argument(flag, type=kind, metavar=metavar, choices=allowed, **kwargs)


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


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    from mdaf.data import NEGATIVE_SCHEMES, PipelineConfig
    from mdaf.data.pipeline import VOCABULARIES

    group = p.add_argument_group("data pipeline (mdaf.data.PipelineConfig; the paper's defaults)")
    group.add_argument("--data", metavar="PATH", help=DATA_HELP)
    group.add_argument(
        "--cache-dir",
        default=DEFAULT_CACHE_DIR,
        metavar="DIR",
        help=f"cache of prepared datasets and of the generated default data (default: {DEFAULT_CACHE_DIR})",
    )
    add_dataclass_options(
        group,
        PipelineConfig,
        dest_prefix="pipeline_",
        renames=PIPELINE_RENAMES,
        helps=PIPELINE_HELP,
        choices={"negative_scheme": NEGATIVE_SCHEMES, "vocabulary": tuple(VOCABULARIES)},
    )


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    from mdaf.models import list_models
    from mdaf.train.config import AMP_MODES, SCHEDULES, TrainConfig

    add_data_arguments(p)
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
        help=f"maximum epochs (default: 20, the paper's, on GPU; {CPU_DEFAULT_EPOCHS} on CPU, where batch"
        f" 512, lr 1e-3 and, for the generated data, {CPU_DEFAULT_TRAIN_SAMPLES} training samples are the"
        " defaults)",
    )
    run.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        metavar="SEED",
        help="training seeds; several give mean and standard deviation per model (default: 0)",
    )
    run.add_argument(
        "--device", default="auto", help="auto (CUDA when present, the default), cpu, cuda or cuda:N"
    )
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
    )


def build_parser(prog: str = "mdaf") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="MDAF: prepare Taobao UserBehavior data, train and evaluate CTR models, and report the"
        " paper's tables.",
        formatter_class=HELP_FORMAT,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "prepare",
        help="run the data pipeline and print its statistics (Tables 1 and 6)",
        formatter_class=HELP_FORMAT,
    )
    add_data_arguments(p)
    p.add_argument("--stats-out", metavar="PATH", help="also write the statistics as JSON here")

    p = sub.add_parser(
        "train",
        help="train models and report the comparison, ablation, gate and dynamics tables",
        formatter_class=HELP_FORMAT,
        description=TRAIN_DESCRIPTION,
    )
    add_train_arguments(p)

    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on the validation split, with floors and gate tables",
        formatter_class=HELP_FORMAT,
    )
    p.add_argument("checkpoint", help="best.pt or last.pt written by mdaf train")
    p.add_argument(
        "--data", metavar="PATH", help="data file (default: the one the checkpoint was trained on)"
    )
    p.add_argument(
        "--cache-dir",
        default=DEFAULT_CACHE_DIR,
        metavar="DIR",
        help=f"cache of prepared datasets (default: {DEFAULT_CACHE_DIR})",
    )
    p.add_argument("--device", default="auto", help="auto (the default), cpu, cuda or cuda:N")
    p.add_argument("--eval-batch-size", type=int, default=4096, help="evaluation batch size (default: 4096)")
    p.add_argument("--out", metavar="PATH", help="also write the evaluation as JSON here")

    p = sub.add_parser(
        "report",
        help="rebuild summary.md and the plots of a run directory and print its tables",
        formatter_class=HELP_FORMAT,
    )
    p.add_argument("run_dir", help="a directory written by mdaf train (holding results.json)")
    return parser


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

    from mdaf.api import load
    from mdaf.data import PipelineConfig
    from mdaf.train.config import TrainConfig
    from mdaf.train.experiment import gate_report
    from mdaf.train.floors import floor_scores, oriented_floor
    from mdaf.train.metrics import gauc
    from mdaf.train.trainer import Trainer

    if not Path(args.checkpoint).is_file():
        raise CliError(f"checkpoint not found: {args.checkpoint}")
    model, info = load(args.checkpoint)
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


def cmd_report(args: argparse.Namespace) -> int:
    from mdaf.train.report import load_results, render_console, write_report

    try:
        results = load_results(args.run_dir)
    except FileNotFoundError as error:
        raise CliError(str(error)) from error
    summary = write_report(results, args.run_dir)
    _log(render_console(results))
    _log(f"\nsummary: {summary}")
    return 0


COMMANDS = {"prepare": cmd_prepare, "train": cmd_train, "evaluate": cmd_evaluate, "report": cmd_report}


def main(argv: Sequence[str] | None = None, prog: str = "mdaf") -> int:
    """``mdaf COMMAND ...``; returns the exit status (2 for a bad argument, 1 for a bad file or value)."""
    parser = build_parser(prog)
    return _run(parser, parser.parse_args(argv), prog)


def main_train(argv: Sequence[str] | None = None, prog: str = "train_taobao.py") -> int:
    """``mdaf train`` as a standalone command (the example script)."""
    parser = argparse.ArgumentParser(prog=prog, description=TRAIN_DESCRIPTION, formatter_class=HELP_FORMAT)
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    args.command = "train"
    return _run(parser, args, prog)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, prog: str) -> int:
    try:
        return COMMANDS[args.command](args)
    except CliError as error:
        parser.error(str(error))  # exits with status 2 and the usage line
    except (FileNotFoundError, ValueError) as error:
        print(f"{prog} {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
