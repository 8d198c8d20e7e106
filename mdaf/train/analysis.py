"""Gate statistics (the paper's Tables 4 and 5), significance and seed aggregation.

Significance has one method: a paired bootstrap of the AUC difference that resamples users (the
paper's paired t-test on batch-level AUC treats batches as independent, which a user's correlated
samples are not, and it disagreed with the bootstrap; it was removed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mdaf.train.metrics import auc_from_groups, tie_groups

HISTORY_BUCKETS = (("< 10", 0, 9), ("10-30", 10, 30), ("> 30", 31, None))


def gate_statistics(gate: np.ndarray) -> dict[str, float]:
    """Table 4: mean, std, median, min, max and quartiles of the gate values g."""
    g = np.asarray(gate, dtype=np.float64).reshape(-1)
    if g.size == 0:
        raise ValueError("gate statistics need at least one gate value")
    q25, median, q75 = np.percentile(g, [25, 50, 75])
    return {
        "count": int(g.size),
        "mean": float(g.mean()),
        "std": float(g.std()),
        "median": float(median),
        "min": float(g.min()),
        "max": float(g.max()),
        "q25": float(q25),
        "q75": float(q75),
    }


def gate_by_history_length(gate: np.ndarray, hist_len: np.ndarray) -> list[dict[str, float | str | int]]:
    """Table 5: mean gate value for history lengths < 10, 10 to 30 and > 30."""
    g = np.asarray(gate, dtype=np.float64).reshape(-1)
    lengths = np.asarray(hist_len).reshape(-1)
    if g.shape != lengths.shape:
        raise ValueError(f"gate and hist_len must have the same length, got {g.shape} and {lengths.shape}")
    rows = []
    for label, low, high in HISTORY_BUCKETS:
        mask = lengths >= low if high is None else (lengths >= low) & (lengths <= high)
        n = int(mask.sum())
        rows.append(
            {
                "history_length": label,
                "count": n,
                "mean": float(g[mask].mean()) if n else float("nan"),
                "std": float(g[mask].std()) if n else float("nan"),
            }
        )
    return rows


def bootstrap_auc_difference(
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    *,
    clusters: np.ndarray | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float | int]:
    """Paired bootstrap confidence interval of AUC(A) - AUC(B), resampling whole ``clusters``.

    Pass the user of each sample as ``clusters``: a user's samples (and a positive's negatives, which
    share its user) are correlated, so resampling single samples would make the interval too narrow.
    Without ``clusters`` each sample is its own cluster. Each resample is a vector of multiplicities
    used as weights in the exact AUC, so both models are scored on the same resampled set and the
    scores are sorted only once per model. ``p_a_not_better`` (the share of resamples where A does
    not beat B) is the one-sided p-value of the verdicts; the interval excludes 0 exactly when it is
    below ``(1 - confidence) / 2`` (up to resample ties).
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    labels = np.asarray(labels, dtype=np.float64)
    n = labels.shape[0]
    if clusters is None:
        codes, n_clusters = np.arange(n), n
    else:
        clusters = np.asarray(clusters)
        if clusters.shape != labels.shape:
            raise ValueError(f"clusters must have one entry per sample {labels.shape}, got {clusters.shape}")
        _, codes = np.unique(clusters, return_inverse=True)
        n_clusters = int(codes.max(initial=-1)) + 1
    order_a, group_a = tie_groups(np.asarray(scores_a, dtype=np.float64))
    order_b, group_b = tie_groups(np.asarray(scores_b, dtype=np.float64))
    labels_a, labels_b = labels[order_a], labels[order_b]
    point = auc_from_groups(labels_a, group_a) - auc_from_groups(labels_b, group_b)
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for k in range(n_boot):
        drawn = np.bincount(rng.integers(0, n_clusters, size=n_clusters), minlength=n_clusters)
        weights = drawn[codes].astype(np.float64)
        diffs[k] = auc_from_groups(labels_a, group_a, weights[order_a]) - auc_from_groups(
            labels_b, group_b, weights[order_b]
        )
    diffs = diffs[~np.isnan(diffs)]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(diffs, [alpha, 1.0 - alpha])
    return {
        "diff": float(point),
        "low": float(low),
        "high": float(high),
        "confidence": confidence,
        "n_boot": int(n_boot),
        "clusters": int(n_clusters),
        "p_a_not_better": float(np.mean(diffs <= 0)),
    }


def aggregate_seeds(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (ddof 1; 0 for one seed) of each metric over seeds."""
    if not per_seed:
        raise ValueError("aggregate_seeds needs at least one result")
    keys = [k for k in per_seed[0] if isinstance(per_seed[0][k], (int, float))]
    out = {}
    for key in keys:
        values = np.array([float(r[key]) for r in per_seed])
        out[key] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "n": int(values.size),
        }
    return out
