"""Thin ``nn.Module`` layers over the ops; they never branch on device (the ops ask ``backend``)."""

from __future__ import annotations

import importlib

_LAZY = {
    "CausalConv1d": "mdaf_kernels.nn.causal_conv1d",
    "Mamba": "mdaf_kernels.nn.mamba",
    "CrossNetwork": "mdaf_kernels.nn.cross_network",
    "StaticBranch": "mdaf_kernels.nn.cross_network",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'mdaf_kernels.nn' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
