"""Training configuration: one dataclass, printed and saved with every result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

AMP_MODES = ("none", "bf16", "fp16")
SCHEDULES = ("constant", "linear", "cosine")


def _field(default: Any, help: str) -> Any:
    """A dataclass field whose help text the command line shows."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Everything that decides a training run, with the MDAF paper's settings as defaults.

    The paper: AdamW (lr 5e-4, weight decay 1e-5), linear warmup, gradient clipping at 1.0,
    label smoothing 0.01, batch 2048 (evaluation 4096), early stopping on validation AUC with
    patience 5, the best checkpoint kept.
    """

    epochs: int = _field(20, "maximum number of epochs")
    batch_size: int = _field(2048, "training batch size (per process under torchrun)")
    eval_batch_size: int = _field(4096, "evaluation batch size")
    lr: float = _field(5e-4, "AdamW learning rate")
    weight_decay: float = _field(1e-5, "AdamW weight decay (not applied to biases and norm scales)")
    warmup_ratio: float = _field(0.05, "share of the planned steps (epochs x batches) of linear warmup")
    schedule: str = _field("constant", f"learning rate after warmup: one of {SCHEDULES}")
    grad_clip: float = _field(1.0, "clip the global gradient norm to this value; 0 disables")
    label_smoothing: float = _field(0.01, "binary label smoothing s: targets become y (1 - s) + s / 2")
    patience: int = _field(5, "early stopping: epochs without a better validation AUC; 0 disables")
    min_delta: float = _field(0.0, "a validation AUC gain must exceed this to count as better")
    seed: int = _field(0, "seed of torch, NumPy, Python random and the batch order")
    device: str = _field("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    amp: str = _field("none", f"mixed precision on GPU: one of {AMP_MODES} (fp16 uses a gradient scaler)")
    num_threads: int | None = _field(
        None,
        "torch CPU threads (default: OMP_NUM_THREADS or MKL_NUM_THREADS when set, else the physical cores"
        " this process may use: CPU affinity, capped by a cgroup CPU quota)",
    )
    train_eval_samples: int = _field(100_000, "training samples scored each epoch for train AUC; 0 skips")
    checkpoint_every: int = _field(0, "also write a resumable checkpoint every N steps (0: epoch ends only)")
    progress: bool = _field(True, "show the progress bar on stderr")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        positive_ints = ("epochs", "batch_size", "eval_batch_size")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        non_negative_ints = ("patience", "train_eval_samples", "checkpoint_every", "seed")
        for name in non_negative_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be a non-negative integer, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"TrainConfig.warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.grad_clip < 0:
            raise ValueError(f"TrainConfig.grad_clip must be >= 0, got {self.grad_clip!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.min_delta < 0:
            raise ValueError(f"TrainConfig.min_delta must be >= 0, got {self.min_delta!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"TrainConfig.amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.num_threads is not None and (not isinstance(self.num_threads, int) or self.num_threads < 1):
            raise ValueError(
                f"TrainConfig.num_threads must be a positive integer or None, got {self.num_threads!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {unknown}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
