"""Static cost model: lower-bound kernel times on H100 and A100 from the SASS, without a GPU.

For one kernel compiled for one target (sm_90 is costed on an H100 SXM, sm_80 on an A100 80GB) it
takes the SASS, the resource usage (registers, shared memory, warps) and the launch's
``LaunchCost`` (grid, bytes, mandatory exponentials, loop trip counts) and gives three lower bounds:

- issue: the busiest SM runs ``ceil(programs / SMs)`` programs; it issues at most 4 warp
  instructions per clock (4 schedulers), and a warp issues at most one per clock, in at least
  ``ceil(programs on it / resident programs)`` rounds;
- MUFU: the special-function units evaluate 16 results per clock per SM (exp2, log2, rcp, rsqrt, ...);
- HBM: the bytes the launch moves (its inputs and outputs plus what this kernel adds: partials,
  checkpoints, re-reads) over the memory bandwidth.

The binding bound is the largest of the three. The physical floor is what any kernel for the same
op must pay: ``max(inputs and outputs / bandwidth, mandatory exponentials / MUFU rate)``; the ratio
bound / floor says how far the compiled code is from it. Latency, stalls, caches, dual issue and
instruction mix are not modelled: a bound is not a timing. See benchmarks/README.md ("Static cost
model") for the method, its sources and its limits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from mdaf_kernels.tools.kernel_spec import LaunchCost
from mdaf_kernels.tools.sass import Counts, find_loops, parse_instructions, straight_line

WARP_SIZE = 32


@dataclass(frozen=True)
class Gpu:
    """The figures the model needs of one card (sources in benchmarks/README.md)."""

    name: str
    sms: int
    clock_hz: float
    hbm_bytes_per_s: float
    shared_bytes_per_sm: int
    issue_per_clock: int = 4  # warp instructions per clock per SM: 4 schedulers, 1 each
    mufu_per_clock: int = 16  # MUFU results (one thread's exp2, ...) per clock per SM
    registers_per_sm: int = 65536
    register_partitions: int = 4  # the register file is split between the 4 schedulers
    register_granularity: int = 256  # registers are allocated per warp in units of 256
    max_warps_per_sm: int = 64
    max_programs_per_sm: int = 32
    shared_granularity: int = 128
    shared_reserved_per_program: int = 1024  # the CUDA runtime's reservation per block


H100_SXM = Gpu("H100 SXM", sms=132, clock_hz=1.755e9, hbm_bytes_per_s=3.35e12, shared_bytes_per_sm=228 * 1024)
A100_80GB = Gpu("A100 80GB", sms=108, clock_hz=1.41e9, hbm_bytes_per_s=2.0e12, shared_bytes_per_sm=164 * 1024)
# The card each compile target is costed on.
GPU_FOR_TARGET = {"sm_90": H100_SXM, "sm_80": A100_80GB}


class CostModelError(ValueError):
    """The SASS and the launch description do not fit together (e.g. a loop without a trip count)."""


def resident_programs(gpu: Gpu, registers: int, shared_bytes: int, num_warps: int) -> int:
    """Programs (CTAs) resident per SM: the smallest of the warp, program, register and shared
    memory limits, computed as CUDA's ``cuda_occupancy.h`` does (registers per warp rounded up to
    256 and allocated within each of the 4 register partitions; shared memory plus the runtime's
    1 KiB per program, rounded up to 128 bytes)."""
    by_warps = gpu.max_warps_per_sm // num_warps
    granularity = gpu.register_granularity
    registers_per_warp = math.ceil(registers * WARP_SIZE / granularity) * granularity
    warps_per_partition = gpu.registers_per_sm // gpu.register_partitions // max(registers_per_warp, 1)
    by_registers = warps_per_partition * gpu.register_partitions // num_warps
    shared = math.ceil((shared_bytes + gpu.shared_reserved_per_program) / gpu.shared_granularity) \
        * gpu.shared_granularity
    by_shared = gpu.shared_bytes_per_sm // shared
    return min(by_warps, gpu.max_programs_per_sm, by_registers, by_shared)


@dataclass(frozen=True)
class LoopProfile:
    """The dynamic counts of one thread over a launch, and its hot loop's counts per iteration."""

    dynamic: Counts
    hot_loop: Counts  # the body (own instructions) of the loop that issues the most (or the kernel)
    hot_loop_trips: int
    hot_loop_conditional: int  # of the hot loop's instructions, those a forward branch can skip
    loops: int


def profile(sass_text: str, loop_trips: tuple[int, ...]) -> LoopProfile:
    """Dynamic per-thread counts: the straight-line code once, each loop's own body times its trips.

    ``loop_trips`` gives, for every loop in SASS order, how often its body runs per program
    (see ``LaunchCost``). A mismatch in the number of loops is an error: the compiler changed the
    loop structure (e.g. unrolled a loop into a main loop and a remainder) and the trip counts no
    longer say which body runs how often.
    """
    instructions = parse_instructions(sass_text)
    if not instructions:
        raise CostModelError("no SASS instructions found")
    loops = find_loops(instructions)
    if len(loops) != len(loop_trips):
        heads = ", ".join(f"{loop.head:#x}-{loop.end:#x} (depth {loop.depth})" for loop in loops) or "none"
        raise CostModelError(f"the SASS has {len(loops)} loop(s) [{heads}] but LaunchCost.loop_trips gives "
                             f"{len(loop_trips)}: {loop_trips}")
    dynamic = straight_line(instructions, loops)
    # Without loops the whole kernel is the "loop body", run once.
    hot: tuple[float, Counts, int, int] = (-1.0, dynamic, 1, 0)
    for loop, trips in zip(loops, loop_trips, strict=True):
        dynamic = dynamic + loop.own.scaled(trips)
        weight = loop.own.instructions * trips
        if weight > hot[0]:
            hot = (weight, loop.own, trips, loop.conditional)
    _, hot_loop, hot_trips, conditional = hot
    return LoopProfile(dynamic, hot_loop, hot_trips, conditional, len(loops))


