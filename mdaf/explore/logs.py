"""Interaction logs: one row per served ad, with the propensity the off-policy estimators need.

Columns: ``context``, ``action`` (the ad), ``reward`` (1 for a click), ``propensity`` (the probability
the logging policy showed that ad on that page view, in (0, 1]), ``timestamp``, and optionally
``position`` (slot) and ``explored`` (came from the exploration list).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("context", "action", "reward", "propensity", "timestamp")
OPTIONAL_COLUMNS = ("position", "explored")


def _check_propensities(propensities: np.ndarray, name: str = "propensity") -> None:
    if not np.all(np.isfinite(propensities)) or np.any((propensities <= 0) | (propensities > 1)):
        bad = propensities[~((propensities > 0) & (propensities <= 1))]
        raise ValueError(f"{name} must be in (0, 1], got {bad[:3].tolist()}")


class InteractionLog:
    """Append-only log of served ads; converts to and from a pandas DataFrame."""

    def __init__(self):
        self._columns: dict[str, list] = {c: [] for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}

    def __len__(self) -> int:
        return len(self._columns["action"])

    def append(self, context: int, actions, rewards, propensities, timestamp: int = 0, positions=None,
               explored=None) -> None:
        """Log the ads shown on one page view (arrays aligned with ``actions``)."""
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        n = actions.size
        rewards = np.broadcast_to(np.asarray(rewards, dtype=np.float64), (n,))
        propensities = np.broadcast_to(np.asarray(propensities, dtype=np.float64), (n,))
        if not np.all(np.isfinite(rewards)):
            raise ValueError("rewards must be finite")
        _check_propensities(propensities)
        positions = np.arange(n) if positions is None else np.asarray(positions, dtype=np.int64).reshape(-1)
        explored = np.zeros(n, bool) if explored is None else np.asarray(explored, dtype=bool).reshape(-1)
        if positions.size != n or explored.size != n:
            raise ValueError(f"positions and explored must have one value per action ({n})")
        cols = self._columns
        cols["context"].extend([int(context)] * n)
        cols["action"].extend(actions.tolist())
        cols["reward"].extend(rewards.tolist())
        cols["propensity"].extend(propensities.tolist())
        cols["timestamp"].extend([int(timestamp)] * n)
        cols["position"].extend(positions.tolist())
        cols["explored"].extend(explored.tolist())

    def to_dataframe(self) -> pd.DataFrame:
        cols = self._columns
        return pd.DataFrame({
            "context": np.asarray(cols["context"], dtype=np.int64),
            "action": np.asarray(cols["action"], dtype=np.int64),
            "reward": np.asarray(cols["reward"], dtype=np.float64),
            "propensity": np.asarray(cols["propensity"], dtype=np.float64),
            "timestamp": np.asarray(cols["timestamp"], dtype=np.int64),
            "position": np.asarray(cols["position"], dtype=np.int64),
            "explored": np.asarray(cols["explored"], dtype=bool),
        })

    @classmethod
    def from_dataframe(cls, df: pd.DataFrame) -> InteractionLog:
        """A log from a DataFrame with at least the columns ``REQUIRED_COLUMNS``."""
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"log DataFrame lacks columns {missing}; it needs {list(REQUIRED_COLUMNS)}")
        integer_columns = ["context", "action", "timestamp"] + (["position"] if "position" in df else [])
        for c in integer_columns:
            if not pd.api.types.is_integer_dtype(df[c]):
                raise ValueError(f"column {c!r} must hold integers, got dtype {df[c].dtype}")
        propensities = df["propensity"].to_numpy(dtype=np.float64)
        _check_propensities(propensities)
        rewards = df["reward"].to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(rewards)):
            raise ValueError("column 'reward' must be finite")
        log = cls()
        n = len(df)
        log._columns = {
            "context": df["context"].astype(np.int64).tolist(),
            "action": df["action"].astype(np.int64).tolist(),
            "reward": rewards.tolist(),
            "propensity": propensities.tolist(),
            "timestamp": df["timestamp"].astype(np.int64).tolist(),
            "position": df["position"].astype(np.int64).tolist() if "position" in df else [0] * n,
            "explored": df["explored"].astype(bool).tolist() if "explored" in df else [False] * n,
        }
        return log
