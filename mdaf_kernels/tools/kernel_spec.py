"""How an op describes its kernels to the static compile report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_DTYPE_BYTES = {"fp64": 8, "fp32": 4, "i64": 8, "i32": 4, "bf16": 2, "fp16": 2, "i8": 1}


def tensor_bytes(dtype: str, *shape: int) -> int:
    """Bytes of a dense tensor of this Triton dtype name ("fp32", "bf16", ...) and shape."""
    size = _DTYPE_BYTES[dtype]
    for extent in shape:
        size *= extent
    return size


@dataclass(frozen=True)
class LaunchCost:
    """What one launch at the spec's shape has to do, for the static cost model (``cost_model``).

    ``shape`` names the shape (e.g. "B2048 D128 L50 N32"); ``programs`` is the grid size;
    ``io_bytes`` the bytes the op must read and write, each input and output once, with its dtype
    (the HBM floor); ``extra_bytes`` what this kernel must move to or from memory beyond that
    (partials, checkpoints, saved activations; re-reads that caches can serve are not counted);
    ``exp_count`` the exponentials the maths needs
    (the MUFU floor; zero when none is mandatory). ``loop_trips`` says how often each loop of the
    compiled code runs per program, in the SASS order of the loops (an outer loop before the loops
    inside it), counting every run of a body: an inner loop of 32 steps inside 2 outer steps is 64
    (the average over programs where they differ). Derive it from the shape and the constexprs, as
    the kernel's ``range`` bounds do.
    """

    shape: str
    programs: int
    io_bytes: int
    extra_bytes: int = 0
    exp_count: int = 0
    loop_trips: tuple[int, ...] = ()


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
    costs: tuple[LaunchCost, ...] = ()


def jit_spec(
    name: str,
    kernel: Any,
    *,
    pointers: dict[str, str],
    ints: dict[str, int],
    constexprs: dict[str, Any],
    num_warps: int,
    num_stages: int = 3,
    costs: tuple[LaunchCost, ...] = (),
    cost: LaunchCost | None = None,
) -> KernelSpec:
    """A KernelSpec specialised as a JIT launch with these argument values would be.

    ``pointers`` maps pointer arguments to their element type ("fp32", "bf16", ...; names the kernel
    does not take are ignored, so related kernels can share one map); torch
    allocations are 16-byte aligned, so they get the divisibility hint. ``ints`` gives the integer
    arguments' values: like the JIT, a value of 1 becomes a constexpr and a multiple of 16 gets the
    hint, except for the arguments the kernel lists in ``do_not_specialize``. Any other argument
    that is not a constexpr is an fp32 scalar (e.g. a LayerNorm eps). ``costs`` describe launches of
    this compiled kernel for the cost model (``compile_report --cost``): the MDAF shape and a larger
    one whose integer arguments specialise the same way (none equal to 1, the same ones multiples of
    16), so that one binary serves both; ``cost`` is short for ``costs=(cost,)`` (one launch).
    """
    # Interpreted kernels (TRITON_INTERPRET=1) carry no parameter metadata; they are never compiled.
    runtime_ints = {p.name for p in getattr(kernel, "params", ()) if p.do_not_specialize}
    signature: dict[str, str] = {}
    constants = dict(constexprs)
    divisible = []
    for arg in kernel.arg_names:
        if arg in constexprs:
            signature[arg] = "constexpr"
        elif arg in pointers:
            signature[arg] = f"*{pointers[arg]}"
            divisible.append(arg)
        elif arg in ints:
            if arg not in runtime_ints and ints[arg] == 1:
                signature[arg] = "constexpr"
                constants[arg] = 1
            else:
                signature[arg] = "i32"
                if arg not in runtime_ints and ints[arg] % 16 == 0:
                    divisible.append(arg)
        else:
            signature[arg] = "fp32"
    return KernelSpec(name=name, kernel=kernel, signature=signature, constexprs=constants,
                      divisible_by_16=tuple(divisible), num_warps=num_warps, num_stages=num_stages,
                      costs=(*costs, cost) if cost is not None else costs)
