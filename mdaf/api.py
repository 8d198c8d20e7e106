"""Inference after training: ``mdaf.load`` a checkpoint, ``mdaf.predict`` click probabilities.

>>> model, info = mdaf.load("runs/example/mdaf/seed0/best.pt")
>>> probs = mdaf.predict(model, frame)            # DataFrame: user, item, category, hist_items, hist_cats

Ids are the pipeline's contiguous ids (0 = padding, 1 = out of vocabulary), as in the training arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mdaf.schema import FEATURE_KEYS, PAD_ID, DatasetMeta


@dataclass
class LoadedRun:
    """What a checkpoint says about its model: name, configurations, vocabularies, metrics."""

    model_name: str
    model_config: Any
    meta: DatasetMeta
    train_config: dict[str, Any]
    pipeline_config: dict[str, Any] | None
    data_path: str | None = None
    epoch: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def load(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[nn.Module, LoadedRun]:
    """Rebuild the model saved in a checkpoint (``best.pt`` or ``last.pt``) in eval mode on ``device``."""
    from mdaf.models import build_model
    from mdaf.train.checkpoint import load_checkpoint

    state = load_checkpoint(path, map_location="cpu")
    missing = [k for k in ("model_name", "model_config", "meta", "model_state") if k not in state]
    if missing:
        raise ValueError(
            f"{path} lacks {missing}: it was not written by the mdaf trainer with model information"
        )
    meta = DatasetMeta(**state["meta"])
    model = build_model(state["model_name"], meta, **state["model_config"])
    model.load_state_dict(state["model_state"])
    model.to(device).eval()
    info = LoadedRun(
        model_name=state["model_name"],
        model_config=model.config,
        meta=meta,
        train_config=state.get("train_config", {}),
        pipeline_config=state.get("pipeline_config"),
        data_path=state.get("data_path"),
        epoch=state.get("epoch"),
        metrics=state.get("metrics", {}),
        path=Path(path),
    )
    return model, info


def _pad_histories(histories, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id lists (oldest first) to ``max_len``, keeping the most recent ``max_len`` ids."""
    out = np.full((len(histories), max_len), PAD_ID, dtype=np.int64)
    lengths = np.zeros(len(histories), dtype=np.int64)
    for row, history in enumerate(histories):
        ids = np.asarray([] if history is None else history, dtype=np.int64).reshape(-1)[-max_len:]
        out[row, : ids.size] = ids
        lengths[row] = ids.size
    return out, lengths


def _features_from_frame(frame, max_len: int) -> dict[str, np.ndarray]:
    required = ("user", "item", "category", "hist_items", "hist_cats")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(
            f"DataFrame lacks columns {missing}; expected {list(required)} (histories as id lists)"
        )
    hist_items, len_items = _pad_histories(list(frame["hist_items"]), max_len)
    hist_cats, len_cats = _pad_histories(list(frame["hist_cats"]), max_len)
    if not np.array_equal(len_items, len_cats):
        raise ValueError("hist_items and hist_cats must have the same length in every row")
    return {
        "user": frame["user"].to_numpy(dtype=np.int64),
        "item": frame["item"].to_numpy(dtype=np.int64),
        "category": frame["category"].to_numpy(dtype=np.int64),
        "hist_items": hist_items,
        "hist_cats": hist_cats,
        "hist_len": len_items,
    }


@torch.no_grad()
def predict(
    model: nn.Module,
    data: Any,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 4096,
    return_gate: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    """Click probabilities for ``data``: a pandas DataFrame or a mapping of arrays/tensors.

    DataFrame columns: ``user``, ``item``, ``category``, ``hist_items`` and ``hist_cats`` (lists of
    ids, oldest first; the most recent ``max_len`` are kept). A mapping holds the batch contract of
    :mod:`mdaf.schema` (``hist_len`` included). ``device`` defaults to the model's device.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is None:
        device = next(model.parameters()).device
    model = model.to(device).eval()
    if hasattr(data, "columns"):
        max_len = model.meta.max_len if hasattr(model, "meta") else 50
        arrays: Mapping[str, Any] = _features_from_frame(data, max_len)
    elif isinstance(data, Mapping):
        missing = [k for k in FEATURE_KEYS if k not in data]
        if missing:
            raise ValueError(f"data lacks {missing}; expected the keys {list(FEATURE_KEYS)}")
        arrays = data
    else:
        raise TypeError(f"data must be a pandas DataFrame or a mapping of arrays, got {type(data).__name__}")
    n = len(arrays["item"])
    probs, gates = [], []
    for start in range(0, n, batch_size):
        batch = {k: _batch_tensor(arrays[k], start, batch_size, device) for k in FEATURE_KEYS}
        logits, gate = model(**batch, return_gate=True)
        probs.append(torch.sigmoid(logits.float()).reshape(-1).cpu())
        if gate is not None:
            gates.append(gate.float().reshape(logits.shape[0], -1).mean(dim=1).cpu())
    result = torch.cat(probs).numpy() if probs else np.empty(0, dtype=np.float32)
    if not return_gate:
        return result
    return result, (torch.cat(gates).numpy() if gates else None)


def _batch_tensor(values: Any, start: int, size: int, device) -> torch.Tensor:
    part = values[start : start + size]
    if not torch.is_tensor(part):
        part = torch.from_numpy(np.array(part, dtype=np.int64))  # a copy: memmaps of the cache are read-only
    return part.to(device=device, dtype=torch.long)
