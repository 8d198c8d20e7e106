"""MDAF itself: the gate's direction and range, the scan, padding, and what each ablation switch does."""

from __future__ import annotations

import pytest
import torch

from mdaf.models.layers import MLP
from tests.mdaf.models.helpers import META, make_batch, tiny_model

LENGTHS = [0, 1, 4, 9, 9, 2]


def _saturate_gate(model, logit: float) -> None:
    """Make the gate's output layer a constant ``sigmoid(logit)``."""
    with torch.no_grad():
        model.fusion.out.weight.zero_()
        model.fusion.out.bias.fill_(logit)


def test_gate_is_a_probability_per_sample():
    model = tiny_model("mdaf").eval()
    logits, gate = model(**make_batch(LENGTHS), return_gate=True)
    assert logits.shape == gate.shape == (len(LENGTHS),)
    assert logits.dtype == torch.float32
    assert ((gate > 0) & (gate < 1)).all()


def test_gate_one_gives_exactly_the_sequential_representation():
    """g -> 1 selects h_seq (the gate is not reversed: a reversed gate would give h_static here)."""
    model = tiny_model("mdaf").eval()
    batch = make_batch(LENGTHS)
    _saturate_gate(model, 100.0)
    rep = model.encode(**batch)
    assert torch.equal(rep.gate, torch.ones_like(rep.gate))
    assert torch.equal(rep.h, rep.h_seq)
    assert not torch.allclose(rep.h_static, rep.h_seq)
    logits, gate = model(**batch, return_gate=True)
    torch.testing.assert_close(logits, model.head(rep.h_seq).squeeze(-1), rtol=0, atol=0)
    assert torch.equal(gate, rep.gate)


def test_gate_zero_gives_the_static_representation():
    model = tiny_model("mdaf").eval()
    _saturate_gate(model, -200.0)
    rep = model.encode(**make_batch(LENGTHS))
    assert torch.equal(rep.gate, torch.zeros_like(rep.gate))
    assert torch.equal(rep.h, rep.h_static)


def test_gate_mixes_as_one_minus_g_static_plus_g_sequential():
    model = tiny_model("mdaf").eval()
    rep = model.encode(**make_batch(LENGTHS))
    g = rep.gate.unsqueeze(1)
    torch.testing.assert_close(rep.h, (1 - g) * rep.h_static + g * rep.h_seq)


@pytest.mark.parametrize("name", ["mdaf", "mdaf-seq-only"])
def test_sequential_branch_depends_on_the_order_of_the_history(name):
    """Reversing the valid history keeps its mean (and any pooling) but must change h_seq: a scan."""
    model = tiny_model(name).eval()
    batch = make_batch([5, 9, 3])
    reversed_batch = dict(batch)
    for key in ("hist_items", "hist_cats"):
        rows = batch[key].clone()
        for r, n in enumerate(batch["hist_len"].tolist()):
            rows[r, :n] = rows[r, :n].flip(0)
        reversed_batch[key] = rows
    h_seq = model.encode(**batch).h_seq
    h_rev = model.encode(**reversed_batch).h_seq
    assert torch.linalg.vector_norm(h_seq - h_rev, dim=1).min() > 1e-4
    assert not torch.allclose(model(**batch), model(**reversed_batch))


def test_sequential_state_reads_the_oldest_element():
    model = tiny_model("mdaf").eval()
    batch = make_batch([4, 4])
    changed = dict(batch, hist_items=batch["hist_items"].clone())
    changed["hist_items"][:, 0] = batch["hist_items"][:, 0] % (META.num_items - 1) + 1
    assert (model.encode(**batch).h_seq - model.encode(**changed).h_seq).abs().amax(dim=1).min() > 1e-5


