"""MDAF, its ablations and the baselines of the paper, picked by name through the registry.

>>> from mdaf.models import build_model, list_models
>>> model = build_model("mdaf", meta)                       # the paper's configuration
>>> small = build_model("bst", meta, embed_dim=16, mlp_hidden=(64, 32))
>>> logits, gate = model(**features, return_gate=True)      # features: mdaf.schema.FEATURE_KEYS
"""

from mdaf.models.autoint import AutoInt, AutoIntConfig
from mdaf.models.bst import BST, BSTConfig
from mdaf.models.config import ModelConfig
from mdaf.models.dcnv2 import DCNv2, DCNv2Config
from mdaf.models.mamba4rec import Mamba4Rec, Mamba4RecConfig
from mdaf.models.mdaf import MDAF, MDAFConfig, Representations
from mdaf.models.registry import MODELS, build_model, list_models, model_config, parameter_breakdown

__all__ = [
    "MDAF", "MDAFConfig", "Representations", "BST", "BSTConfig", "Mamba4Rec", "Mamba4RecConfig",
    "DCNv2", "DCNv2Config", "AutoInt", "AutoIntConfig", "ModelConfig", "MODELS",
    "build_model", "list_models", "model_config", "parameter_breakdown",
]
