"""The static cost model: SASS parsing, loop weighting, occupancy, bounds, the committed-bounds guard,
and the calibration kernels compiled fresh (copy on the HBM floor, exp2 on the MUFU floor)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mdaf_kernels.tools import compile_report, cost_model
from mdaf_kernels.tools.compile_report import Row
from mdaf_kernels.tools.kernel_spec import LaunchCost
from mdaf_kernels.tools.sass import Counts, find_loops, parse_instructions, straight_line

REPO = Path(__file__).resolve().parents[2]

# Lines in the bundled cuobjdump's format (encodings trimmed): a prologue, an outer loop 0x0040-0x00e0
# holding an inner loop 0x0060-0x00a0, an epilogue, the self-branch that pads a function, and NOPs.
SASS_TEXT = """
        Function : nested
        /*0000*/                   LDC R1, c[0x0][0x28] ;
        /*0010*/                   S2R R0, SR_TID.X ;
        /*0020*/                   LDG.E.128 R4, desc[UR4][R12.64] ;
        /*0030*/              @!P0 BRA 0x100 ;
        /*0040*/                   LDG.E.U16 R8, desc[UR4][R2.64] ;
        /*0050*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0060*/                   MUFU.EX2 R4, R4 ;
        /*0070*/                   SHFL.BFLY PT, R9, R4, 0x1, 0x1f ;
        /*0080*/                   FFMA R5, R4, R9, R5 ;
        /*0090*/                   ISETP.NE.AND P1, PT, R2, RZ, PT ;
        /*00a0*/               @P1 BRA 0x60 ;
        /*00b0*/                   STG.E.64 desc[UR4][R6.64], R4 ;
        /*00c0*/                   VIADD R3, R3, 0xffffffff ;
        /*00d0*/                   ISETP.NE.AND P2, PT, R3, RZ, PT ;
        /*00e0*/               @P2 BRA 0x40 ;
        /*00f0*/                   STG.E desc[UR4][R2.64], R5 ;
        /*0100*/                   EXIT ;
        /*0110*/                   BRA 0x110;
        /*0120*/                   NOP;