def test_sequential_representation_is_the_state_at_the_last_valid_position():
    model = tiny_model("mdaf").eval()
    batch = make_batch([3, 7, 9])
    states = model.sequence(model.embeddings.history(batch["hist_items"], batch["hist_cats"]))
    expected = states[torch.arange(3), batch["hist_len"] - 1]
    torch.testing.assert_close(model.encode(**batch).h_seq, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["mdaf", "mdaf-seq-only", "mdaf-attn-fusion"])
def test_empty_histories_give_a_zero_sequential_vector_and_finite_gradients(name):
    model = tiny_model(name)
    batch = make_batch([0, 0, 0])
    rep = model.encode(**batch)
    assert torch.equal(rep.h_seq, torch.zeros_like(rep.h_seq))
    logits = model(**batch)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_padding_is_on_the_right_and_inert():
    """Adding more right padding (a longer L) changes nothing; the valid prefix is what counts."""
    model = tiny_model("mdaf").eval()
    short = make_batch([0, 2, 5], seq_len=5)
    long = dict(short)
    for key in ("hist_items", "hist_cats"):
        long[key] = torch.cat([short[key], torch.zeros(3, 4, dtype=torch.int64)], dim=1)
    torch.testing.assert_close(model(**long), model(**short), rtol=1e-6, atol=1e-6)


def test_left_padded_histories_are_refused():
    model = tiny_model("mdaf")
    batch = make_batch([3, 9])
    left = dict(batch)
    for key in ("hist_items", "hist_cats"):
        left[key] = batch[key].clone()
        left[key][0] = torch.roll(batch[key][0], shifts=META.max_len - 3)  # ids moved to the end
    with pytest.raises(ValueError, match="hist_items: histories must be right-padded.*row 0 has hist_len=3"):
        model(**left)


def test_concat_fusion_feeds_both_branches_to_the_head_without_a_gate():
    model = tiny_model("mdaf-concat").eval()
    batch = make_batch(LENGTHS)
    rep = model.encode(**batch)
    assert torch.equal(rep.h, torch.cat([rep.h_static, rep.h_seq], dim=1))
    assert model.head[0].in_features == 2 * model.config.embed_dim
    logits, gate = model(**batch, return_gate=True)
    assert gate is None and logits.shape == (len(LENGTHS),)


def test_fixed_gate_weighs_both_branches_by_the_constant():
    model = tiny_model("mdaf-fixed-gate", fixed_gate=0.25).eval()
    rep = model.encode(**make_batch(LENGTHS))
    assert torch.equal(rep.gate, torch.full_like(rep.gate, 0.25))
    torch.testing.assert_close(rep.h, 0.75 * rep.h_static + 0.25 * rep.h_seq)
    assert not any("fusion" in n for n, _ in model.named_parameters())


def test_attention_fusion_is_a_softmax_mix_driven_by_the_sequence_query():
    model = tiny_model("mdaf-attn-fusion").eval()
    batch = make_batch(LENGTHS)
    rep = model.encode(**batch)
    assert ((rep.gate > 0) & (rep.gate < 1)).all()
    g = rep.gate.unsqueeze(1)
    torch.testing.assert_close(rep.h, (1 - g) * rep.h_static + g * rep.h_seq)
    # the weights follow the scaled dot products of the sequence's query with both keys
    fusion = model.fusion
    q = fusion.query(rep.h_seq)
    scores = torch.stack([(q * fusion.key(rep.h_static)).sum(1), (q * fusion.key(rep.h_seq)).sum(1)], 1)
    torch.testing.assert_close(rep.gate, torch.softmax(scores * fusion.scale, 1)[:, 1])


def test_static_only_ignores_the_history():
    model = tiny_model("mdaf-static-only").eval()
    assert model.sequence is None
    batch = make_batch([2, 5, 9])
    other_history = make_batch([7, 0, 1], generator=torch.Generator().manual_seed(9))
    other = dict(batch, **{k: v for k, v in other_history.items() if k.startswith("hist")})
    rep = model.encode(**batch)
    assert rep.h_seq is None and rep.gate is None and torch.equal(rep.h, rep.h_static)
    torch.testing.assert_close(model(**other), model(**batch), rtol=0, atol=0)


