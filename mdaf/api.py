"""Inference after training: ``mdaf.load`` a checkpoint, then score raw Taobao ids or prepared ids.

>>> loaded = mdaf.load("runs/example/mdaf/seed0/best.pt")
>>> scores = loaded.predict(rows, history_log="UserBehavior.csv")   # raw user_id, item_id, ...
>>> model, info = loaded                                              # the model and what it was trained on
>>> probs = mdaf.predict(model, prepared.valid)                       # prepared (contiguous) ids

Raw ids go through the id maps fitted on the training split, which travel in the checkpoint: an id
that has no row of its own (unseen in training, or rarer there than the pipeline's ``oov_min_count``)
becomes the out-of-vocabulary id 1, whose embedding was trained on such ids, as in training; 0 is
padding only. Prepared ids are the pipeline's contiguous ids (0 = padding, 1 = out of vocabulary).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from mdaf.schema import FEATURE_KEYS, PAD_ID, DatasetMeta

RAW_ID_COLUMNS = ("user_id", "item_id", "category_id")
RAW_HISTORY_COLUMNS = ("hist_item_ids", "hist_category_ids")


@dataclass
class LoadedRun:
    """What a checkpoint says about its model: name, configurations, vocabularies, id maps, metrics."""

    model_name: str
    model_config: Any
    meta: DatasetMeta
    train_config: dict[str, Any]
    pipeline_config: dict[str, Any] | None
    data_path: str | None = None
    epoch: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    id_maps: Any = None  # mdaf.data.pipeline.IdMaps: raw Taobao ids -> the model's ids


class LoadedModel(NamedTuple):
    """A trained model and its :class:`LoadedRun`; unpacks as ``model, info = mdaf.load(...)``."""

    model: nn.Module
    info: LoadedRun

    def predict(self, data: Any, *, history_log: Any = None, **options: Any) -> np.ndarray:
        """Click probabilities for a DataFrame of **raw** ids, in row order (see :func:`encode_raw`);
        ``options`` go to :func:`predict` (``device``, ``batch_size``, ``return_gate``)."""
        return predict(self.model, self.encode(data, history_log=history_log), **options)

    def encode(self, data: Any, *, history_log: Any = None) -> dict[str, np.ndarray]:
        """The batch-contract arrays of raw rows: :func:`encode_raw` with this checkpoint's id maps."""
        if self.info.id_maps is None:
            raise ValueError(
                f"{self.info.path} holds no id maps: score prepared ids with mdaf.predict(model, arrays)"
            )
        window = (self.info.pipeline_config or {}).get("window")
        return encode_raw(
            data, self.info.id_maps, self.info.meta.max_len, history_log=history_log, window=window
        )


