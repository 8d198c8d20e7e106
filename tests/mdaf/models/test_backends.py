"""The same weights give the same logits with the reference ops and with the Triton kernels.

Runs the kernels in the Triton interpreter on CPU (or on CUDA when present), on a tiny batch with
tiny dimensions: interpreted Triton costs about 0.1 s per program instance.
"""

from __future__ import annotations

import pytest
import torch

from mdaf_kernels import backend
from tests.mdaf.models.helpers import make_batch, tiny_model
from tests.tolerance import assert_close

# The models whose forward goes through the kernels (Mamba: causal conv1d + selective scan;
# the cross network: fused cross layers). The other models are plain torch on every backend.
SCAN_OPS = {"causal_conv1d_fn", "selective_scan_fn"}
KERNEL_MODELS = [
    ("mdaf", {}, SCAN_OPS | {"cross_layer"}),
    ("mdaf", {"cross_formula": "dcnv3"}, SCAN_OPS | {"cross_layer"}),
    ("mamba4rec", {}, SCAN_OPS),
]


@pytest.mark.triton_interpreter
@pytest.mark.parametrize(("name", "overrides", "ops"), KERNEL_MODELS, ids=["mdaf", "mdaf-dcnv3", "mamba4rec"])
def test_reference_and_triton_backends_agree(name, overrides, ops, device, monkeypatch):
    torch.manual_seed(0)
    if name.startswith("mdaf"):
        overrides = {**overrides, "allow_tf32": False}  # compare at fp32 precision on GPUs too
    model = tiny_model(name, embed_dim=4, d_state=4, **overrides).to(device).eval()
    batch = {k: v.to(device) for k, v in make_batch([0, 3, 5], seq_len=5).items()}
    with torch.no_grad(), backend.use("torch"):
        ref_logits, ref_gate = model(**batch, return_gate=True)
    chosen = set()
    select = backend.select

    def spy(dev, op="op", **kwargs):
        chosen.add((op, select(dev, op, **kwargs)))
        return select(dev, op, **kwargs)

    monkeypatch.setattr(backend, "select", spy)
    with torch.no_grad(), backend.use("triton"):
        logits, gate = model(**batch, return_gate=True)
    assert chosen == {(op, "triton") for op in ops}, "the forward did not run every kernel in Triton"
    assert_close(logits, ref_logits, torch.float32, name=f"{name} logits")
    if ref_gate is not None:
        assert_close(gate, ref_gate, torch.float32, name=f"{name} gate")
