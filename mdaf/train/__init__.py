"""Training and evaluation that reproduce the MDAF paper's experiments.

- :class:`TrainConfig` (config), :class:`Trainer` (AdamW, warmup, clipping, label smoothing, early
  stopping, mixed precision, DDP, exact resume), :func:`run_experiment` (models x seeds, settings
  chosen on held-out training days, floors, gate tables, significance, ``results.json``,
  ``summary.md`` and plots).
- :mod:`mdaf.train.metrics` (exact AUC, gAUC, logloss), :mod:`mdaf.train.analysis` (Tables 4 and 5,
  the user-clustered bootstrap), :mod:`mdaf.train.floors` (untrained scorers, oriented).
"""

import importlib

_EXPORTS = {
    "TrainConfig": "mdaf.train.config",
    "Trainer": "mdaf.train.trainer",
    "FitResult": "mdaf.train.trainer",
    "Evaluation": "mdaf.train.trainer",
    "run_experiment": "mdaf.train.experiment",
    "auc": "mdaf.train.metrics",
    "gauc": "mdaf.train.metrics",
    "logloss": "mdaf.train.metrics",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mdaf.train' has no attribute {name!r}")
