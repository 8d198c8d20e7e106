"""The kernel package stands alone: torch, triton, einops and numpy; the product needs its extra."""

import subprocess
import sys
from pathlib import Path

import pytest

from mdaf import PRODUCT_DEPENDENCIES

ROOT = Path(__file__).resolve().parents[1]
BLOCK_PRODUCT_DEPENDENCIES = (
    "import sys\nfor name in {names}: sys.modules[name] = None  # as if not installed\n"
)


def _run_without(names, code: str) -> subprocess.CompletedProcess:
    script = BLOCK_PRODUCT_DEPENDENCIES.format(names=list(names)) + code
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_the_kernel_package_requires_only_its_four_dependencies():
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("=")[0].split("[")[0].strip() for dep in project["dependencies"]}
    assert names == {"torch", "triton", "einops", "numpy"}
    product = {dep.split(">")[0] for dep in project["optional-dependencies"]["product"]}
    # The product trains on CPU, so it brings the compiled CPU kernels too.
    assert product == {*PRODUCT_DEPENDENCIES, "mdaf-kernels[cpu]"}


def test_mdaf_kernels_runs_without_the_product_dependencies():
    done = _run_without(
        PRODUCT_DEPENDENCIES,
        "import torch, mdaf_kernels\n"
        "x = torch.randn(2, 3, 5)\n"
        "print(mdaf_kernels.causal_conv1d_fn(x, torch.randn(3, 4)).shape)\n",
    )
    assert done.returncode == 0, done.stderr
    assert "torch.Size([2, 3, 5])" in done.stdout


def test_import_mdaf_without_the_extra_fails_in_one_line_naming_it():
    done = _run_without(["pandas"], "import mdaf\n")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: mdaf needs pandas") and "mdaf-kernels[product]" in last
