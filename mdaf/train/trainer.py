"""The trainer: one loop for every registered model.

AdamW with linear warmup, gradient clipping, label smoothing, early stopping on validation AUC
with the best weights kept, optional mixed precision on GPU, DistributedDataParallel under
``torchrun``, and checkpoints that resume exactly (model, optimiser, scheduler, scaler, RNG states,
epoch and batch position, early-stopping state).
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mdaf.schema import FEATURE_KEYS, LABEL_KEY
from mdaf.train.checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)
from mdaf.train.config import TrainConfig
from mdaf.train.distributed import DistInfo, barrier, init_distributed, resolve_device
from mdaf.train.metrics import auc, gauc, logloss
from mdaf.train.progress import ProgressBar
from mdaf.train.threads import set_num_threads

Arrays = Mapping[str, np.ndarray]
BATCH_KEYS = (*FEATURE_KEYS, LABEL_KEY)
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"

EPOCH_COLUMNS = (
    ("epoch", "epoch", "{:>5d}"),
    ("train_loss", "train loss", "{:>10.4f}"),
    ("train_auc", "train AUC", "{:>9.4f}"),
    ("val_auc", "val AUC", "{:>8.4f}"),
    ("gap", "gap", "{:>7.4f}"),
    ("val_logloss", "val logloss", "{:>11.4f}"),
    ("val_gauc", "val gAUC", "{:>8.4f}"),
    ("lr", "lr", "{:>8.2e}"),
    ("seconds", "time s", "{:>6.1f}"),
)


def format_epoch_header() -> str:
    widths = [len(fmt.format(1 if key == "epoch" else 0.0)) for key, _, fmt in EPOCH_COLUMNS]
    return " ".join(title.rjust(w) for (_, title, _), w in zip(EPOCH_COLUMNS, widths, strict=True))


def format_epoch_row(record: Mapping[str, Any]) -> str:
    cells = []
    for key, _, fmt in EPOCH_COLUMNS:
        value = record.get(key)
        width = len(fmt.format(1 if key == "epoch" else 0.0))
        if value is None or (isinstance(value, float) and math.isnan(value)):
            cells.append("-".rjust(width))
        else:
            cells.append(fmt.format(value))
    best = "  *" if record.get("best") else ""
    return " ".join(cells) + best


@dataclass
class Evaluation:
    """Predictions on one split (in the split's order) and their metrics."""

    probs: np.ndarray
    labels: np.ndarray
    users: np.ndarray
    hist_len: np.ndarray
    gate: np.ndarray | None
    metrics: dict[str, float]


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_auc: float
    stopped_early: bool
    epochs_run: int
    train_seconds: float
    evaluation: Evaluation
    best_checkpoint: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _State:
    """Everything besides model/optimiser/scheduler that a resume must restore."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_val_auc: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    epoch_loss_sum: float = 0.0
    epoch_samples: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


def smooth_targets(labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Label smoothing for a binary target: y (1 - s) + s / 2."""
    return labels * (1.0 - smoothing) + 0.5 * smoothing


def make_lr_lambda(total_steps: int, warmup_steps: int, schedule: str) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(max(step - warmup_steps, 0) / max(total_steps - warmup_steps, 1), 1.0)
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _check_arrays(name: str, arrays: Arrays) -> int:
    missing = [k for k in (*FEATURE_KEYS, LABEL_KEY) if k not in arrays]
    if missing:
        raise ValueError(f"{name} split is missing arrays {missing}; expected the keys of mdaf.schema")
    n = len(arrays[LABEL_KEY])
    if n == 0:
        raise ValueError(f"{name} split is empty")
    return n


def _take(arrays: Arrays, index: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[index] for k, v in arrays.items()}


class Trainer:
    """Trains ``model`` on ``train`` and early-stops on ``valid``.

    ``checkpoint_info`` (model name, dataset meta, configs) is stored in every checkpoint so that
    :func:`mdaf.load` can rebuild the model; ``out_dir`` receives ``last.pt`` (resumable) and
    ``best.pt`` (the kept weights). Without ``out_dir`` nothing is written.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        *,
        out_dir: str | Path | None = None,
        checkpoint_info: Mapping[str, Any] | None = None,
        log: Callable[[str], None] | None = None,
        desc: str = "train",
    ) -> None:
        config.validate()
        self.config = config
        set_num_threads(config.num_threads)
        device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
        if config.amp != "none" and device.type != "cuda":
            raise ValueError(f"mixed precision (amp={config.amp!r}) needs a CUDA device, got {device}")
        self.device = device
        self.dist: DistInfo = init_distributed(device)
        self.model = model.to(device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.checkpoint_info = dict(checkpoint_info or {})
        self.desc = desc
        self._log = log if log is not None else (lambda text: print(text, flush=True))
        self.scaler = torch.amp.GradScaler("cuda") if config.amp == "fp16" else None

    # ----------------------------------------------------------------- helpers
    def log(self, text: str) -> None:
        if self.dist.is_main:
            self._log(text)

    def _autocast(self):
        if self.config.amp == "none":
            return nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)

    def _features(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: batch[k].to(self.device, non_blocking=True) for k in FEATURE_KEYS}

    # -------------------------------------------------------------- evaluation
    @torch.no_grad()
    def predict(self, arrays: Arrays, *, with_gate: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Click probabilities (and gate values when the model has a gate) in the order of ``arrays``."""
        from mdaf.data import BatchIterator

        model = (
            self.model.module if isinstance(self.model, nn.parallel.DistributedDataParallel) else self.model
        )
        was_training = model.training
        model.eval()
        probs, gates = [], []
        iterator = BatchIterator(arrays, self.config.eval_batch_size, shuffle=False, keys=BATCH_KEYS)
        try:
            for batch in iterator.batches(0):
                with self._autocast():
                    if with_gate:
                        logits, gate = model(**self._features(batch), return_gate=True)
                    else:
                        logits, gate = model(**self._features(batch)), None
                probs.append(torch.sigmoid(logits.float()).reshape(-1).cpu().numpy())
                if gate is not None:
                    gates.append(gate.float().reshape(logits.shape[0], -1).mean(dim=1).cpu().numpy())
        finally:
            model.train(was_training)
        gate_values = np.concatenate(gates).astype(np.float64) if gates else None
        return np.concatenate(probs).astype(np.float64), gate_values

    def evaluate(self, arrays: Arrays, *, with_gate: bool = True) -> Evaluation:
        _check_arrays("evaluation", arrays)
        probs, gate = self.predict(arrays, with_gate=with_gate)
        labels = np.asarray(arrays[LABEL_KEY], dtype=np.float64)
        users = np.asarray(arrays["user"])
        metrics = {
            "auc": _safe(auc, labels, probs),
            "gauc": gauc(users, labels, probs),
            "logloss": logloss(labels, probs),
        }
        return Evaluation(probs, labels, users, np.asarray(arrays["hist_len"]), gate, metrics)

    # ------------------------------------------------------------- checkpoints
    def _checkpoint_payload(self, state: _State, optimizer, scheduler) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "kind": "resume",
            **self.checkpoint_info,
            "train_config": self.config.to_dict(),
            "model_state": self._unwrapped().state_dict(),
            "optimizer_state": optimizer.state_dict(),
            "scheduler_state": scheduler.state_dict(),
            "scaler_state": self.scaler.state_dict() if self.scaler is not None else None,
            "rng_state": capture_rng_state(),
            "trainer_state": copy.deepcopy(state.__dict__),
        }

    def _save_last(self, state: _State, optimizer, scheduler) -> None:
        if self.out_dir is not None and self.dist.is_main:
            atomic_save(self._checkpoint_payload(state, optimizer, scheduler), self.out_dir / LAST_CHECKPOINT)

    def _save_best(self, record: Mapping[str, Any]) -> None:
        if self.out_dir is not None and self.dist.is_main:
            payload = {
                "format": CHECKPOINT_FORMAT,
                "kind": "best",
                **self.checkpoint_info,
                "train_config": self.config.to_dict(),
                "model_state": self._unwrapped().state_dict(),
                "epoch": record["epoch"],
                "metrics": dict(record),
            }
            atomic_save(payload, self.out_dir / BEST_CHECKPOINT)

    def _unwrapped(self) -> nn.Module:
        return (
            self.model.module if isinstance(self.model, nn.parallel.DistributedDataParallel) else self.model
        )

    # ---------------------------------------------------------------- training
    def fit(
        self,
        train: Arrays,
        valid: Arrays,
        *,
        resume: str | Path | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> FitResult:
        """Train until ``epochs`` or early stopping; return the history and the best model's evaluation.

        ``resume``: a ``last.pt`` written by an earlier (interrupted) run with the same data and
        config; training continues at the saved batch and ends exactly as the uninterrupted run.
        ``on_step(global_step)`` is called after every optimiser step.
        """
        from mdaf.data import BatchIterator

        cfg = self.config
        n_train = _check_arrays("train", train)
        _check_arrays("valid", valid)
        iterator = BatchIterator(
            train,
            cfg.batch_size,
            shuffle=True,
            seed=cfg.seed,
            keys=BATCH_KEYS,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        steps_per_epoch = len(iterator)
        if steps_per_epoch == 0:
            raise ValueError(f"train split ({n_train} samples) gives no batch of size {cfg.batch_size}")
        total_steps = cfg.epochs * steps_per_epoch
        warmup_steps = int(cfg.warmup_ratio * total_steps)

        module = self._unwrapped()
        decay, no_decay = [], []
        for param in module.parameters():
            if param.requires_grad:
                # no weight decay on biases and normalisation scales, the usual AdamW practice
                (no_decay if param.ndim <= 1 else decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, make_lr_lambda(total_steps, warmup_steps, cfg.schedule)
        )
        state = _State()
        best_state: dict[str, torch.Tensor] | None = None
        if resume is not None:
            saved = load_checkpoint(resume, map_location=self.device)
            if saved.get("kind") != "resume":
                raise ValueError(
                    f"{resume} is a {saved.get('kind')!r} checkpoint; resume needs {LAST_CHECKPOINT}"
                )
            self._check_resume_config(saved, resume)
            module.load_state_dict(saved["model_state"])
            optimizer.load_state_dict(saved["optimizer_state"])
            scheduler.load_state_dict(saved["scheduler_state"])
            if self.scaler is not None and saved.get("scaler_state") is not None:
                self.scaler.load_state_dict(saved["scaler_state"])
            state = _State(**saved["trainer_state"])
            best_path = Path(resume).with_name(BEST_CHECKPOINT)
            if best_path.is_file():
                best_state = load_checkpoint(best_path, map_location="cpu")["model_state"]
            restore_rng_state(saved["rng_state"])
            self.log(f"resumed from {resume} at epoch {state.epoch + 1}, batch {state.step_in_epoch}")

        if self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(module, device_ids=device_ids)

        train_eval = None
        if cfg.train_eval_samples:
            # a fixed sample of training rows (own generator: global RNG streams stay untouched)
            size = min(cfg.train_eval_samples, n_train)
            index = np.sort(np.random.default_rng(cfg.seed).choice(n_train, size=size, replace=False))
            train_eval = _take(train, index)

        if state.epoch == 0 and state.step_in_epoch == 0:
            ranks = f" per rank x {self.dist.world_size} ranks" if self.dist.enabled else ""
            self.log(
                f"{self.desc}: {n_train:,} samples, {steps_per_epoch} batches of {cfg.batch_size}{ranks}"
                f" per epoch, up to {cfg.epochs} epochs, device {self.device}"
            )
        self.log(format_epoch_header())
        for row in state.history:
            self.log(format_epoch_row(row))
        start_time = time.perf_counter()
        while state.epoch < cfg.epochs and not state.stopped_early:
            epoch_start = time.perf_counter()
            self.model.train()
            bar = ProgressBar(
                steps_per_epoch,
                f"{self.desc} epoch {state.epoch + 1}",
                enabled=cfg.progress and self.dist.is_main,
                stream=sys.stderr,
            )
            bar.count = state.step_in_epoch
            for batch in iterator.batches(state.epoch, start=state.step_in_epoch):
                loss_value, batch_size = self._train_step(batch, optimizer, scheduler)
                state.epoch_loss_sum += loss_value * batch_size
                state.epoch_samples += batch_size
                state.step_in_epoch += 1
                state.global_step += 1
                bar.update(samples=batch_size * self.dist.world_size, loss=loss_value)
                if cfg.checkpoint_every and state.global_step % cfg.checkpoint_every == 0:
                    self._save_last(state, optimizer, scheduler)
                if on_step is not None:
                    on_step(state.global_step)
            bar.close()
            record = self._end_epoch(state, valid, train_eval, scheduler, time.perf_counter() - epoch_start)
            if record["best"]:
                best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in self._unwrapped().state_dict().items()
                }
                self._save_best(record)
            self.log(format_epoch_row(record))
            self._save_last(state, optimizer, scheduler)
            barrier(self.dist)
        train_seconds = time.perf_counter() - start_time

        if best_state is not None:
            self._unwrapped().load_state_dict(best_state)
        if state.stopped_early:
            self.log(f"early stop: no val AUC gain for {cfg.patience} epochs; best epoch {state.best_epoch}")
        evaluation = self.evaluate(valid)
        best_path = self.out_dir / BEST_CHECKPOINT if self.out_dir is not None else None
        return FitResult(
            history=state.history,
            best_epoch=state.best_epoch,
            best_val_auc=state.best_val_auc,
            stopped_early=state.stopped_early,
            epochs_run=len(state.history),
            train_seconds=train_seconds,
            evaluation=evaluation,
            best_checkpoint=best_path,
        )

    def _check_resume_config(self, saved: Mapping[str, Any], path: str | Path) -> None:
        ignore = {"progress", "device", "num_threads"}
        previous = {k: v for k, v in saved["train_config"].items() if k not in ignore}
        current = {k: v for k, v in self.config.to_dict().items() if k not in ignore}
        changed = sorted(k for k in current if previous.get(k) != current[k])
        if changed:
            raise ValueError(
                f"cannot resume from {path}: TrainConfig fields changed since it was saved: {changed}"
            )

    def _train_step(self, batch, optimizer, scheduler) -> tuple[float, int]:
        cfg = self.config
        features = self._features(batch)
        labels = batch[LABEL_KEY].to(self.device, non_blocking=True).float()
        with self._autocast():
            logits = self.model(**features)
        loss = F.binary_cross_entropy_with_logits(
            logits.float().reshape(-1), smooth_targets(labels, cfg.label_smoothing)
        )
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
        else:
            loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at step {scheduler.last_epoch}")
        return value, int(labels.shape[0])

    def _end_epoch(self, state: _State, valid: Arrays, train_eval: Arrays | None, scheduler, seconds: float):
        cfg = self.config
        val = self.evaluate(valid, with_gate=False).metrics
        train_auc = (
            self.evaluate(train_eval, with_gate=False).metrics["auc"] if train_eval is not None else math.nan
        )
        epoch = state.epoch + 1
        improved = val["auc"] > state.best_val_auc + cfg.min_delta
        if improved:
            state.best_val_auc, state.best_epoch, state.bad_epochs = val["auc"], epoch, 0
        else:
            state.bad_epochs += 1
        record = {
            "epoch": epoch,
            "train_loss": state.epoch_loss_sum / max(state.epoch_samples, 1),
            "train_auc": train_auc,
            "val_auc": val["auc"],
            "gap": train_auc - val["auc"],
            "val_logloss": val["logloss"],
            "val_gauc": val["gauc"],
            "lr": scheduler.get_last_lr()[0],
            "seconds": seconds,
            "samples_per_s": state.epoch_samples * self.dist.world_size / max(seconds, 1e-9),
            "best": improved,
        }
        state.history.append(record)
        state.epoch += 1
        state.step_in_epoch = 0
        state.epoch_loss_sum = 0.0
        state.epoch_samples = 0
        if cfg.patience and state.bad_epochs >= cfg.patience:
            state.stopped_early = True
        return record


def _safe(metric, *args) -> float:
    """A metric that is NaN instead of an error when undefined (single-class split)."""
    try:
        return metric(*args)
    except ValueError:
        return math.nan
