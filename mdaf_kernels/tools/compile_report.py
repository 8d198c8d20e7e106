"""Static GPU compile report: every op's kernels compiled for sm_80 and sm_90, no GPU needed.

    python -m mdaf_kernels.tools.compile_report [--ops NAME ...] [--kernels TEXT ...]
                                                [--targets 80 90] [--json PATH] [--jobs N]
                                                [--cost [--markdown PATH]
                                                 [--expected JSON [--update-expected]]]

Each module in ``mdaf_kernels.ops.OPS`` (or the ``--ops`` subset) lists its kernels at the MDAF
shapes through ``compile_specs()``. Each spec is compiled with ``triton.compile`` for
``GPUTarget("cuda", cc, 32)``, and the bundled ``cuobjdump`` reads the cubin: registers per thread,
stack and local bytes (spills), shared memory, the widest global load in the SASS and the count of
tensor-core instructions (HMMA/HGMMA). Exit status 1 on any compile failure, any spill (STACK or
LOCAL above zero) or a listed op whose module or ``compile_specs`` is missing.

``--cost`` adds the static cost model (``mdaf_kernels.tools.cost_model``) for every spec that carries
a ``LaunchCost``, from the same compilation: the hot loop's counts, occupancy, bytes and lower-bound
times on H100 (sm_90) and A100 (sm_80). It then also fails when a launch description does not fit
its SASS, and, with ``--expected JSON``, when a bound grows more than the file's tolerance (10%)
above its committed figure; ``--update-expected`` rewrites the file instead. Method and limits:
benchmarks/README.md, "Static cost model".

Kernels must be real ``@triton.jit`` functions, so this never runs under the Triton interpreter:
with ``TRITON_INTERPRET=1`` in the environment the tool re-runs itself in a subprocess without it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mdaf_kernels.tools import cost_model

DEFAULT_TARGETS = (80, 90)
# How far a kernel's bound may grow above its committed figure before --expected fails.
EXPECTED_TOLERANCE = 0.10
WARP_SIZE = 32

_RES_FUNCTION = re.compile(r"^\s*Function\s+(\S+?):?\s*$")
_RES_FIELD = re.compile(r"\b(REG|STACK|SHARED|LOCAL):(\d+)")
# A global load opcode (LDG, or LDGSTS for cp.async copies into shared memory) with its modifiers.
_GLOBAL_LOAD = re.compile(r"\bLDG(?:STS)?((?:\.[A-Z0-9_]+)+)")
_LOAD_BITS = {"128": 128, "64": 64, "U16": 16, "S16": 16, "U8": 8, "S8": 8}
_TENSOR_CORE = re.compile(r"\b(HMMA|HGMMA|IMMA|IGMMA|QGMMA)\b")


@dataclass
class Row:
    """One kernel compiled for one target."""

    op: str
    kernel: str
    target: str
    registers: int | None = None
    stack_bytes: int | None = None
    local_bytes: int | None = None
    shared_bytes: int | None = None
    widest_global_load_bits: int | None = None
    tma_loads: int | None = None
    tensor_core_instructions: int | None = None
    num_warps: int | None = None
    error: str | None = None
    costs: list[dict] = field(default_factory=list)  # the cost model's figures, one per described launch
    cost_error: str | None = None

    @property
    def spills(self) -> bool:
        return bool(self.stack_bytes) or bool(self.local_bytes)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.spills


def parse_res_usage(text: str) -> dict[str, dict[str, int]]:
    """``cuobjdump -res-usage`` output -> {function: {"REG": .., "STACK": .., "SHARED": .., "LOCAL": ..}}."""
    usage: dict[str, dict[str, int]] = {}
    function = None
    for line in text.splitlines():
        match = _RES_FUNCTION.match(line)
        if match:
            function = match.group(1)
            continue
        fields = dict((key, int(value)) for key, value in _RES_FIELD.findall(line))
        if function is not None and fields:
            usage[function] = fields
            function = None
    return usage


def parse_sass(text: str) -> dict[str, int | None]:
    """``cuobjdump -sass`` output -> the widest global load in bits (None when there is none), the
    number of TMA loads (UTMALDG) and of tensor-core instructions."""
    widest = None
    for modifiers in _GLOBAL_LOAD.findall(text):
        bits = 32
        for modifier in modifiers.split(".")[1:]:
            bits = _LOAD_BITS.get(modifier, bits)
        widest = bits if widest is None else max(widest, bits)
    return {
        "widest_global_load_bits": widest,
        "tma_loads": len(re.findall(r"\bUTMALDG\b", text)),
        "tensor_core_instructions": len(_TENSOR_CORE.findall(text)),
    }


def cuobjdump_path() -> Path:
    import triton

    return Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"


def op_module(op: str) -> str:
    """An op's module: ``mdaf_kernels.ops.<op>``, or ``op`` itself when it is a dotted module path
    (e.g. ``mdaf_kernels.tools.calibration``)."""
    return op if "." in op else f"mdaf_kernels.ops.{op}"


def _load_specs(op: str) -> list:
    module = importlib.import_module(op_module(op))
    compile_specs = getattr(module, "compile_specs", None)
    if compile_specs is None:
        raise AttributeError(f"{op_module(op)} defines no compile_specs()")
    return list(compile_specs())


def compile_one(op: str, name: str, capability: int) -> Row:
    """Compile the spec called ``name`` of ``op`` for sm_``capability`` and read its cubin."""
    row = Row(op=op, kernel=name, target=f"sm_{capability}")
    try:
        from triton import compile as triton_compile
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource

        matches = [spec for spec in _load_specs(op) if spec.name == name]
        if len(matches) != 1:
            raise LookupError(f"{len(matches)} specs named {name!r} in {op}.compile_specs(), want one")
        (spec,) = matches
        row.num_warps = spec.num_warps
        arg_index = {arg: i for i, arg in enumerate(spec.kernel.arg_names)}
        attrs = {(arg_index[arg],): [["tt.divisibility", 16]] for arg in spec.divisible_by_16}
        compiled = triton_compile(
            ASTSource(spec.kernel, signature=spec.signature, constexprs=spec.constexprs, attrs=attrs),
            target=GPUTarget("cuda", capability, WARP_SIZE),
            options={"num_warps": spec.num_warps, "num_stages": spec.num_stages},
        )
        with tempfile.TemporaryDirectory() as tmp:
            cubin = Path(tmp) / "kernel.cubin"
            cubin.write_bytes(compiled.asm["cubin"])
            res = _run_cuobjdump("-res-usage", cubin)
            sass = _run_cuobjdump("-sass", cubin)
    except Exception as exc:  # noqa: BLE001 - any failure to compile is reported as a row
        message = str(exc).strip()
        row.error = f"{type(exc).__name__}: {message.splitlines()[0] if message else ''}"
        return row
    usage = parse_res_usage(res)
    if len(usage) != 1:
        row.error = f"expected one function in cuobjdump -res-usage, found {sorted(usage)}"
        return row
    (fields,) = usage.values()
    row.registers = fields.get("REG")
    row.stack_bytes = fields.get("STACK")
    row.local_bytes = fields.get("LOCAL")
    # Triton kernels take their shared memory dynamically (metadata.shared) on top of any static part.
    row.shared_bytes = fields.get("SHARED", 0) + int(getattr(compiled.metadata, "shared", 0) or 0)
    for key, value in parse_sass(sass).items():
        setattr(row, key, value)
    try:
        row.costs = [cost_model.kernel_cost(sass, cost, row.target, registers=row.registers,
                                            shared_bytes=row.shared_bytes, num_warps=spec.num_warps)
                     for cost in spec.costs]
    except cost_model.CostModelError as exc:
        row.cost_error = f"{spec.name} on {row.target}: {exc}"
    return row


def _run_cuobjdump(flag: str, cubin: Path) -> str:
    result = subprocess.run([str(cuobjdump_path()), flag, str(cubin)], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"cuobjdump {flag} failed: {result.stderr.strip()}")
    return result.stdout


def _aligned(headers: tuple[str, ...], lines: list[tuple[str, ...]]) -> str:
    widths = [max([len(h), *(len(line[i]) for line in lines)]) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    table = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    table += [fmt.format(*line) for line in lines]
    return "\n".join(line.rstrip() for line in table)


def format_table(rows: list[Row]) -> str:
    headers = ("kernel", "target", "warps", "regs", "stack", "local", "smem", "widest LDG", "TC ops",
               "status")
    lines = []
    for row in rows:
        load = "-" if row.widest_global_load_bits is None else f"{row.widest_global_load_bits}-bit"
        if row.tma_loads:
            load += f" +TMA x{row.tma_loads}"
        status = "ok" if row.ok else ("SPILL" if row.error is None else f"ERROR {row.error}")
        values = (row.kernel, row.target, row.num_warps, row.registers, row.stack_bytes, row.local_bytes,
                  row.shared_bytes, load, row.tensor_core_instructions, status)
        lines.append(tuple("-" if v is None else str(v) for v in values))
    return _aligned(headers, lines)


COST_HEADERS = ("kernel", "GPU", "shape", "programs", "regs", "smem", "res/SM", "waves", "loop instr", "MUFU",
                "BAR", "SHFL", "LDG", "STG", "instr/thread", "MB moved", "issue us", "MUFU us", "HBM us",
                "bound us", "floor us", "bound/floor")


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}" if seconds < 1e-4 else f"{seconds * 1e6:.0f}"


def cost_lines(rows: list[Row]) -> list[tuple[str, ...]]:
    """One line of cost-model figures per costed row (see COST_HEADERS)."""
    lines = []
    for row, cost in _costed(rows):
        moved = (cost["io_bytes"] + cost["extra_bytes"]) / 1e6
        extra = cost["extra_bytes"] / 1e6
        conditional = cost["loop_conditional"]
        # Extra traffic (partials, checkpoints) as a share of the op's own inputs and outputs.
        share = f", {cost['extra_bytes'] / cost['io_bytes']:.0%}" if cost["io_bytes"] else ""
        moved_text = f"{moved:.1f}" + (f" (extra {extra:.1f}{share})" if extra else "")
        loop_instructions = f"{cost['loop_instructions']}" + (f" ({conditional} cond)" if conditional else "")
        lines.append(tuple("-" if v is None else str(v) for v in (
            row.kernel, cost["gpu"], cost["shape"], cost["programs"], row.registers, row.shared_bytes,
            cost["resident_per_sm"], f"{cost['waves']:.2f}", loop_instructions, cost["loop_mufu"],
            cost["loop_bar"], cost["loop_shfl"], cost["loop_ldg"], cost["loop_stg"],
            f"{cost['thread_instructions']:.0f}", moved_text, _us(cost["issue_s"]), _us(cost["mufu_s"]),
            _us(cost["hbm_s"]), f"{_us(cost['bound_s'])} {cost['binding']}",
            f"{_us(cost['floor_s'])} {cost['floor_kind']}", f"{cost['ratio']:.2f}")))
    return lines


def format_cost_table(rows: list[Row], *, markdown: bool = False) -> str:
    lines = cost_lines(rows)
    if not markdown:
        return _aligned(COST_HEADERS, lines)
    table = ["| " + " | ".join(COST_HEADERS) + " |", "|" + "---|" * len(COST_HEADERS)]
    return "\n".join(table + ["| " + " | ".join(line) + " |" for line in lines])


def _costed(rows: list[Row]) -> list[tuple[Row, dict]]:
    return [(row, cost) for row in rows for cost in row.costs]


def expected_key(row: Row, cost: dict) -> str:
    return f"{row.kernel} {row.target} {cost['shape']}"


def check_expected(rows: list[Row], expected: dict[str, float], tolerance: float) -> list[str]:
    """Problems with the costed rows against the committed bounds (microseconds): a bound more than
    ``tolerance`` above its committed figure, or a costed kernel with no committed figure."""
    problems = []
    for row, cost in _costed(rows):
        key, bound_us = expected_key(row, cost), cost["bound_s"] * 1e6
        if key not in expected:
            problems.append(f"{key}: no committed bound (new kernel?): {bound_us:.1f} us")
        elif bound_us > expected[key] * (1 + tolerance):
            problems.append(f"{key}: bound {bound_us:.1f} us is {bound_us / expected[key] - 1:+.0%} over the "
                            f"committed {expected[key]:.1f} us (allowed {tolerance:+.0%})")
    return problems


def updated_expected(rows: list[Row], previous: dict[str, float], *, partial: bool) -> dict[str, float]:
    """The costed rows' bounds; a ``partial`` run (some ops, kernels or targets) keeps the committed
    figures of what it did not compile, a full run drops those of kernels that are gone."""
    bounds = dict(previous) if partial else {}
    bounds.update({expected_key(row, cost): round(cost["bound_s"] * 1e6, 2) for row, cost in _costed(rows)})
    return dict(sorted(bounds.items()))


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mdaf_kernels.tools.compile_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", nargs="+", metavar="NAME",
                        help="ops to report (default: mdaf_kernels.ops.OPS); a dotted name is a module "
                             "with compile_specs(), e.g. mdaf_kernels.tools.calibration")
    parser.add_argument("--kernels", nargs="+", metavar="TEXT",
                        help="only kernels whose name contains one of these strings")
    parser.add_argument("--targets", nargs="+", type=int, default=list(DEFAULT_TARGETS), metavar="CC",
                        help="compute capabilities (default: 80 90)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="compile processes")
    parser.add_argument("--cost", action="store_true",
                        help="also print the static cost model's table (lower-bound times on H100 and A100); "
                             "a kernel whose launch description does not fit its SASS fails the run")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="with --cost, write the cost table as "
                        "markdown")
    parser.add_argument("--expected", type=Path, metavar="JSON",
                        help="with --cost, fail when a kernel's bound is more than the file's tolerance "
                             "above its committed figure (or has none)")
    parser.add_argument("--update-expected", action="store_true",
                        help="with --cost --expected, rewrite the committed bounds from this run instead of "
                             "checking them (say why in the commit)")
    return parser.parse_args(argv)


def _collect(ops: list[str], kernels: list[str] | None) -> tuple[list[tuple[str, str]], list[Row]]:
    """(op, kernel name) jobs to compile, and error rows for ops that cannot list their kernels."""
    jobs, errors = [], []
    for op in ops:
        try:
            specs = _load_specs(op)
        except Exception as exc:  # noqa: BLE001 - a missing or broken op module is a report error
            errors.append(Row(op=op, kernel=f"{op} (module)", target="-",
                              error=f"{type(exc).__name__}: {exc}"))
            continue
        if not specs:
            errors.append(Row(op=op, kernel=f"{op} (module)", target="-",
                              error="compile_specs() returned no kernels"))
        for spec in specs:
            if kernels is None or any(text in spec.name for text in kernels):
                jobs.append((op, spec.name))
    return jobs, errors


def _result_or_error_row(future: concurrent.futures.Future, job: tuple[str, str, int]) -> Row:
    """The worker's row, or an error row when the worker itself died (e.g. a crash in the compiler)."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - reported as a failed row
        op, name, capability = job
        return Row(op=op, kernel=name, target=f"sm_{capability}", error=f"{type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        # Kernels defined under the interpreter are not compilable: start over without it.
        env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
        return subprocess.run([sys.executable, "-m", "mdaf_kernels.tools.compile_report", *argv], env=env,
                              check=False).returncode
    os.environ.pop("TRITON_INTERPRET", None)
    args = _parse_args(argv)

    from mdaf_kernels.ops import OPS

    ops = list(args.ops) if args.ops else list(OPS)
    jobs, rows = _collect(ops, args.kernels)
    work = [(op, name, cc) for op, name in jobs for cc in args.targets]
    if args.jobs > 1 and len(work) > 1:
        # Fresh interpreters (spawn): workers import the op modules themselves, without TRITON_INTERPRET.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
            futures = [pool.submit(compile_one, *job) for job in work]
            rows += [_result_or_error_row(future, job) for future, job in zip(futures, work, strict=True)]
    else:
        rows += [compile_one(*job) for job in work]

    print(format_table(rows))
    failed = [row for row in rows if not row.ok]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([{**asdict(row), "spills": row.spills, "ok": row.ok} for row in rows],
                                        indent=2))
    if not jobs and not failed:
        print("no kernels matched", file=sys.stderr)
        return 1
    if failed:
        print(f"{len(failed)} of {len(rows)} rows failed (compile error, spill or missing op)",
              file=sys.stderr)
        return 1
    return _report_cost(args, rows) if args.cost else 0