def load(path: str | Path, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model saved in a checkpoint (``best.pt`` or ``last.pt``) in eval mode on ``device``."""
    from mdaf.data.pipeline import IdMaps
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
    id_maps = state.get("id_maps")
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
        id_maps=IdMaps.from_dict(id_maps) if id_maps is not None else None,
    )
    return LoadedModel(model, info)


# --------------------------------------------------------------------------- raw ids
def encode_raw(
    data: Any,
    id_maps: Any,
    max_len: int,
    *,
    history_log: Any = None,
    window: tuple[int, int] | list[int] | None = None,
) -> dict[str, np.ndarray]:
    """The batch-contract arrays (:mod:`mdaf.schema`) of a DataFrame of raw Taobao ids.

    ``data`` has the columns ``user_id``, ``item_id``, ``category_id`` and a history, either

    - ``hist_item_ids`` and ``hist_category_ids``: per row the raw ids of the user's earlier clicks,
      oldest first (lists, arrays, or space-separated strings); the most recent ``max_len`` are kept;
    - or ``timestamp`` (Unix seconds) with ``history_log``: a UserBehavior file (path) or a DataFrame
      with its columns. The history is then built as in training: the user's clicks (``pv``) in the
      log strictly before the row's timestamp, the most recent ``max_len``, oldest first. Log rows
      outside ``window`` (the training pipeline's, ``None`` for all) are dropped, as in training.

    Ids without a row of their own (unseen in training, or too rare there) map to the out-of-vocabulary
    id 1, as in training.
    """
    from mdaf.data.pipeline import IdMaps

    if not hasattr(data, "columns"):
        raise TypeError(f"data must be a pandas DataFrame of raw ids, got {type(data).__name__}")
    missing = [c for c in RAW_ID_COLUMNS if c not in data.columns]
    if missing:
        raise ValueError(f"data lacks columns {missing}; expected {list(RAW_ID_COLUMNS)} plus a history")
    has_lists = all(c in data.columns for c in RAW_HISTORY_COLUMNS)
    if history_log is not None:
        if "timestamp" not in data.columns:
            raise ValueError("data lacks the column 'timestamp' that places each row in history_log")
        return _encode_with_log(data, id_maps, max_len, history_log, window)
    if not has_lists:
        raise ValueError(
            f"data has no history: give the columns {list(RAW_HISTORY_COLUMNS)} (raw ids, oldest first)"
            " or a 'timestamp' column and history_log (a UserBehavior log)"
        )
    items, item_len = _pad_histories([_id_list(h) for h in data["hist_item_ids"]], max_len)
    cats, cat_len = _pad_histories([_id_list(h) for h in data["hist_category_ids"]], max_len)
    if not np.array_equal(item_len, cat_len):
        raise ValueError("hist_item_ids and hist_category_ids must have the same length in every row")
    padding = np.arange(max_len)[None, :] >= item_len[:, None]
    return {
        "user": IdMaps.lookup(id_maps.users, _ids(data, "user_id")),
        "item": IdMaps.lookup(id_maps.items, _ids(data, "item_id")),
        "category": IdMaps.lookup(id_maps.categories, _ids(data, "category_id")),
        "hist_items": np.where(padding, PAD_ID, IdMaps.lookup(id_maps.items, items)),
        "hist_cats": np.where(padding, PAD_ID, IdMaps.lookup(id_maps.categories, cats)),
        "hist_len": item_len,
    }


def _encode_with_log(data, id_maps, max_len: int, history_log: Any, window) -> dict[str, np.ndarray]:
    """Histories from a behaviour log through the training pipeline's own functions."""
    from mdaf.data import pipeline as P
    from mdaf.data.prepare import events_from_frame
    from mdaf.data.reader import read_behaviors

    if hasattr(history_log, "columns"):
        log = history_log
        if window is not None:
            log = log[(log["timestamp"] >= window[0]) & (log["timestamp"] <= window[1])]
    else:
        log, _ = read_behaviors(history_log, window=tuple(window) if window is not None else None)
    clicks = P.extract_clicks(events_from_frame(log))
    n = len(data)
    # the search key holds times within the log's span: a row before the log's first click has an
    # empty history, one after its last click has every click of the log
    timestamp = np.clip(_ids(data, "timestamp"), clicks.t0, clicks.t0 + clicks.span - 1)
    samples = {
        "user": _ids(data, "user_id"),
        "item": _ids(data, "item_id"),
        "category": _ids(data, "category_id"),
        "timestamp": timestamp,
        "label": np.zeros(n, dtype=np.int8),
    }
    samples = P.attach_histories(samples, clicks, max_len)
    arrays = P.materialize(samples, clicks, id_maps, max_len)
    return {k: arrays[k] for k in FEATURE_KEYS}


def _ids(frame, column: str) -> np.ndarray:
    values = frame[column]
    if values.isna().any():
        raise ValueError(f"column {column!r} has missing values")
    try:
        return values.to_numpy(dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"column {column!r} must hold integer ids: {error}") from error


def _id_list(history: Any) -> np.ndarray:
    """One history cell as int64 ids: a list or array, a space-separated string, or empty/missing."""
    if history is None or (isinstance(history, float) and np.isnan(history)):
        return np.empty(0, dtype=np.int64)
    if isinstance(history, str):
        history = history.split()
    try:
        return np.asarray(history, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise ValueError(f"a history must hold integer ids, got {history!r}") from error


# --------------------------------------------------------------------------- prepared ids
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
        raw = " (raw Taobao ids: use mdaf.load(...).predict)" if "item_id" in frame.columns else ""
        raise ValueError(
            f"DataFrame lacks columns {missing}; expected {list(required)} (histories as id lists){raw}"
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
    """Click probabilities for ``data`` in prepared (contiguous) ids: a DataFrame or a mapping of arrays.

    DataFrame columns: ``user``, ``item``, ``category``, ``hist_items`` and ``hist_cats`` (lists of
    ids, oldest first; the most recent ``max_len`` are kept). A mapping holds the batch contract of
    :mod:`mdaf.schema` (``hist_len`` included). ``device`` defaults to the model's device. For raw
    Taobao ids use ``mdaf.load(path).predict``.
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
