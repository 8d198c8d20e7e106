"""How an op describes its kernels to the static compile report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class KernelSpec:
    """One Triton kernel specialised as it would launch at a representative (MDAF) shape.

    ``signature`` maps every kernel argument to its Triton type ("*fp32", "*bf16", "i32", "i64",
    "fp32", or "constexpr"); ``constexprs`` gives the value of each constexpr argument, including
    the autotuned ones (take the config the op would use at that shape). ``divisible_by_16`` names
    the arguments a real launch would mark as multiples of 16 (the JIT does so for 16-byte aligned
    pointers and integer values divisible by 16; it also turns integer arguments equal to 1 into
    constexprs), so that the report sees the same vectorisation as a launch at that shape.
    """

    name: str
    kernel: Any
    signature: dict[str, str]
    constexprs: dict[str, Any] = field(default_factory=dict)
    num_warps: int = 4
    num_stages: int = 3
    divisible_by_16: tuple[str, ...] = ()
