"""The static compile report: cuobjdump parsing, op collection, and a real run on the conv kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from mdaf_kernels.tools import compile_report
from mdaf_kernels.tools.compile_report import Row, parse_res_usage, parse_sass

REPO = Path(__file__).resolve().parents[2]

# Captured from the bundled cuobjdump on a small Triton tl.dot kernel compiled for sm_80 (the SASS
# lines without their encoding comments; the second function is a made-up spilling one).
RES_USAGE_TEXT = """
Resource usage:
 Common:
  GLOBAL:0
 Function mm:
  REG:52 STACK:0 SHARED:0 LOCAL:0 CONSTANT[0]:400 TEXTURE:0 SURFACE:0 SAMPLER:0
 Function _spilling_kernel:
  REG:255 STACK:4616 SHARED:1024 LOCAL:16 CONSTANT[0]:400 TEXTURE:0 SURFACE:0 SAMPLER:0
"""
SASS_TEXT = """
        /*0220*/                   LDGSTS.E.BYPASS.LTC128B.128 [R36], [R42.64], P3 ;
        /*0250*/                   LDGDEPBAR ;
        /*04b0*/                   HMMA.16816.F32 R4, R12.reuse, R2, R4 ;
        /*0500*/                   HMMA.16816.F32 R8, R12, R16, R8 ;
        /*0790*/               @P2 LDG.E R23, [R12.64+-0xc] ;
        /*07a0*/              @!P4 LDG.E.U16 R2, [R8.64] ;
"""


def test_parse_res_usage_reads_every_function():
    usage = parse_res_usage(RES_USAGE_TEXT)
    assert usage == {
        "mm": {"REG": 52, "STACK": 0, "SHARED": 0, "LOCAL": 0},
        "_spilling_kernel": {"REG": 255, "STACK": 4616, "SHARED": 1024, "LOCAL": 16},
    }


def test_parse_sass_widest_load_and_tensor_cores():
    assert parse_sass(SASS_TEXT) == {"widest_global_load_bits": 128, "tma_loads": 0,
                                     "tensor_core_instructions": 2}
    scalar_only = "\n".join(line for line in SASS_TEXT.splitlines()
                            if "LDGSTS" not in line and "HMMA" not in line)
    assert parse_sass(scalar_only) == {"widest_global_load_bits": 32, "tma_loads": 0,
                                       "tensor_core_instructions": 0}
    assert parse_sass("  UTMALDG.2D [UR8], [UR4] ;\n  LDG.E.64 R2, [R4.64] ;")["tma_loads"] == 1
    assert parse_sass("NOP ;")["widest_global_load_bits"] is None


@pytest.mark.parametrize(("fields", "ok"), [
    ({"stack_bytes": 0, "local_bytes": 0}, True),
    ({"stack_bytes": 8, "local_bytes": 0}, False),
    ({"stack_bytes": 0, "local_bytes": 4}, False),
    ({"stack_bytes": 0, "local_bytes": 0, "error": "CompilationError: boom"}, False),
])
def test_row_fails_on_spill_or_error(fields, ok):
    assert Row(op="op", kernel="k", target="sm_80", **fields).ok is ok


def test_listed_op_without_module_or_specs_is_an_error(monkeypatch):
    no_specs = types.ModuleType("mdaf_kernels.ops._no_specs_for_test")
    monkeypatch.setitem(sys.modules, no_specs.__name__, no_specs)
    jobs, errors = compile_report._collect(["_missing_op_for_test", "_no_specs_for_test"], None)
    assert jobs == []
    assert [row.op for row in errors] == ["_missing_op_for_test", "_no_specs_for_test"]
    assert "ModuleNotFoundError" in errors[0].error and "compile_specs" in errors[1].error
    assert not any(row.ok for row in errors)


def _run_report(tmp_path: Path, *args: str, interpret: bool) -> tuple[subprocess.CompletedProcess, list]:
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    json_path = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "mdaf_kernels.tools.compile_report", *args, "--json", str(json_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    rows = json.loads(json_path.read_text()) if json_path.exists() else []
    return result, rows


def test_conv_kernels_compile_for_sm80_and_sm90_without_spills(tmp_path):
    result, rows = _run_report(tmp_path, "--ops", "causal_conv1d", interpret=False)
    assert result.returncode == 0, result.stdout + result.stderr
    kernels = {row["kernel"] for row in rows}
    assert {"causal_conv1d_fwd[bf16,channel-first]", "causal_conv1d_bwd[fp32,channel-last]"} <= kernels
    expected = {(kernel, target) for kernel in kernels for target in ("sm_80", "sm_90")}
    assert {(row["kernel"], row["target"]) for row in rows} == expected
    for row in rows:
        assert row["ok"] and row["error"] is None and row["stack_bytes"] == 0 and row["local_bytes"] == 0
        assert 0 < row["registers"] <= 255
    # Channel-last fp32 rows are contiguous along dim (a multiple of 16): the forward must vectorise.
    widest = {(row["kernel"], row["target"]): row["widest_global_load_bits"] for row in rows}
    assert widest[("causal_conv1d_fwd[fp32,channel-last]", "sm_90")] == 128
    assert "causal_conv1d_fwd[fp32,channel-first]" in result.stdout and "sm_90" in result.stdout


def test_reruns_without_the_interpreter_and_fails_on_a_missing_listed_op(tmp_path):
    # Under TRITON_INTERPRET=1 kernels are interpreted functions: the tool must re-run itself without it.
    result, rows = _run_report(tmp_path, "--ops", "_missing_op_for_test", "causal_conv1d",
                               "--kernels", "fwd[fp32,channel-first]", "--targets", "80", "--jobs", "1",
                               interpret=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert [(row["kernel"], row["target"], row["ok"]) for row in rows] == [
        ("_missing_op_for_test (module)", "-", False),
        ("causal_conv1d_fwd[fp32,channel-first]", "sm_80", True),
    ]
