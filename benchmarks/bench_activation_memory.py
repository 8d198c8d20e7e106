"""Saved-activation bytes per sample: what each model keeps for backward, independent of the allocator.

Counted with ``torch.autograd.graph.saved_tensors_hooks`` (mdaf_kernels.tools.memory), once per storage,
parameters apart, for MDAF with the Triton kernels, MDAF with the reference ops, MDAF on plain
autograd (the reference functions without the ops' custom backward) and BST. Per-sample
bytes are the slope between two small batches (constant terms cancel; everything saved scales with
the batch). On a CPU the Triton row runs in the Triton interpreter, in a subprocess with
``TRITON_INTERPRET=1`` (the variable must be set before Triton kernels are defined); only its byte
count is reported, never its time.

Run as a script, ``python benchmarks/bench_activation_memory.py VARIANT_ID`` prints the count as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from model_cases import VARIANTS_BY_ID, activation_bytes_per_sample

BATCHES = (2, 6)
MEASURED = ("mdaf-triton", "mdaf-reference", "mdaf-autograd", "bst-eager")


def _count_in_interpreter(variant_id: str) -> dict:
    repo = str(Path(__file__).resolve().parents[1])
    pythonpath = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": pythonpath}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), variant_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"counting {variant_id} under the Triton interpreter failed:\n{done.stderr[-4000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.benchmark(group="saved-activations")
@pytest.mark.parametrize("variant_id", MEASURED)
def test_saved_activation_bytes(benchmark, bench_device, variant_id):
    from conftest import record_measurement

    variant = VARIANTS_BY_ID[variant_id]
    interpreted = variant.variant == "triton" and bench_device.type != "cuda"
    if interpreted:
        counted = _count_in_interpreter(variant_id)
    else:
        counted = activation_bytes_per_sample(variant, bench_device, BATCHES)
    assert counted["activation_bytes_per_sample"] > 0
    record_measurement(
        benchmark,
        device=bench_device,
        model=variant.model,
        variant=variant.variant,
        note="counted in the Triton interpreter" if interpreted else "",
        **counted,
    )


if __name__ == "__main__":
    print(json.dumps(activation_bytes_per_sample(VARIANTS_BY_ID[sys.argv[1]], torch.device("cpu"), BATCHES)))
