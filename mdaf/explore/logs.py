"""Interaction logs: one row per served ad, with the propensity the off-policy estimators need.

Columns: ``context``, ``action`` (the ad), ``reward`` (1 for a click), ``propensity`` (the probability
the logging policy showed that ad on that page view, in (0, 1]), ``timestamp``, and optionally
``position`` (slot), ``explored`` (came from the exploration list) and ``page_view`` (one id per
``append``: the estimators' clusters; a DataFrame without it makes every row its own page view).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mdaf.explore.cfb import as_id_array

REQUIRED_COLUMNS = ("context", "action", "reward", "propensity", "timestamp")
OPTIONAL_COLUMNS = ("position", "explored", "page_view")


def _check_propensities(propensities: np.ndarray, name: str = "propensity") -> None:
    if not np.all(np.isfinite(propensities)) or np.any((propensities <= 0) | (propensities > 1)):
        bad = propensities[~((propensities > 0) & (propensities <= 1))]
        raise ValueError(f"{name} must be in (0, 1], got {bad[:3].tolist()} (NaN: the policy has no exact "
                         "propensities, e.g. Thompson sampling, and cannot log for off-policy evaluation)")


class InteractionLog:
    """Append-only log of served ads; converts to and from a pandas DataFrame."""

    def __init__(self):
        self._columns: dict[str, list] = {c: [] for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
        self._page_views = 0

    def __len__(self) -> int:
        return len(self._columns["action"])

    def append(self, context: int, actions, rewards, propensities, timestamp: int = 0, positions=None,
               explored=None) -> None:
        """Log the ads shown on one page view (arrays aligned with ``actions``)."""
        context = int(as_id_array(context, "context")[0])
        actions = as_id_array(actions, "actions")
        n = actions.size
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        propensities = np.asarray(propensities, dtype=np.float64).reshape(-1)
        if rewards.size not in (1, n) or propensities.size not in (1, n):
            raise ValueError(f"rewards and propensities must have one value per action ({n}) or one in all, "
                             f"got {rewards.size} and {propensities.size}")
        rewards, propensities = np.broadcast_to(rewards, (n,)), np.broadcast_to(propensities, (n,))
        if not np.all(np.isfinite(rewards)):
            raise ValueError("rewards must be finite")
        _check_propensities(propensities)
        positions = np.arange(n) if positions is None else as_id_array(positions, "positions")
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
        cols["page_view"].extend([self._page_views] * n)
        self._page_views += 1

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
            "page_view": np.asarray(cols["page_view"], dtype=np.int64),
        })

    @classmethod
    def from_dataframe(cls, df: pd.DataFrame) -> InteractionLog:
        """A log from a DataFrame with at least the columns ``REQUIRED_COLUMNS``."""
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"log DataFrame lacks columns {missing}; it needs {list(REQUIRED_COLUMNS)}")
        optional = [c for c in ("position", "page_view") if c in df]
        integer_columns = ["context", "action", "timestamp", *optional]
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
            "page_view": df["page_view"].astype(np.int64).tolist() if "page_view" in df else list(range(n)),
        }
        log._page_views = max(log._columns["page_view"], default=-1) + 1
        return log