@dataclass(frozen=True)
class Bounds:
    """Lower bounds for one launch on one GPU, in seconds, and what sets them."""

    gpu: str
    resident: int  # programs per SM
    waves: float  # programs / (SMs x resident): below 1, part of the GPU idles
    issue_s: float
    mufu_s: float
    hbm_s: float
    hbm_floor_s: float
    mufu_floor_s: float

    @property
    def bound_s(self) -> float:
        return max(self.issue_s, self.mufu_s, self.hbm_s)

    @property
    def binding(self) -> str:
        return max((self.issue_s, "issue"), (self.mufu_s, "MUFU"), (self.hbm_s, "HBM"))[1]

    @property
    def floor_s(self) -> float:
        return max(self.hbm_floor_s, self.mufu_floor_s)

    @property
    def floor_kind(self) -> str:
        return "MUFU" if self.mufu_floor_s > self.hbm_floor_s else "HBM"

    @property
    def ratio(self) -> float:
        return self.bound_s / self.floor_s if self.floor_s > 0 else math.inf


def bounds(gpu: Gpu, dynamic: Counts, cost: LaunchCost, *, registers: int, shared_bytes: int,
           num_warps: int) -> Bounds:
    """The three lower bounds of a launch whose every thread issues ``dynamic`` (see the module doc)."""
    resident = resident_programs(gpu, registers, shared_bytes, num_warps)
    if resident < 1:
        raise CostModelError(f"no program fits on an SM of the {gpu.name} ({registers} registers, "
                             f"{shared_bytes} B shared memory, {num_warps} warps)")
    per_sm = math.ceil(cost.programs / gpu.sms)
    rounds = math.ceil(per_sm / resident)
    issue_cycles = max(per_sm * num_warps * dynamic.instructions / gpu.issue_per_clock,
                       rounds * dynamic.instructions)
    mufu_cycles = per_sm * num_warps * WARP_SIZE * dynamic.mufu / gpu.mufu_per_clock
    return Bounds(
        gpu=gpu.name,
        resident=resident,
        waves=cost.programs / (gpu.sms * resident),
        issue_s=issue_cycles / gpu.clock_hz,
        mufu_s=mufu_cycles / gpu.clock_hz,
        hbm_s=(cost.io_bytes + cost.extra_bytes) / gpu.hbm_bytes_per_s,
        hbm_floor_s=cost.io_bytes / gpu.hbm_bytes_per_s,
        mufu_floor_s=cost.exp_count / (gpu.sms * gpu.mufu_per_clock * gpu.clock_hz),
    )


def _widths(counter) -> str:
    return " ".join(f"{count:g}x{bits}b" for bits, count in sorted(counter.items())) or "0"


def kernel_cost(sass_text: str, cost: LaunchCost, target: str, *, registers: int, shared_bytes: int,
                num_warps: int) -> dict:
    """The cost-model figures of one compiled kernel (a flat dict: the report's columns, JSON-ready)."""
    gpu = GPU_FOR_TARGET.get(target)
    if gpu is None:
        raise CostModelError(f"no GPU is costed for {target}: the model knows {sorted(GPU_FOR_TARGET)}")
    loops = profile(sass_text, cost.loop_trips)
    result = bounds(gpu, loops.dynamic, cost, registers=registers, shared_bytes=shared_bytes,
                    num_warps=num_warps)
    hot = loops.hot_loop
    return {
        "gpu": gpu.name,
        "shape": cost.shape,
        "programs": cost.programs,
        "resident_per_sm": result.resident,
        "waves": result.waves,
        "loops": loops.loops,
        "hot_loop_trips": loops.hot_loop_trips,
        "loop_instructions": hot.instructions,
        "loop_conditional": loops.hot_loop_conditional,
        "loop_mufu": hot.mufu,
        "loop_bar": hot.bar,
        "loop_shfl": hot.shfl,
        "loop_ldg": _widths(hot.ldg),
        "loop_stg": _widths(hot.stg),
        "thread_instructions": loops.dynamic.instructions,
        "thread_mufu": loops.dynamic.mufu,
        "io_bytes": cost.io_bytes,
        "extra_bytes": cost.extra_bytes,
        "exp_count": cost.exp_count,
        **{key: value for key, value in asdict(result).items() if key.endswith("_s")},
        "bound_s": result.bound_s,
        "binding": result.binding,
        "floor_s": result.floor_s,
        "floor_kind": result.floor_kind,
        "ratio": result.ratio,
    }
