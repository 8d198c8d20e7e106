"""The models read the sequence encoder at one position per row, and compute only that position in
its last layer: same logits and gradients as the full path (every position, then ``gather_last``)."""

from __future__ import annotations

import pytest
import torch

from mdaf.models.inputs import gather_last
from mdaf.models.layers import SequenceEncoder
from mdaf_kernels import backend
from tests.mdaf.models.helpers import make_batch, tiny_model
from tests.tolerance import assert_close

# Every model with a Mamba sequence encoder, and MDAF's settings that change what the encoder reads.
SEQUENCE_MODELS = [
    ("mdaf", {}),
    ("mdaf", {"seq_target": True}),
    ("mdaf", {"num_mamba_layers": 2}),
    ("mdaf-concat", {}),
    ("mdaf-fixed-gate", {}),
    ("mdaf-attn-fusion", {}),
    ("mdaf-seq-only", {}),
    ("mdaf-mlp-static", {}),
    ("mamba4rec", {}),
    ("mamba4rec", {"num_mamba_layers": 2}),
]


def logits_and_grads(model, batch):
    logits = model(**batch)
    params = [p for p in model.parameters() if p.requires_grad]
    weights = torch.linspace(-1.0, 1.0, logits.numel(), device=logits.device)
    return logits, torch.autograd.grad((logits * weights).sum(), params)


def assert_same_as_full_path(model, batch, label):
    """The last-only path (the default) against the full path, forward and every parameter gradient."""
    assert model.sequence.shorten_last_layer
    logits, grads = logits_and_grads(model, batch)
    model.sequence.shorten_last_layer = False
    ref_logits, ref_grads = logits_and_grads(model, batch)
    model.sequence.shorten_last_layer = True
    assert_close(logits, ref_logits, torch.float32, name=f"{label} logits")
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    for name, g, g_ref in zip(names, grads, ref_grads, strict=True):
        # Both fp32; parameter gradients sum over the batch and (in the encoder) over time.
        assert_close(g, g_ref, torch.float32, name=f"{label} d{name}", factor=3.0)


@pytest.mark.parametrize(("name", "overrides"), SEQUENCE_MODELS,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}"
                              for n, o in SEQUENCE_MODELS])
def test_last_only_path_equals_full_path_on_reference_ops(name, overrides):
    torch.manual_seed(0)
    model = tiny_model(name, dropout=0.0, **overrides)  # dropout off: both paths see the same function
    batch = make_batch([0, 1, 9, 4, 6, 1, 0, 8])  # empty, one-element, full and mixed histories
    with backend.use("torch"):
        assert_same_as_full_path(model, batch, name)


@pytest.mark.triton_interpreter
@pytest.mark.parametrize(("name", "overrides"), [("mdaf", {"num_mamba_layers": 2}), ("mamba4rec", {})],
                         ids=["mdaf-2-layers", "mamba4rec"])
def test_last_only_path_equals_full_path_on_triton(name, overrides, device):
    torch.manual_seed(0)
    if name == "mdaf":
        overrides = {**overrides, "allow_tf32": False}  # compare at fp32 precision on GPUs too
    model = tiny_model(name, embed_dim=4, d_state=4, dropout=0.0, **overrides).to(device)
    batch = {k: v.to(device) for k, v in make_batch([0, 1, 5], seq_len=5).items()}
    with backend.use("triton"):
        assert_same_as_full_path(model, batch, name)


@pytest.mark.parametrize(("name", "overrides"), [("mdaf", {}), ("mdaf-seq-only", {}), ("mamba4rec", {}),
                                                 ("mdaf", {"num_mamba_layers": 2})],
                         ids=["mdaf", "mdaf-seq-only", "mamba4rec", "mdaf-2-layers"])
def test_models_run_the_last_layer_on_one_position_per_row(name, overrides):
    model = tiny_model(name, **overrides)
    batch = make_batch([0, 3, 9])
    seen = {}
    for index, layer in enumerate(model.sequence.layers):
        for part in ("mamba.out_proj", "ffn.w1"):
            module = layer.get_submodule(part)
            module.register_forward_hook(
                lambda _m, args, _out, key=(index, part): seen.__setitem__(key, tuple(args[0].shape))
            )
    with backend.use("torch"):
        model(**batch)
    last = len(model.sequence.layers) - 1
    assert seen[(last, "mamba.out_proj")] == (3, model.sequence.layers[last].mamba.d_inner)
    assert seen[(last, "ffn.w1")] == (3, model.config.embed_dim)
    for index in range(last):  # earlier layers feed every position of the next one
        assert len(seen[(index, "mamba.out_proj")]) == 3


def test_encoder_last_only_equals_gather_last_of_full_states(seeded):
    encoder = SequenceEncoder(8, num_layers=2, d_state=4, d_conv=4, expand=2, ffn_mult=2, dropout=0.0)
    x = torch.randn(5, 7, 8, generator=seeded)
    lengths = torch.tensor([0, 1, 7, 3, 5])
    with backend.use("torch"):
        full = encoder(x)
        assert_close(encoder(x, lengths, last_only=True), gather_last(full, lengths), torch.float32)
        assert_close(encoder(x, last_only=True), full[:, -1], torch.float32, name="without lengths")
