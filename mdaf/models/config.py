"""Model configurations are frozen dataclasses: printed and saved with results, rebuilt from a dict."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ModelConfig:
    """Base of every model configuration; subclasses add fields and validate them in ``validate``.

    Lists (what JSON gives back for tuples) are turned into tuples, so
    ``type(cfg)(**json.loads(json.dumps(asdict(cfg))))`` equals ``cfg``.
    """

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        self.validate()

    def validate(self) -> None:
        positive = [f.name for f in fields(self) if f.name in _POSITIVE_INTS]
        for name in positive:
            check_positive(name, getattr(self, name))
        if hasattr(self, "dropout") and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a value in [0, 1), got {self.dropout}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


_POSITIVE_INTS = {
    "embed_dim", "d_state", "d_conv", "expand", "ffn_mult", "num_mamba_layers", "num_heads", "num_blocks",
    "num_cross_layers", "low_rank", "num_experts", "num_attention_layers", "attention_dim",
}


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")


def check_positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")


def check_sizes(name: str, value: object, *, allow_empty: bool = True) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, int) and v >= 1 for v in value):
        raise ValueError(f"{name}: expected a tuple of positive integers, got {value!r}")
    if not allow_empty and not value:
        raise ValueError(f"{name}: expected at least one layer size, got ()")