def _partial(args: argparse.Namespace) -> bool:
    return bool(args.ops or args.kernels) or sorted(args.targets) != sorted(DEFAULT_TARGETS)


def _report_cost(args: argparse.Namespace, rows: list[Row]) -> int:
    """Print the cost table, write it as markdown, check or update the committed bounds."""
    print()
    print(format_cost_table(rows))
    uncosted = sorted({row.kernel for row in rows if not row.costs and not row.cost_error})
    if uncosted:
        print(f"not costed (their compile_specs() give no LaunchCost): {', '.join(uncosted)}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(format_cost_table(rows, markdown=True) + "\n")
    problems = [row.cost_error for row in rows if row.cost_error]
    if args.expected and args.update_expected:
        previous = json.loads(args.expected.read_text()) if args.expected.exists() else {}
        document = {"tolerance": previous.get("tolerance", EXPECTED_TOLERANCE), "unit": "us",
                    "bounds": updated_expected(rows, previous.get("bounds", {}), partial=_partial(args))}
        args.expected.parent.mkdir(parents=True, exist_ok=True)
        args.expected.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {len(document['bounds'])} committed bounds to {args.expected}")
    elif args.expected:
        document = json.loads(args.expected.read_text())
        problems += check_expected(rows, document["bounds"], document["tolerance"])
    for problem in problems:
        print(f"cost: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
