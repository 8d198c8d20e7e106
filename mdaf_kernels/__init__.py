"""mdaf-kernels: fused Triton kernels for CTR models, with PyTorch references as the CPU path.

Public API (loaded on first use, so ``import mdaf_kernels`` stays cheap and touches no GPU):

- ``causal_conv1d_fn``: causal depthwise Conv1d (+ SiLU), the ``causal_conv1d`` package's signature
- ``selective_scan_fn``: Mamba-1 selective scan, ``mamba_ssm``'s signature
- ``cross_layer``: one fused DCN cross layer (MDAF and DCNv3 formulas)
- ``nn``: modules over the ops (``CausalConv1d``, ``Mamba``, ``CrossNetwork``, ``StaticBranch``)
- ``backend``: how an op chooses between Triton and the reference
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "causal_conv1d_fn": "mdaf_kernels.ops.causal_conv1d",
    "selective_scan_fn": "mdaf_kernels.ops.selective_scan",
    "cross_layer": "mdaf_kernels.ops.cross_layer",
    "cross_stack": "mdaf_kernels.ops.cross_layer",
}
_SUBMODULES = ("backend", "nn", "ops", "reference", "tools")

__all__ = [*_LAZY, *_SUBMODULES]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"mdaf_kernels.{name}")
    else:
        raise AttributeError(f"module 'mdaf_kernels' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
