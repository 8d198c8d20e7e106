"""DistributedDataParallel under torchrun: 2 processes, gloo backend, on CPU."""

import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import sys, json
import torch
from mdaf.train.checkpoint import seed_everything
from mdaf.train.config import TrainConfig
from mdaf.train.trainer import Trainer
from tests.mdaf.train.helpers import StandIn, tiny_split

out = sys.argv[1]
seed_everything(0)
lines = []
config = TrainConfig(epochs=2, batch_size=100, lr=3e-2, progress=False, train_eval_samples=0)
trainer = Trainer(StandIn(), config, out_dir=out, log=lines.append)
steps = []
result = trainer.fit(tiny_split(1000, 1), tiny_split(300, 2), on_step=steps.append)
rank = trainer.dist.rank
torch.save({k: v.clone() for k, v in trainer._unwrapped().state_dict().items()}, f"{out}/weights{rank}.pt")
json.dump({"world": trainer.dist.world_size, "steps": len(steps), "log_lines": len(lines),
           "auc": result.evaluation.metrics["auc"]}, open(f"{out}/rank{rank}.json", "w"))
"""


def test_ddp_two_processes_gloo(tmp_path):
    import json

    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        str(tmp_path),
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # 1000 samples split over 2 ranks, batches of 100: 5 steps per epoch per rank, 2 epochs
    assert [r["steps"] for r in ranks] == [10, 10]
    assert ranks[0]["log_lines"] > 0 and ranks[1]["log_lines"] == 0  # rank-0 logging only
    assert ranks[0]["auc"] == ranks[1]["auc"] > 0.6
    weights = [torch.load(tmp_path / f"weights{r}.pt") for r in (0, 1)]
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=0)  # DDP kept ranks in sync
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    assert not dist.is_initialized()
