"""What each baseline reads, and how: BST, Mamba4Rec, DCN-V2, AutoInt."""

from __future__ import annotations

import pytest
import torch

from mdaf.models.dcnv2 import MatrixCross, MixtureCross
from mdaf.models.inputs import append_target
from tests.mdaf.models.helpers import META, make_batch, tiny_model


def _reverse_history(batch):
    out = dict(batch)
    for key in ("hist_items", "hist_cats"):
        rows = batch[key].clone()
        for r, n in enumerate(batch["hist_len"].tolist()):
            rows[r, :n] = rows[r, :n].flip(0)
        out[key] = rows
    return out


def _extend_padding(batch, extra):
    out = dict(batch)
    for key in ("hist_items", "hist_cats"):
        out[key] = torch.cat([batch[key], torch.zeros(batch[key].shape[0], extra, dtype=torch.int64)], dim=1)
    return out


@pytest.mark.parametrize("name", ["bst", "mamba4rec"])
def test_sequence_baselines_depend_on_history_order_and_on_the_target(name):
    model = tiny_model(name).eval()
    batch = make_batch([4, 9, 6])
    logits = model(**batch)
    assert (model(**_reverse_history(batch)) - logits).abs().min() > 1e-6
    other_target = dict(batch, item=batch["item"] % (META.num_items - 1) + 1)
    assert (model(**other_target) - logits).abs().min() > 1e-6


@pytest.mark.parametrize("name", ["bst", "mamba4rec", "autoint", "dcnv2"])
def test_extra_right_padding_changes_nothing(name):
    model = tiny_model(name).eval()
    short = make_batch([0, 2, 5], seq_len=5)
    torch.testing.assert_close(model(**_extend_padding(short, 4)), model(**short), rtol=1e-6, atol=1e-6)


def test_mamba4rec_reads_the_state_at_the_target_written_after_the_history():
    model = tiny_model("mamba4rec").eval()
    batch = make_batch([0, 3, 9])
    emb = model.embeddings
    seq = append_target(emb.history(batch["hist_items"], batch["hist_cats"]),
                        emb.target(batch["item"], batch["category"]), batch["hist_len"])
    for row, n in enumerate(batch["hist_len"].tolist()):
        torch.testing.assert_close(seq[row, n], emb.target(batch["item"], batch["category"])[row])
        assert torch.equal(seq[row, n + 1:], torch.zeros_like(seq[row, n + 1:]))
    states = model.sequence(seq)
    expected = model.head(states[torch.arange(3), batch["hist_len"]]).squeeze(-1)
    torch.testing.assert_close(model(**batch), expected, rtol=0, atol=0)
    assert model.embeddings.user is None


def test_bst_head_is_configurable_and_reads_every_position():
    model = tiny_model("bst", mlp_hidden=(24, 12, 6), num_blocks=2)
    linears = [m for m in model.mlp if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [24, 12, 6, 1]
    assert linears[0].in_features == (META.max_len + 1) * 8 + 3 * 8
    assert len(model.blocks) == 2


def test_dcnv2_reads_no_history():
    model = tiny_model("dcnv2").eval()
    batch = make_batch([3, 9, 0])
    other = dict(batch, **{k: v for k, v in make_batch([1, 0, 7]).items() if k.startswith("hist")})
    torch.testing.assert_close(model(**other), model(**batch), rtol=0, atol=0)


@pytest.mark.parametrize(("cross", "module"), [("matrix", MatrixCross), ("mixture", MixtureCross)])
@pytest.mark.parametrize("structure", ["parallel", "stacked"])
def test_dcnv2_cross_kinds_and_structures(cross, module, structure):
    model = tiny_model("dcnv2", cross=cross, structure=structure, num_experts=3)
    assert type(model.cross) is module
    width = 3 * 8
    assert model.head.in_features == (16 + width if structure == "parallel" else 16)
    if cross == "mixture":
        assert model.cross.v.shape == (3, 3, width, 4)  # layers, experts, width, rank
    logits = model(**make_batch([2, 0]))
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_matrix_cross_layer_formula():
    cross = MatrixCross(5, 1)
    x0 = torch.randn(3, 5)
    torch.testing.assert_close(cross(x0), x0 * cross.layers[0](x0) + x0)


def test_autoint_history_field_is_the_mean_of_the_valid_elements():
    model = tiny_model("autoint").eval()
    batch = make_batch([4, 9, 0])
    logits = model(**batch)
    # a mean ignores the order but not the content
    torch.testing.assert_close(model(**_reverse_history(batch)), logits, rtol=1e-5, atol=1e-6)
    changed = dict(batch, hist_items=batch["hist_items"].clone())
    changed["hist_items"][:2, 0] = batch["hist_items"][:2, 0] % (META.num_items - 1) + 1
    assert (model(**changed)[:2] - logits[:2]).abs().min() > 1e-7
    assert len(model.attention) == 3 and model.dnn is None
    assert tiny_model("autoint", dnn_hidden=(16,)).dnn is not None
