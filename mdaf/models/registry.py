"""Models by name: the trainer and the command line build every model through here.

Each name maps to a model class and the paper's settings for it; keyword overrides replace any
configuration field. A model is rebuilt from what a result file saves:
``build_model(name, meta, **saved_config_dict)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from mdaf.models.autoint import AutoInt
from mdaf.models.bst import BST
from mdaf.models.config import ModelConfig
from mdaf.models.dcnv2 import DCNv2
from mdaf.models.mamba4rec import Mamba4Rec
from mdaf.models.mdaf import MDAF
from mdaf.schema import DatasetMeta


@dataclass(frozen=True)
class ModelSpec:
    model_class: type[nn.Module]
    description: str
    defaults: dict[str, object] = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {
    "mdaf": ModelSpec(MDAF, "MDAF: cross-network static branch + Mamba4Rec sequential branch, gated fusion"),
    "mdaf-concat": ModelSpec(MDAF, "MDAF ablation: concatenate the two branches instead of gating",
                             {"fusion": "concat"}),
    "mdaf-fixed-gate": ModelSpec(MDAF, "MDAF ablation: fixed gate g = 0.5",
                                 {"fusion": "fixed", "fixed_gate": 0.5}),
    "mdaf-attn-fusion": ModelSpec(MDAF, "MDAF ablation: attention fusion (sequence attends to static)",
                                  {"fusion": "attention"}),
    "mdaf-static-only": ModelSpec(MDAF, "MDAF ablation: static branch only (no sequential branch)",
                                  {"seq_branch": "none", "fusion": "none"}),
    "mdaf-seq-only": ModelSpec(MDAF, "MDAF ablation: sequential branch only, which reads no user and no "
                                     "target (mdaf-seq-target adds the target)",
                               {"static_branch": "none", "fusion": "none"}),
    "mdaf-seq-target": ModelSpec(MDAF, "MDAF variant (not the paper's): sequential branch only, reading the "
                                       "target after the history (seq_target=True), so it can rank a "
                                       "positive against its own negatives",
                                 {"static_branch": "none", "fusion": "none", "seq_target": True}),
    "mdaf-mlp-static": ModelSpec(MDAF, "MDAF ablation: plain MLP instead of the cross network",
                                 {"static_branch": "mlp"}),
    "bst": ModelSpec(BST, "BST: Transformer over history + target, MLP 1024-512-256"),
    "mamba4rec": ModelSpec(Mamba4Rec, "Mamba4Rec: Mamba over history + target item, no static features"),
    "dcnv2": ModelSpec(DCNv2, "DCN-V2 on user/item/category (cross='matrix' or 'mixture')"),
    "autoint": ModelSpec(AutoInt, "AutoInt: multi-head self-attention over the field embeddings"),
}


def list_models() -> list[str]:
    """The registered model names, in registration order."""
    return list(MODELS)


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(MODELS)}")
    return MODELS[name]


def model_config(name: str, meta: DatasetMeta, **overrides) -> ModelConfig:
    """The configuration of model ``name``: the paper's defaults with ``overrides`` applied."""
    spec = _spec(name)
    if not isinstance(meta, DatasetMeta):
        raise TypeError(f"meta: expected a mdaf.schema.DatasetMeta, got {type(meta).__name__}")
    config_class = spec.model_class.config_class
    valid = config_class.field_names()
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise TypeError(f"{name}: unknown setting(s) {unknown}; valid settings: {', '.join(valid)}")
    return config_class(**{**spec.defaults, **overrides})


def build_model(name: str, meta: DatasetMeta, **overrides) -> nn.Module:
    """Build model ``name`` for the vocabularies of ``meta``; ``overrides`` replace config fields."""
    model = _spec(name).model_class(meta, model_config(name, meta, **overrides))
    model.name = name
    return model


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Trainable parameter counts per group (MDAF: embeddings, static, sequential, gate, head) and total.

    Groups come from the model class's ``param_groups`` (group -> top-level submodule names);
    a parameter outside every group is an error, so the groups always add up to the total.
    """
    groups: dict[str, tuple[str, ...]] = getattr(model, "param_groups", None) or {}
    owner = {child: group for group, children in groups.items() for child in children}
    counts = dict.fromkeys(groups, 0)
    for param_name, param in model.named_parameters():
        top = param_name.split(".", 1)[0]
        if top not in owner:
            raise ValueError(
                f"parameter {param_name!r} of {type(model).__name__} belongs to no group of {groups}"
            )
        counts[owner[top]] += param.numel()
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
