"""The README's main-job table is generated from the main job's results and checked against a fresh run.

``pytest -m readme tests/test_readme_main_job.py`` runs the main job (a few minutes on a CPU) and
checks that the README's table equals its results; the other tests here check the script itself.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "render_readme_main_job.py"
spec = importlib.util.spec_from_file_location("render_readme_main_job", SCRIPT)
render = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render)


def fake_results(bst_auc: float) -> dict:
    def model(auc, gate):
        run = {"gate": {"stats": {"mean": gate}} if gate is not None else None}
        ci = {"diff": auc - 0.795, "low": auc - 0.81, "high": auc - 0.78}
        return {
            "summary": {"auc": {"mean": auc}, "gauc": {"mean": auc - 0.01}},
            "vs_floors": [{"floor:category-share": ci}],
            "runs": [run],
        }

    return {
        "models": {"mdaf": model(0.831, 0.24), "bst": model(bst_auc, None)},
        "floors": {"floor:category-share": {"description": "share", "auc": 0.795, "gauc": 0.79}},
        "environment": {"machine": "a machine"},
        "data": {"n_train": 16000, "n_valid": 2244},
        "wall_seconds": 113.0,
    }


def test_the_readme_has_one_generated_block():
    readme = (ROOT / "README.md").read_text()
    assert readme.count(render.BEGIN) == 1 and readme.count(render.END) == 1
    assert len(render.table_lines(render.current_block(readme))) >= 5


def test_render_then_check_passes_and_a_changed_figure_fails(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{render.BEGIN}\nold\n{render.END}\n\nafter\n")
    results = tmp_path / "results.json"
    results.write_text(json.dumps(fake_results(0.5870)))
    assert render.main([str(results), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "| bst (trained) | 0.5870 | 0.5770 | -0.2080 [-0.2230, -0.1930] | - |" in text
    assert text.startswith("intro") and text.endswith("after\n") and "old" not in text
    assert render.main([str(results), "--readme", str(readme), "--check"]) == 0
    results.write_text(json.dumps({**fake_results(0.652), "wall_seconds": 1.0}))
    assert render.main([str(results), "--readme", str(readme), "--check"]) == 1


@pytest.mark.slow
@pytest.mark.readme
def test_the_readme_table_equals_a_fresh_main_job(tmp_path):
    """Opt-in (``-m readme``): the deterministic main job, run from scratch, gives the README's table."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "MDAF_CACHE_DIR")}
    env["PYTHONPATH"] = str(ROOT)
    command = [
        sys.executable,
        str(ROOT / "examples" / "train_taobao.py"),
        "--out",
        "runs/main-job",
        "--no-progress",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    check = [sys.executable, str(SCRIPT), str(tmp_path / "runs" / "main-job" / "results.json"), "--check"]
    checked = subprocess.run(check, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
