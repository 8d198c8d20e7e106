"""Where tests find the real Taobao sample: ``$MDAF_DATA_DIR``, else the project's ``../shared/data``.

The sample is the first 3,178,496 bytes of the official file (its last line cut off), so anyone can
rebuild it: download ``UserBehavior.csv`` from Tianchi (https://tianchi.aliyun.com/dataset/649), then
``mkdir -p $MDAF_DATA_DIR/taobao_userbehavior && head -c 3178496 UserBehavior.csv | gzip -9n >
$MDAF_DATA_DIR/taobao_userbehavior/userbehavior_head_815users.csv.gz``.
"""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DATA_DIR = Path(os.environ.get("MDAF_DATA_DIR") or SHARED_DATA)
REAL_SAMPLE = DATA_DIR / "taobao_userbehavior" / "userbehavior_head_815users.csv.gz"
MISSING_REASON = (
    f"real Taobao sample absent at {REAL_SAMPLE}: set MDAF_DATA_DIR (tests/data_location.py says how to"
    " build it from Tianchi's UserBehavior.csv)"
)


def real_sample_path() -> Path:
    """The sample's path, or a skip of the calling test saying how to get it."""
    if not REAL_SAMPLE.is_file():
        pytest.skip(MISSING_REASON)
    return REAL_SAMPLE
