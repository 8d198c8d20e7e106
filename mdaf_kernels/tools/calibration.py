"""Two kernels whose cost is known, to calibrate the static cost model (``compile_report --cost``).

- ``calibration_copy``: y = x, 128-bit loads and stores, no arithmetic: it must land on the HBM floor.
- ``calibration_exp2``: x -> exp2(x) repeated ``n_rep`` times in a runtime loop, then stored: every
  exp2 is one MUFU.EX2 and the loop's other instructions are few, so it must land on the MUFU floor
  (which also checks that the loop's body is weighted by its trip count).

The launch has ``CALIBRATION_PROGRAMS`` programs, a multiple of both the H100's 132 and the A100's
108 SMs, so that no partial wave moves the bound off the floor.

    python -m mdaf_kernels.tools.compile_report --ops mdaf_kernels.tools.calibration --cost
"""

from __future__ import annotations

import triton
import triton.language as tl

from mdaf_kernels.tools.kernel_spec import KernelSpec, LaunchCost, jit_spec, tensor_bytes

CALIBRATION_PROGRAMS = 1188  # lcm(132, 108)
BLOCK = 4096  # 32 fp32 elements per thread at 4 warps: the exp2 loop body is 32 MUFU.EX2 (not unrolled)
NUM_WARPS = 4
EXP2_REPEATS = 64


@triton.jit
def _copy_kernel(x_ptr, y_ptr, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + o, tl.load(x_ptr + o))


@triton.jit
def _exp2_kernel(x_ptr, y_ptr, n_rep, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    b_x = tl.load(x_ptr + o)
    for _ in range(n_rep):
        b_x = tl.exp2(b_x)
    tl.store(y_ptr + o, b_x)


def compile_specs() -> list[KernelSpec]:
    n = CALIBRATION_PROGRAMS * BLOCK
    shape = f"n {n}"
    io = 2 * tensor_bytes("fp32", n)
    pointers = {"x_ptr": "fp32", "y_ptr": "fp32"}
    return [
        jit_spec("calibration_copy", _copy_kernel, pointers=pointers, ints={}, constexprs={"BLOCK": BLOCK},
                 num_warps=NUM_WARPS, costs=(LaunchCost(shape, programs=CALIBRATION_PROGRAMS, io_bytes=io),)),
        jit_spec("calibration_exp2", _exp2_kernel, pointers=pointers, ints={"n_rep": EXP2_REPEATS},
                 constexprs={"BLOCK": BLOCK}, num_warps=NUM_WARPS,
                 costs=(LaunchCost(f"{shape} x{EXP2_REPEATS} exp2", programs=CALIBRATION_PROGRAMS,
                                   io_bytes=io, exp_count=n * EXP2_REPEATS, loop_trips=(EXP2_REPEATS,)),)),
    ]
