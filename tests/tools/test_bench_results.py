"""mdaf_kernels.tools.bench_results: device slugs, results files, ratios, targets and rendering."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mdaf_kernels.tools import bench_results as br


def model_record(model, variant, mode, samples_per_s, peak, device="NVIDIA H100 80GB HBM3"):
    name = f"test_model[{model}-{variant}-{mode}]"
    info = {
        "device": device,
        "model": model,
        "variant": variant,
        "mode": mode,
        "batch": 2048,
        "samples_per_s": samples_per_s,
        "peak_memory_bytes": peak,
    }
    return br.make_record(
        f"benchmarks/bench_models.py::{name}",
        name,
        f"model-{mode}",
        {"mode": mode},
        br.time_stats([2048 / samples_per_s]),
        info,
    )


def activation_record(model, variant, per_sample):
    name = f"test_saved_activation_bytes[{model}-{variant}]"
    info = {
        "device": "CPU X (2 threads)",
        "model": model,
        "variant": variant,
        "activation_bytes_per_sample": per_sample,
        "untimed": True,
    }
    return br.make_record(
        f"benchmarks/bench_activation_memory.py::{name}",
        name,
        "saved-activations",
        None,
        br.time_stats([1e-6]),
        info,
    )


def gpu_results(triton_sps=300_000.0, triton_peak=2 * 2**30, reference_sps=100_000.0):
    records = [
        model_record("bst", "eager", "train", 100_000.0, 5 * 2**30),
        model_record("mdaf", "triton", "train", triton_sps, triton_peak),
        model_record("mdaf", "reference", "train", reference_sps, 9 * 2**30),
    ]
    return {
        "schema": br.SCHEMA_VERSION,
        "device": "NVIDIA H100 80GB HBM3",
        "slug": "nvidia-h100-80gb-hbm3",
        "environment": {"torch": "2.x", "date": "2026-01-01"},
        "benchmarks": records,
    }


@pytest.mark.parametrize(
    "name, slug",
    [
        ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb-hbm3"),
        ("CPU AMD EPYC (2 threads)", "cpu-amd-epyc-2threads"),
        ("CPU AMD EPYC (1 thread)", "cpu-amd-epyc-1thread"),
        ("CPU Intel(R) Xeon(R) Platinum 8480C (16 threads)", "cpu-intel-xeon-platinum-8480c-16threads"),
    ],
)
def test_device_slug(name, slug):
    assert br.device_slug(name) == slug


def test_time_stats_median_and_iqr():
    stats = br.time_stats([5.0, 1.0, 3.0, 2.0, 4.0])
    assert stats["median"] == 3.0 and stats["min"] == 1.0 and stats["max"] == 5.0 and stats["rounds"] == 5
    assert stats["iqr"] == pytest.approx(3.0)  # exclusive quartiles of 1..5: 1.5 and 4.5


def test_untimed_record_has_no_time():
    record = activation_record("bst", "eager", 1000.0)
    assert record["time_s"] is None and "untimed" not in record["extra_info"]


def test_write_merges_by_test_id_and_replace_starts_afresh(tmp_path):
    first = model_record("bst", "eager", "train", 1.0, 10)
    second = model_record("mdaf", "triton", "train", 2.0, 10)
    path = br.write_results(tmp_path, "NVIDIA H100 80GB HBM3", [first], {"date": "d"})
    assert path.name == "nvidia-h100-80gb-hbm3.json"
    br.write_results(tmp_path, "NVIDIA H100 80GB HBM3", [second], {"date": "d"})
    assert {r["fullname"] for r in br.load_results(path)["benchmarks"]} == {
        first["fullname"],
        second["fullname"],
    }
    br.write_results(tmp_path, "NVIDIA H100 80GB HBM3", [second], {"date": "d"}, replace=True)
    assert [r["fullname"] for r in br.load_results(path)["benchmarks"]] == [second["fullname"]]


def test_load_rejects_another_schema(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"schema": 999, "benchmarks": []}))
    with pytest.raises(ValueError, match="schema"):
        br.load_results(path)


def test_targets_pass_miss_and_missing():
    verdicts = {t["target"]: (t["verdict"], t["value"]) for t in br.check_targets(gpu_results())}
    assert verdicts["MDAF (Triton) / BST, train throughput"] == ("PASS", pytest.approx(3.0))
    assert verdicts["MDAF (Triton) / BST, train peak memory"] == ("PASS", pytest.approx(0.4))
    assert verdicts["MDAF (Triton) / MDAF (reference), train throughput"] == ("PASS", pytest.approx(3.0))
    slow = {t["target"]: t["verdict"] for t in br.check_targets(gpu_results(150_000.0, 3 * 2**30, 100_000.0))}
    assert set(slow.values()) == {"MISS"}
    results = gpu_results()
    results["benchmarks"] = results["benchmarks"][:2]  # no reference row
    assert br.check_targets(results)[2]["verdict"] == "N/A"


def test_ratios_include_saved_activations():
    results = gpu_results()
    results["benchmarks"] += [
        activation_record("mdaf", "triton", 100.0),
        activation_record("mdaf", "reference", 400.0),
    ]
    ratios = {(r["comparison"], r["mode"]): r for r in br.model_ratios(results)}
    assert ratios[("MDAF (reference) / BST", "train")]["throughput_ratio"] == pytest.approx(1.0)
    assert ratios[("MDAF (Triton) / BST", "train")]["peak_memory_ratio"] == pytest.approx(0.4)
    assert ratios[("MDAF (Triton) / MDAF (reference)", "saved activations")]["activation_ratio"] == 0.25


def test_readme_has_one_section_per_device_and_targets_only_for_gpus():
    cpu = {
        "schema": br.SCHEMA_VERSION,
        "device": "CPU X (2 threads)",
        "slug": "cpu-x-2threads",
        "environment": {},
        "benchmarks": [activation_record("bst", "eager", 1500.0)],
    }
    text = br.render_readme([cpu, gpu_results()])
    assert "## CPU X (2 threads)" in text and "## NVIDIA H100 80GB HBM3" in text
    assert text.count("GPU targets on") == 1
    assert "saved 1.46 KiB/sample" in text
    assert "| model-train | model[mdaf-triton-train] |" in text


def test_summary_text_ends_with_the_targets():
    text = br.summary_text(gpu_results(150_000.0))
    last_lines = text.splitlines()[-3:]
    assert "MISS" in last_lines[0] and "PASS" in last_lines[1]
    assert "mdaf-triton" in text and "5.00 GiB" in text


TINY_BENCH = """
import pytest
import torch
from conftest import record_measurement, run_benchmark


