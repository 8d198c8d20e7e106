"""Checkpoints written atomically and read safely, and the random-number state that makes a resume exact.

A checkpoint is written to a temporary file in the same directory, flushed to disk, then renamed
over the target: a reader sees either the old file or the new one, never half of one. It holds
only tensors and plain Python values (NumPy arrays become tensors, NumPy scalars numbers), so it is
read with ``torch.load(weights_only=True)``: loading a checkpoint never runs code from the file.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FORMAT = 2
"""2: plain values only (read with ``weights_only=True``), id maps included. 1: pickled NumPy values."""


def to_plain(value: Any) -> Any:
    """``value`` with NumPy arrays turned into tensors and NumPy scalars into Python numbers, through
    dicts, lists and tuples: what ``torch.load(weights_only=True)`` accepts."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    # plain containers only: a state dict (an OrderedDict) keeps its type and its _metadata
    if type(value) is dict:
        return {k: to_plain(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(to_plain(v) for v in value)
    return value


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` of ``to_plain(obj)`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(to_plain(obj), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`atomic_save` with ``weights_only=True``.

    A missing file raises ``FileNotFoundError``; a file that is not an mdaf checkpoint (another
    format, corrupt or truncated, an older mdaf format) raises ``ValueError`` saying so in one line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    expected = f"best.pt or last.pt written by mdaf train (checkpoint format {CHECKPOINT_FORMAT})"
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for a foreign, corrupt or truncated file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{path} is not a readable mdaf checkpoint ({type(error).__name__}: {reason[:160]}); "
            f"expected {expected}"
        ) from error
    if not isinstance(state, dict) or "format" not in state:
        raise ValueError(f"{path} is not an mdaf checkpoint; expected {expected}")
    if state["format"] != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} has checkpoint format {state['format']}; this version reads format {CHECKPOINT_FORMAT}"
            " (retrain, or load it with the mdaf version that wrote it)"
        )
    return state


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),
        # the generator's uint32 keys as int64: a dtype every torch version stores
        "numpy": (kind, keys.astype(np.int64), position, has_gauss, cached_gaussian),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached_gaussian = state["numpy"]
    keys = keys.numpy() if torch.is_tensor(keys) else np.asarray(keys)
    np.random.set_state((kind, keys.astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