"""


def test_parse_instructions_reads_predicates_modifiers_and_branch_targets():
    instructions = parse_instructions(SASS_TEXT)
    assert len(instructions) == 19
    branch = instructions[3]
    assert (branch.address, branch.predicate, branch.opcode) == (0x30, "@!P0", "BRA")
    assert branch.branch_target == 0x100
    assert instructions[2].modifiers == ("E", "128") and instructions[2].access_bits == 128
    assert instructions[4].access_bits == 16 and instructions[15].access_bits == 32
    assert instructions[6].branch_target is None


def test_loops_nest_by_address_and_own_counts_leave_inner_loops_out():
    instructions = parse_instructions(SASS_TEXT)
    outer, inner = find_loops(instructions)
    assert (outer.head, outer.end, outer.depth) == (0x40, 0xE0, 0)
    assert (inner.head, inner.end, inner.depth) == (0x60, 0xA0, 1)
    assert inner.own.instructions == 5 and inner.own.mufu == 1 and inner.own.shfl == 1
    assert outer.counts.instructions == 11 and outer.own.instructions == 6
    assert outer.own.bar == 1 and outer.own.mufu == 0
    assert outer.conditional == 0 and inner.conditional == 0
    assert dict(outer.own.ldg) == {16: 1} and dict(outer.own.stg) == {64: 1}
    # Outside the loops: 4 before, STG + EXIT + the padding self-branch after; NOPs are not issued.
    rest = straight_line(instructions, [outer, inner])
    assert rest.instructions == 7 and dict(rest.ldg) == {128: 1} and dict(rest.stg) == {32: 1}


def test_profile_weights_each_body_by_its_trips_and_picks_the_hot_loop():
    loops = cost_model.profile(SASS_TEXT, (3, 3 * 10))
    assert loops.dynamic.instructions == 7 + 6 * 3 + 5 * 30
    assert loops.dynamic.mufu == 30 and loops.dynamic.bar == 3
    assert loops.hot_loop.instructions == 5 and loops.hot_loop_trips == 30
    # An outer loop that runs far more often becomes the hot one.
    assert cost_model.profile(SASS_TEXT, (100, 100)).hot_loop.instructions == 6


def test_instructions_a_forward_branch_can_skip_are_marked_conditional():
    # A store every k-th trip: "@P0 BRA" over one STG inside a one-level loop.
    text = """
        /*0000*/                   S2R R0, SR_TID.X ;
        /*0010*/                   FADD R1, R1, R2 ;
        /*0020*/               @P0 BRA 0x40 ;
        /*0030*/                   STG.E desc[UR4][R2.64], R1 ;
        /*0040*/                   ISETP.NE.AND P1, PT, R3, RZ, PT ;
        /*0050*/               @P1 BRA 0x10 ;
        /*0060*/                   EXIT ;
    """
    (loop,) = find_loops(parse_instructions(text))
    assert (loop.own.instructions, loop.conditional) == (5, 1)
    assert cost_model.profile(text, (7,)).hot_loop_conditional == 1


def test_profile_refuses_trips_that_do_not_match_the_loops():
    with pytest.raises(cost_model.CostModelError, match=r"2 loop\(s\).*0x40-0xe0.*gives 1"):
        cost_model.profile(SASS_TEXT, (50,))
    with pytest.raises(cost_model.CostModelError, match="no SASS"):
        cost_model.profile("Function : empty\n", ())


@pytest.mark.parametrize(("gpu", "registers", "shared", "warps", "expected"), [
    # 149 registers -> 4864 per warp; 16384 // 4864 = 3 warps per partition, 12 per SM: 3 programs.
    (cost_model.A100_80GB, 149, 0, 4, 3),
    (cost_model.H100_SXM, 149, 0, 4, 3),
    # Few registers: the 64-warp limit (16 programs of 4 warps), then the 32-program limit.
    (cost_model.H100_SXM, 32, 0, 4, 16),
    (cost_model.H100_SXM, 16, 0, 1, 32),
    # Shared memory: (40960 + 1024) rounded to 128 -> 41984 B; 167936 // 41984 = 4 on the A100,
    # 233472 // 41984 = 5 on the H100.
    (cost_model.A100_80GB, 64, 40960, 4, 4),
    (cost_model.H100_SXM, 64, 40960, 4, 5),
    (cost_model.H100_SXM, 255, 0, 8, 1),
])
def test_resident_programs_follows_the_occupancy_rules(gpu, registers, shared, warps, expected):
    assert cost_model.resident_programs(gpu, registers, shared, warps) == expected


def test_bounds_from_issue_mufu_and_bandwidth():
    gpu = cost_model.Gpu("test", sms=10, clock_hz=1e9, hbm_bytes_per_s=1e12, shared_bytes_per_sm=100_000)
    per_thread = Counts(instructions=1000, mufu=10)
    cost = LaunchCost("s", programs=25, io_bytes=4_000_000, extra_bytes=1_000_000, exp_count=80_000)
    result = cost_model.bounds(gpu, per_thread, cost, registers=32, shared_bytes=0, num_warps=4)
    assert result.resident == 16 and result.waves == pytest.approx(25 / 160)
    # Busiest SM: 3 programs x 4 warps x 1000 instructions over 4 schedulers = 3000 cycles.
    assert result.issue_s == pytest.approx(3000e-9)
    # MUFU: 3 x 4 warps x 32 threads x 10 / 16 per clock = 240 cycles.
    assert result.mufu_s == pytest.approx(240e-9)
    assert result.hbm_s == pytest.approx(5e-6) and result.hbm_floor_s == pytest.approx(4e-6)
    assert result.mufu_floor_s == pytest.approx(80_000 / (10 * 16 * 1e9))
    assert (result.bound_s, result.binding, result.floor_kind) == (pytest.approx(5e-6), "HBM", "HBM")
    assert result.ratio == pytest.approx(1.25)
    # One warp per program on one SM: a warp issues at most one instruction per clock.
    single = cost_model.bounds(gpu, per_thread, LaunchCost("s", programs=1, io_bytes=0), registers=32,
                               shared_bytes=0, num_warps=1)
    assert single.issue_s == pytest.approx(1000e-9) and single.binding == "issue"


def _row(kernel: str, bound_us: float, shape: str = "B1") -> Row:
    return Row(op="op", kernel=kernel, target="sm_90", costs=[{"shape": shape, "bound_s": bound_us * 1e-6}])


def test_expected_bounds_fail_above_the_tolerance_or_when_missing():
    expected = {"k sm_90 B1": 100.0, "gone sm_90 B1": 5.0}
    assert compile_report.check_expected([_row("k", 110.0)], expected, 0.10) == []
    [problem] = compile_report.check_expected([_row("k", 111.0)], expected, 0.10)
    assert "k sm_90 B1" in problem and "+11%" in problem
    [missing] = compile_report.check_expected([_row("new", 1.0)], expected, 0.10)
    assert "no committed bound" in missing
    # Rows without a launch description are not costed.
    assert compile_report.check_expected([Row(op="op", kernel="x", target="sm_80")], expected, 0.1) == []
    rows = [_row("k", 50.0), _row("k", 7.0, "B2")]
    updated = compile_report.updated_expected(rows, expected, partial=True)
    assert updated == {"gone sm_90 B1": 5.0, "k sm_90 B1": 50.0, "k sm_90 B2": 7.0}
    assert compile_report.updated_expected(rows, expected, partial=False) == {"k sm_90 B1": 50.0,
                                                                                "k sm_90 B2": 7.0}


def test_cost_table_has_one_line_per_launch_and_a_markdown_form():
    row = Row(op="op", kernel="k", target="sm_90")
    cost = cost_model.kernel_cost(SASS_TEXT, LaunchCost("B1", programs=264, io_bytes=10**8, exp_count=10**6,
                                                        loop_trips=(3, 30)),
                                  "sm_90", registers=40, shared_bytes=0, num_warps=4)
    row.costs = [cost, {**cost, "shape": "B2"}]
    text = compile_report.format_cost_table([row])
    assert len(text.splitlines()) == 4 and "H100 SXM" in text and "HBM" in text
    markdown = compile_report.format_cost_table([row], markdown=True).splitlines()
    assert markdown[0].startswith("| kernel |") and len(markdown) == 4
    assert cost["loop_instructions"] == 5 and cost["loop_ldg"] == "0" and cost["ratio"] == pytest.approx(1.0)
    with pytest.raises(cost_model.CostModelError, match="sm_75"):
        cost_model.kernel_cost(SASS_TEXT, LaunchCost("B1", 1, 1, loop_trips=(1, 1)), "sm_75", registers=32,
                               shared_bytes=0, num_warps=4)


def _run_calibration(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, list]:
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    json_path = tmp_path / "rows.json"
    result = subprocess.run(
        [sys.executable, "-m", "mdaf_kernels.tools.compile_report", "--ops", "mdaf_kernels.tools.calibration",
         "--cost", "--json", str(json_path), *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    return result, json.loads(json_path.read_text()) if json_path.exists() else []


def test_calibration_kernels_land_on_their_floors_and_the_guard_works(tmp_path):
    expected = tmp_path / "expected.json"
    # Committed bounds far below the real ones: the report must fail and name the kernels.
    expected.write_text(json.dumps({"tolerance": 0.1, "unit": "us", "bounds": {
        "calibration_copy sm_90 n 4866048": 1.0, "calibration_copy sm_80 n 4866048": 1.0}}))
    result, rows = _run_calibration(tmp_path, "--expected", str(expected))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "calibration_copy sm_90 n 4866048: bound" in result.stderr
    assert "calibration_exp2 sm_80 n 4866048 x64 exp2: no committed bound" in result.stderr
    costs = {(row["kernel"], row["target"]): row["costs"][0] for row in rows}
    assert len(costs) == 4
    for target in ("sm_80", "sm_90"):
        copy, exp2 = costs[("calibration_copy", target)], costs[("calibration_exp2", target)]
        # The copy: 128-bit loads and stores, no loop, on the bandwidth floor.
        assert copy["loops"] == 0 and copy["loop_ldg"] == "8x128b" and copy["loop_stg"] == "8x128b"
        assert copy["binding"] == "HBM" and copy["floor_kind"] == "HBM"
        assert copy["ratio"] == pytest.approx(1.0, abs=1e-9)
        # The exp2 loop: one MUFU.EX2 per element per repeat, weighted by the loop's 64 trips.
        assert exp2["loops"] == 1 and exp2["loop_mufu"] == 32 and exp2["hot_loop_trips"] == 64
        assert exp2["thread_mufu"] == 32 * 64
        assert exp2["binding"] == "MUFU" and exp2["floor_kind"] == "MUFU"
        assert exp2["ratio"] == pytest.approx(1.0, abs=1e-9)
    assert costs[("calibration_exp2", "sm_90")]["mufu_s"] == pytest.approx(
        1188 * 4096 * 64 / (132 * 16 * 1.755e9))

    result, _ = _run_calibration(tmp_path, "--expected", str(expected), "--update-expected")
    assert result.returncode == 0, result.stdout + result.stderr
    bounds = json.loads(expected.read_text())["bounds"]
    assert bounds["calibration_copy sm_90 n 4866048"] == pytest.approx(38.93e6 / 3.35e12 * 1e6, rel=1e-3)
    assert len(bounds) == 4


def test_a_launch_description_that_does_not_fit_fails_the_cost_report(capsys, tmp_path):
    args = compile_report._parse_args(["--cost", "--markdown", str(tmp_path / "cost.md")])
    fitting = _row("k", 10.0)
    fitting.costs = [cost_model.kernel_cost(SASS_TEXT, LaunchCost("B1", 132, 10**6, loop_trips=(3, 30)),
                                            "sm_90", registers=32, shared_bytes=0, num_warps=4)]
    broken = Row(op="op", kernel="broken", target="sm_90",
                 cost_error="broken on sm_90: the SASS has 2 loop(s)")
    assert compile_report._report_cost(args, [fitting]) == 0
    assert compile_report._report_cost(args, [fitting, broken]) == 1
    assert "cost: broken on sm_90: the SASS has 2 loop(s)" in capsys.readouterr().err
    assert (tmp_path / "cost.md").read_text().count("| k |") == 1


def test_jit_spec_takes_one_launch_or_several():
    from mdaf_kernels.tools import calibration
    from mdaf_kernels.tools.kernel_spec import jit_spec

    copy, exp2 = calibration.compile_specs()
    assert len(copy.costs) == 1 and exp2.costs[0].loop_trips == (calibration.EXP2_REPEATS,)
    small, large = LaunchCost("B1", 1, 8), LaunchCost("B2", 2, 16)
    spec = dict(pointers={"x_ptr": "fp32", "y_ptr": "fp32"}, ints={}, constexprs={"BLOCK": 16}, num_warps=1)
    assert jit_spec("k", calibration._copy_kernel, cost=small, **spec).costs == (small,)
    assert jit_spec("k", calibration._copy_kernel, costs=(small,), cost=large, **spec).costs == (small, large)
    assert jit_spec("k", calibration._copy_kernel, **spec).costs == ()