@pytest.mark.benchmark(group="tiny")
def test_sum(benchmark, bench_device):
    x = torch.ones(1000)
    run_benchmark(benchmark, lambda: x.sum(), device=bench_device, rounds=3, samples=1000)


def test_count(benchmark, bench_device):
    record_measurement(benchmark, device=bench_device, model="bst", variant="eager",
                       activation_bytes_per_sample=10.0)


def test_not_a_benchmark():
    pass
"""

# Run pytest with pytest-benchmark hidden, as on a machine without it.
WITHOUT_PYTEST_BENCHMARK = (
    "import sys; sys.modules['pytest_benchmark'] = None; import pytest; sys.exit(pytest.main(sys.argv[1:]))"
)


@pytest.mark.parametrize(
    "with_pytest_benchmark, mode",
    [(True, None), (False, "write")],
    ids=["pytest-benchmark-default", "stand-in-write"],
)
def test_benchmarks_conftest_writes_results_and_readme(tmp_path, with_pytest_benchmark, mode):
    """benchmarks/conftest.py, copied beside a tiny bench file, writes the results file and README:
    under runs/benchmarks/ by default (the tracked tree stays clean), in benchmarks/results/ when asked."""
    repo = Path(__file__).resolve().parents[2]
    bench_dir = tmp_path / "benchmarks"
    bench_dir.mkdir()
    shutil.copy(repo / "benchmarks" / "conftest.py", bench_dir)
    (bench_dir / "bench_tiny.py").write_text(TINY_BENCH)
    env = {**os.environ, "PYTHONPATH": str(repo)}
    args = ["benchmarks", "--benchmark-only", "-q", "-p", "no:cacheprovider", "-o", "python_files=bench_*.py"]
    args += ["--bench-results", mode] if mode else []
    if with_pytest_benchmark:
        command = [sys.executable, "-m", "pytest", *args]
    else:
        command = [sys.executable, "-c", WITHOUT_PYTEST_BENCHMARK, *args]
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed, 1 skipped" in done.stdout

    written, untouched = (
        (bench_dir / "results", tmp_path / "runs")
        if mode
        else (tmp_path / "runs" / "benchmarks", bench_dir / "results")
    )
    assert not untouched.exists()
    [path] = written.glob("*.json")
    results = br.load_results(path)
    assert path.stem == br.device_slug(results["device"])
    rows = {r["name"]: r for r in results["benchmarks"]}
    assert set(rows) == {"test_sum", "test_count"}
    timed = rows["test_sum"]
    assert timed["group"] == "tiny" and timed["time_s"]["rounds"] == 3
    assert timed["extra_info"]["samples_per_s"] == pytest.approx(1000 / timed["time_s"]["median"])
    assert rows["test_count"]["time_s"] is None
    readme = (written / "README.md").read_text()
    assert f"## {results['device']}" in readme and "saved 10 B/sample" in readme

    # the closing summary: comparisons, the skip reasons counted, where the results went; 120 columns
    out = done.stdout
    assert "benchmark summary" in out and "1 of 3 cases skipped" in out
    assert "   1 x Skipping non-benchmark (--benchmark-only active)." in out
    assert f"wrote {path.relative_to(tmp_path)}" in out
    assert max(len(line) for line in out.splitlines()) <= 120
    if with_pytest_benchmark:  # the timing table lists timings only, not the byte count
        table = out.split("benchmark summary")[0].splitlines()
        assert any(line.startswith("sum ") for line in table)
        assert not any(line.startswith("count") for line in table)


def test_closing_summary_pairs_each_figure_with_its_peer_and_target():
    text = br.closing_summary(gpu_results(150_000.0))
    line = next(r for r in text.splitlines() if r.startswith("MDAF (Triton)") and "BST 100k" in r)
    assert line.split()[:7] == ["MDAF", "(Triton)", "train", "samples/s", "150k", "BST", "100k"]
    assert "1.50x" in line and ">= 2.0x: MISS" in line
    cpu = br.closing_summary({**gpu_results(), "device": "CPU X (1 thread)"})
    assert "targets are set for GPUs only" in cpu and "MISS" not in cpu and "PASS" not in cpu
