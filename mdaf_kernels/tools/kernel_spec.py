"""How an op describes its kernels to the static compile report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class KernelSpec:
    """One Triton kernel specialised as it would launch at a representative (MDAF) shape.

    ``signature`` maps every kernel argument to its Triton type ("*fp32", "*bf16", "i32", "i64",
    "fp32", or "constexpr"); ``constexprs`` gives the value of each constexpr argument, including
    the autotuned ones (take the config the op would use at that shape).
    """

    name: str
    kernel: Any
    signature: dict[str, str]
    constexprs: dict[str, Any] = field(default_factory=dict)
    num_warps: int = 4
    num_stages: int = 3
