"""The registry: names, the paper's defaults, overrides, rebuilding from a saved config, breakdowns."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mdaf.models import MDAF, build_model, list_models, model_config, parameter_breakdown
from tests.mdaf.models.helpers import META, make_batch, tiny_model, tiny_overrides

EXPECTED = ["mdaf", "bst", "mamba4rec", "dcnv2", "autoint", "mdaf-concat", "mdaf-fixed-gate",
            "mdaf-static-only", "mdaf-seq-only", "mdaf-seq-target", "mdaf-mlp-static", "mdaf-attn-fusion"]


def test_every_model_of_the_paper_is_registered():
    assert sorted(list_models()) == sorted(EXPECTED)


def test_mdaf_defaults_are_the_papers_configuration():
    config = model_config("mdaf", META)
    assert (config.embed_dim, config.dropout) == (64, 0.15)
    assert (config.static_branch, config.num_lcn, config.num_ecn) == ("cross", 2, 2)
    assert config.cross_formula == "mdaf"
    assert (config.seq_branch, config.num_mamba_layers, config.expand, config.d_state, config.d_conv) == (
        "mamba", 1, 2, 32, 4)
    assert (config.ffn_mult, config.fusion) == (4, "gate")


@pytest.mark.parametrize(("name", "field", "value"), [
    ("mdaf-concat", "fusion", "concat"),
    ("mdaf-fixed-gate", "fusion", "fixed"),
    ("mdaf-attn-fusion", "fusion", "attention"),
    ("mdaf-static-only", "seq_branch", "none"),
    ("mdaf-seq-only", "static_branch", "none"),
    ("mdaf-seq-target", "seq_target", True),
    ("mdaf-mlp-static", "static_branch", "mlp"),
])
def test_ablations_are_configurations_of_the_one_mdaf_class(name, field, value):
    model = tiny_model(name)
    assert type(model) is MDAF
    assert getattr(model.config, field) == value
    assert model.name == name


def test_baseline_defaults():
    assert model_config("bst", META).mlp_hidden == (1024, 512, 256)
    assert model_config("dcnv2", META).cross == "matrix"
    assert model_config("dcnv2", META, cross="mixture").cross == "mixture"
    assert model_config("mamba4rec", META).d_state == 32
    for name in list_models():
        assert model_config(name, META).embed_dim == 64, name


def test_unknown_name_lists_the_registered_models():
    with pytest.raises(KeyError, match="registered models: .*mdaf.*autoint"):
        build_model("mdaf-v2", META)


def test_unknown_override_lists_the_valid_settings():
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['hidden_size'\].*embed_dim"):
        build_model("bst", META, hidden_size=3)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"fusion": "sum"}, "fusion: expected one of"),
    ({"static_branch": "none"}, "fusion='gate' needs both branches"),
    ({"static_branch": "none", "seq_branch": "none", "fusion": "none"}, "both 'none'"),
    ({"fusion": "none"}, "fusion='none' needs a single branch"),
    ({"embed_dim": 0}, "embed_dim: expected a positive integer"),
    ({"dropout": 1.0}, "dropout: expected a value in"),
    ({"fixed_gate": 1.5}, "fixed_gate"),
    ({"cross_formula": "dcnv2"}, "cross_formula: expected one of"),
])
def test_bad_settings_are_refused_with_the_field_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        model_config("mdaf", META, **overrides)


def test_meta_must_be_a_dataset_meta():
    with pytest.raises(TypeError, match="meta: expected a mdaf.schema.DatasetMeta"):
        model_config("mdaf", {"num_users": 3})


@pytest.mark.parametrize("name", EXPECTED)
def test_model_rebuilds_from_its_saved_name_meta_and_config(name):
    torch.manual_seed(0)
    model = tiny_model(name).eval()
    saved = json.loads(json.dumps({"name": model.name, "config": dataclasses.asdict(model.config)}))
    rebuilt = build_model(saved["name"], META, **saved["config"]).eval()
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())
    batch = make_batch([0, 3, 9])
    torch.testing.assert_close(rebuilt(**batch), model(**batch), rtol=0, atol=0)


@pytest.mark.parametrize("name", EXPECTED)
def test_parameter_breakdown_adds_up(name):
    model = tiny_model(name)
    counts = parameter_breakdown(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert sum(v for k, v in counts.items() if k != "total") == counts["total"]
    assert counts["embeddings"] > 0 and counts["head"] > 0


def test_mdaf_breakdown_has_the_papers_groups():
    counts = parameter_breakdown(build_model("mdaf", META))
    assert list(counts) == ["embeddings", "static", "sequential", "gate", "head", "total"]
    dim = 64
    assert counts["embeddings"] == (META.num_users + META.num_items + META.num_categories) * dim
    assert counts["gate"] == (2 * dim * dim + dim) + (dim + 1)  # 2D -> D -> 1
    assert counts["head"] == (dim * dim + dim) + (dim + 1)  # D -> D -> 1
    assert counts["sequential"] > 0 and counts["static"] > 0


def test_mdaf_paper_size_overrides_reach_the_modules():
    model = build_model("mdaf", META, **tiny_overrides("mdaf", embed_dim=16, d_state=8, num_mamba_layers=2))
    assert model.embeddings.item.embedding_dim == 16
    assert len(model.sequence.layers) == 2
    assert model.sequence.layers[0].mamba.A_log.shape[-1] == 8
