"""The cache of prepared datasets: fast reload, keyed by file content and every parameter."""

import json
import os
import time

import numpy as np

from mdaf.data import BatchIterator, PipelineConfig, prepare
from tests.mdaf.data.conftest import DAY, T0, write_rows


def _rows(n_users=30, extra_item=0):
    rows = []
    for u in range(1, n_users + 1):
        for d in range(3):
            for k in range(4):
                rows.append(
                    (
                        u,
                        100 + (u * 7 + d * 3 + k) % 40 + extra_item,
                        1 + k % 3,
                        "pv",
                        T0 + d * DAY + 60 * k + u,
                    )
                )
    return rows


def test_second_run_loads_the_cache(tmp_path):
    path = write_rows(tmp_path / "ub.csv", _rows())
    cache = tmp_path / "cache"
    first = prepare(path, PipelineConfig(), cache_dir=cache)
    assert not first.from_cache and first.cache_path.is_dir()
    start = time.perf_counter()
    second = prepare(path, PipelineConfig(), cache_dir=cache)
    assert second.from_cache and time.perf_counter() - start < 2.0
    assert isinstance(second.train["hist_items"], np.memmap)
    fresh = prepare(path, PipelineConfig())
    for split in ("train", "valid"):
        for key, value in getattr(fresh, split).items():
            np.testing.assert_array_equal(getattr(second, split)[key], value)
            np.testing.assert_array_equal(getattr(first, split)[key], value)
    assert second.meta == fresh.meta and second.stats == json.loads(json.dumps(fresh.stats))
    np.testing.assert_array_equal(second.id_maps.items, fresh.id_maps.items)
    saved = json.loads((second.cache_path / "stats.json").read_text())
    assert saved["config"] == PipelineConfig().to_dict()
    assert len(list(BatchIterator(second.train, 64))) > 0


def test_changed_parameter_or_file_never_loads_a_stale_cache(tmp_path):
    path = write_rows(tmp_path / "ub.csv", _rows())
    cache = tmp_path / "cache"
    base = prepare(path, PipelineConfig(), cache_dir=cache)
    for changed in (
        PipelineConfig(seed=1),
        PipelineConfig(max_len=7),
        PipelineConfig(negative_scheme="popularity"),
        PipelineConfig(category_filter=True),
    ):
        other = prepare(path, changed, cache_dir=cache)
        assert not other.from_cache and other.cache_path != base.cache_path
        assert other.config == changed
    assert prepare(path, PipelineConfig(max_len=7), cache_dir=cache).train["hist_items"].shape[1] == 7
    # same path, new content (and a forced old mtime would not fool it either: the size changes)
    stat = os.stat(path)
    write_rows(path, _rows(extra_item=1000))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    edited = prepare(path, PipelineConfig(), cache_dir=cache)
    assert not edited.from_cache and edited.cache_path != base.cache_path
    assert edited.id_maps.items.min() >= 1100


def test_no_partial_entries_after_a_failure(tmp_path):
    path = write_rows(tmp_path / "ub.csv", [(1, 2, 3, "pv", T0 + 1)])
    cache = tmp_path / "cache"
    try:
        prepare(path, PipelineConfig(), cache_dir=cache)
    except ValueError:
        pass
    assert [p.name for p in cache.iterdir()] == ["file_digests.json"]


def test_statistics_json_records_what_the_reader_dropped(tmp_path):
    bad = ["1,2,3,pv", "1,x,3,pv,5", "1,2,3,jump,5", "4,5,6,pv,later"]
    out_of_window = [(1, 150, 1, "pv", T0 - 10 * DAY), (2, 150, 1, "pv", T0 - 9 * DAY)]
    path = write_rows(tmp_path / "ub.csv", [*_rows(), *bad, *out_of_window])
    prepared = prepare(path, PipelineConfig(), cache_dir=tmp_path / "cache")
    prepared.save_stats(tmp_path / "stats.json")
    dropped = json.loads((tmp_path / "stats.json").read_text())["stats"]["read"]["dropped"]
    assert dropped["bad_lines"] == 4 and dropped["out_of_window"] == 2
    assert {k: v for k, v in dropped["bad_lines_by_reason"].items() if v} == {
        "column_count": 1,
        "bad_id": 1,
        "bad_behavior": 1,
        "bad_timestamp": 1,
    }
