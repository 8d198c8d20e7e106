"""What every model shares: its dataset meta, its configuration, and the input checks."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from mdaf.models.config import ModelConfig
from mdaf.models.inputs import check_features
from mdaf.schema import DatasetMeta


class CTRModel(nn.Module):
    """Base of the models: ``forward(user, item, category, hist_items, hist_cats, hist_len, *,
    return_gate=False)`` -> logits (B,) float32, or ``(logits, gate)`` (gate None without a gate).

    ``param_groups`` maps a parameter group (for ``parameter_breakdown``) to top-level submodules.
    ``validate_inputs`` (default True) checks ids against the vocabularies, ``hist_len`` and the
    right padding on every call, at the cost of one device-to-host synchronisation; set it to
    False on a model whose inputs are known to be good (e.g. under ``torch.compile``). Ranks,
    dtypes, shapes and devices (the model's) are always checked (host-side, free).
    """

    config_class: ClassVar[type[ModelConfig]]
    param_groups: ClassVar[dict[str, tuple[str, ...]]]
    validate_inputs: bool = True

    def __init__(self, meta: DatasetMeta, config: ModelConfig | None):
        super().__init__()
        if not isinstance(meta, DatasetMeta):
            raise TypeError(f"meta: expected a mdaf.schema.DatasetMeta, got {type(meta).__name__}")
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f"config: expected a {self.config_class.__name__}, got {type(config).__name__}")
        self.meta = meta
        self.config = config
        self.name: str | None = None  # the registry name, set by build_model

    def check_inputs(self, user: torch.Tensor, item: torch.Tensor, category: torch.Tensor,
                     hist_items: torch.Tensor, hist_cats: torch.Tensor, hist_len: torch.Tensor) -> None:
        check_features(self.meta, user, item, category, hist_items, hist_cats, hist_len,
                       values=self.validate_inputs)
        param = next(self.parameters())
        if user.device != param.device:
            raise ValueError(f"user: the inputs are on {user.device} but the model is on {param.device}; "
                             "move the batch (or the model) first")
