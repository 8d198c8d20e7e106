"""Helpers for the data tests: tiny hand-written UserBehavior files and the shared real sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdaf.data.reader import OFFICIAL_WINDOW
from tests.data_location import real_sample_path

T0 = OFFICIAL_WINDOW[0]  # 2017-11-25 00:00:00 UTC+8
DAY = 86_400


def write_rows(path: Path, rows, *, trailing_newline: bool = True) -> Path:
    """Write rows (tuples or raw strings) as UserBehavior lines."""
    lines = [r if isinstance(r, str) else ",".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + ("\n" if trailing_newline else ""))
    return path


@pytest.fixture(scope="session")
def real_sample() -> Path:
    return real_sample_path()


@pytest.fixture(scope="session")
def default_file(tmp_path_factory) -> Path:
    from mdaf.data import default_dataset

    return default_dataset(tmp_path_factory.mktemp("default"))
