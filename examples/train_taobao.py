"""Reproduce the MDAF paper's experiments on Taobao UserBehavior data (or a Taobao-like sample).

With no arguments: generates the synthetic Taobao-like data, runs the paper's pipeline, trains MDAF
and BST, and prints the comparison (with untrained floors) and the gate tables; about 3 minutes on
2 CPU cores. Everything lands in runs/<time>/ (results.json, summary.md, plots, checkpoints).

    python examples/train_taobao.py
    python examples/train_taobao.py --data UserBehavior.csv --models all --seeds 0 1 2 --device cuda
    python examples/train_taobao.py --help      # every pipeline and training option

This is ``mdaf train``: both share :mod:`mdaf.cli`.
"""

import sys
from pathlib import Path

try:
    from mdaf.cli import main_train
except ModuleNotFoundError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mdaf.cli import main_train

if __name__ == "__main__":
    sys.exit(main_train(sys.argv[1:]))
