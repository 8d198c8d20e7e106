"""Render every benchmarks/results/*.json into benchmarks/results/README.md, one table per device.

``pytest benchmarks/ --benchmark-only --bench-results write`` already does this after writing its results
file; run this after editing or copying results files by hand (e.g. a GPU machine's file). ``--check``
exits 1 when the README is out of date instead of writing it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mdaf_kernels.tools import bench_results

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def render(results_dir: Path = RESULTS_DIR) -> str:
    return bench_results.render_readme(
        [bench_results.load_results(path) for path in sorted(results_dir.glob("*.json"))]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is not up to date")
    args = parser.parse_args(argv)
    readme = args.results_dir / "README.md"
    text = render(args.results_dir)
    if args.check:
        current = readme.read_text() if readme.exists() else ""
        if current != text:
            print(f"{readme} is out of date: run python benchmarks/render_results.py", file=sys.stderr)
            return 1
        return 0
    readme.write_text(text)
    print(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
