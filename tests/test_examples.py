"""Smoke test of examples/train_taobao.py at a tiny size, as a user runs it (a subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from mdaf.data import generate_synthetic

ROOT = Path(__file__).resolve().parents[1]


def test_train_taobao_example_runs_end_to_end(tmp_path):
    data = generate_synthetic(
        tmp_path / "tiny.csv", users=30, items=200, categories=10, rows_per_user=40, seed=1
    )
    out = tmp_path / "run"
    command = [
        sys.executable,
        str(ROOT / "examples" / "train_taobao.py"),
        "--data",
        str(data),
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--models",
        "mdaf",
        "dcnv2",
        "--epochs",
        "1",
        "--batch-size",
        "256",
        "--max-len",
        "8",
        "--set",
        "embed_dim=8",
        "--set",
        "mdaf.d_state=4",
        "--set",
        "mdaf.expand=1",
        "--n-boot",
        "20",
        "--no-progress",
    ]
    # as a user runs it: without the Triton interpreter that tests/conftest.py turns on for kernel tests
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code, whichever one pip installed
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # the console shows the comparison with its floors and the gate table
    assert "Overall comparison on validation (with untrained floors)" in done.stdout
    assert "floor:category-share" in done.stdout and "Gate g of mdaf" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"mdaf", "dcnv2"}
    assert (out / "summary.md").is_file() and (out / "mdaf" / "seed0" / "best.pt").is_file()
    # the run names every file it wrote
    for name in (
        "results.json",
        "summary.md",
        "val_auc.png",
        "gate.png",
        "mdaf/seed0/best.pt",
        "dcnv2/seed0/last.pt",
    ):
        assert f"  {out / name}\n" in done.stdout, name