def test_seq_only_ignores_user_item_and_category():
    model = tiny_model("mdaf-seq-only").eval()
    assert model.static is None and model.embeddings.user is None
    batch = make_batch([2, 5, 9])
    other = dict(batch, user=batch["user"] % 5 + 1, item=batch["item"] % 3 + 1,
                 category=batch["category"] % 2 + 1)
    rep = model.encode(**batch)
    assert rep.h_static is None and rep.gate is None and torch.equal(rep.h, rep.h_seq)
    torch.testing.assert_close(model(**other), model(**batch), rtol=0, atol=0)


def test_seq_target_variant_ranks_candidates_of_one_history():
    # a positive and its negatives share user, time and history: only a target-aware branch can rank them
    model = tiny_model("mdaf-seq-target").eval()
    assert model.static is None and model.config.seq_target
    batch = make_batch([2, 5, 9])
    other = dict(batch, item=batch["item"] % (META.num_items - 1) + 1)
    assert (model(**other) - model(**batch)).abs().min() > 1e-6
    blind = tiny_model("mdaf-seq-only").eval()
    torch.testing.assert_close(blind(**other), blind(**batch), rtol=0, atol=0)


def test_mlp_static_branch_is_a_plain_mlp():
    model = tiny_model("mdaf-mlp-static", static_mlp_hidden=(16, 12))
    assert type(model.static) is MLP
    widths = [m.out_features for m in model.static if isinstance(m, torch.nn.Linear)]
    assert widths == [16, 12, model.config.embed_dim]
    assert type(tiny_model("mdaf").static).__name__ == "StaticBranch"


@pytest.mark.parametrize("formula", ["mdaf", "dcnv3"])
def test_cross_formula_reaches_both_cross_stacks(formula):
    model = tiny_model("mdaf", cross_formula=formula)
    assert (model.static.lcn.kind, model.static.ecn.kind) == ("lcn", "ecn")
    assert model.static.lcn.formula == model.static.ecn.formula == formula
    assert (model.static.lcn.num_layers, model.static.ecn.num_layers) == (2, 2)
    assert torch.isfinite(model(**make_batch(LENGTHS))).all()


def test_branches_run_on_the_kernel_layer_modules():
    import mdaf_kernels.nn as knn

    model = tiny_model("mdaf")
    assert isinstance(model.static, knn.StaticBranch)
    assert all(isinstance(layer.mamba, knn.Mamba) for layer in model.sequence.layers)
    assert isinstance(tiny_model("mamba4rec").sequence.layers[0].mamba, knn.Mamba)


@pytest.mark.parametrize("name", ["mdaf", "mdaf-seq-only"])
def test_seq_target_switch_appends_the_target_after_the_history(name):
    model = tiny_model(name, seq_target=True).eval()
    batch = make_batch([0, 3, 9])
    emb = model.embeddings
    target = emb.target(batch["item"], batch["category"])
    seq = torch.cat([emb.history(batch["hist_items"], batch["hist_cats"]), torch.zeros(3, 1, 8)], dim=1)
    seq[torch.arange(3), batch["hist_len"]] = target
    states = model.sequence(seq)
    h_seq = model.encode(**batch).h_seq
    # the model reads the encoder through its last-position path, the same function computed in another
    # order: equal within fp32 rounding, not bit for bit
    torch.testing.assert_close(h_seq, states[torch.arange(3), batch["hist_len"]])
    other_target = dict(batch, item=batch["item"] % (META.num_items - 1) + 1)
    assert (model.encode(**other_target).h_seq - h_seq).abs().amax(dim=1).min() > 1e-5
    # without the switch (the paper's branch) the target does not reach h_seq
    plain = tiny_model(name).eval()
    assert torch.equal(plain.encode(**other_target).h_seq, plain.encode(**batch).h_seq)
