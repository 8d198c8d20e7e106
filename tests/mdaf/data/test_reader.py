"""The streaming reader: valid rows kept exactly, every bad-line kind counted, strict mode, bad files."""

import gzip

import numpy as np
import pandas as pd
import pytest

from mdaf.data import BEHAVIORS, MalformedLineError, read_behaviors
from tests.mdaf.data.conftest import DAY, T0, write_rows

GOOD = [
    (1, 10, 100, "pv", T0 + 5),
    (1, 11, 100, "buy", T0 + 9),
    (3, 16, 200, "cart", T0 + DAY),
    (3, 18, 200, "fav", T0 + 2 * DAY),
    (7, 2**31 - 1, 5, "pv", T0 + 8 * DAY + 86_399),
]
BAD = {  # line -> kind
    "": "column_count",
    "2,13,100,pv,1511544070,9": "column_count",
    "2,13,100,pv": "column_count",
    "2,abc,100,pv,1511544070": "bad_id",
    "2,13,1.5,pv,1511544070": "bad_id",
    "-2,13,100,pv,1511544070": "bad_id",
    "0,13,100,pv,1511544070": "bad_id",
    "2,13,100,click,1511544070": "bad_behavior",
    "2,13,100,,1511544070": "bad_behavior",
    "2,13,100,pv,15115440x0": "bad_timestamp",
    "2,13,100,pv,": "bad_timestamp",
}
OUT_OF_WINDOW = [(4, 40, 400, "pv", T0 - 1), (4, 41, 400, "pv", T0 + 9 * DAY), (4, 42, 400, "pv", 1505117799)]


def _mixed_rows():
    """Good rows interleaved with every bad kind and out-of-window rows, with their line numbers."""
    rows, expected_bad = [], {}
    bad_iter, oow_iter = iter(BAD.items()), iter(OUT_OF_WINDOW)
    for good in GOOD * 3:
        rows.append(good)
        for extra in (next(bad_iter, None), next(oow_iter, None)):
            if extra is None:
                continue
            if isinstance(extra, tuple) and isinstance(extra[0], str):
                rows.append(extra[0])
                expected_bad[len(rows)] = extra[1]
            else:
                rows.append(extra)
    return rows, expected_bad


def _expected_frame():
    return pd.DataFrame(GOOD * 3, columns=["user_id", "item_id", "category_id", "behavior_type", "timestamp"])


@pytest.mark.parametrize("chunk_rows", [1, 2, 7, 1 << 20])
@pytest.mark.parametrize("compressed", [False, True])
def test_bad_lines_counted_and_valid_rows_kept(tmp_path, chunk_rows, compressed):
    rows, expected_bad = _mixed_rows()
    path = write_rows(tmp_path / "ub.csv", rows)
    if compressed:
        gz = tmp_path / "ub.csv.gz"
        gz.write_bytes(gzip.compress(path.read_bytes()))
        path = gz
    frame, report = read_behaviors(path, chunk_rows=chunk_rows)
    expected = _expected_frame()
    for col in ("user_id", "item_id", "category_id", "timestamp"):
        np.testing.assert_array_equal(frame[col].to_numpy(), expected[col].to_numpy())
    assert list(frame["behavior_type"].astype(str)) == list(expected["behavior_type"])
    assert report.lines == len(rows)
    assert report.valid_rows == len(frame) == len(GOOD) * 3
    assert report.out_of_window == len(OUT_OF_WINDOW)
    kinds = {}
    for kind in expected_bad.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    assert {k: v for k, v in report.bad.items() if v} == kinds
    assert report.valid_rows + report.bad_lines + report.out_of_window == report.lines  # nothing silent
    for kind, examples in report.examples.items():
        for line_number, text in examples:
            assert expected_bad[line_number] == kind
            assert text == rows[line_number - 1]
    assert report.behavior_counts == {b: 3 * sum(g[3] == b for g in GOOD) for b in BEHAVIORS}
    assert "bad_id" in str(report) and "out of window" in str(report)


def test_compact_dtypes(tmp_path):
    frame, _ = read_behaviors(write_rows(tmp_path / "ub.csv", GOOD))
    assert frame["user_id"].dtype == np.int32 and frame["item_id"].dtype == np.int32
    assert frame["category_id"].dtype == np.int32 and frame["timestamp"].dtype == np.int64
    assert isinstance(frame["behavior_type"].dtype, pd.CategoricalDtype)
    assert list(frame["behavior_type"].cat.categories) == list(BEHAVIORS)
    big = [(1, 2**40, 3, "pv", T0 + 1)]
    frame, report = read_behaviors(write_rows(tmp_path / "big.csv", big))
    assert report.valid_rows == 1 and frame["item_id"].iloc[0] == 2**40  # wider ids widen, never wrap


@pytest.mark.parametrize("line, kind", list(BAD.items()))
def test_strict_names_file_and_line(tmp_path, line, kind):
    path = write_rows(tmp_path / "ub.csv", [GOOD[0], GOOD[1], line, GOOD[2]])
    with pytest.raises(MalformedLineError) as err:
        read_behaviors(path, strict=True, chunk_rows=1)
    assert err.value.line_number == 3 and err.value.kind == kind
    assert str(path) in str(err.value) and ":3:" in str(err.value)


def test_strict_accepts_clean_file_and_drops_out_of_window(tmp_path):
    frame, report = read_behaviors(write_rows(tmp_path / "ub.csv", GOOD + OUT_OF_WINDOW), strict=True)
    assert len(frame) == len(GOOD) and report.out_of_window == len(OUT_OF_WINDOW)


def test_truncated_last_line(tmp_path):
    path = write_rows(tmp_path / "ub.csv", [*GOOD, "100370,1968385,1875258,pv"], trailing_newline=False)
    frame, report = read_behaviors(path, chunk_rows=1)
    assert len(frame) == len(GOOD)
    assert report.bad["truncated_line"] == 1 and report.bad_lines == 1
    assert report.examples["truncated_line"] == [(len(GOOD) + 1, "100370,1968385,1875258,pv")]
    with pytest.raises(MalformedLineError, match="truncated_line"):
        read_behaviors(path, strict=True)


def test_missing_final_newline_keeps_a_complete_last_row(tmp_path):
    frame, report = read_behaviors(write_rows(tmp_path / "ub.csv", GOOD, trailing_newline=False))
    assert len(frame) == len(GOOD) and report.bad_lines == 0


def test_crlf_line_ends(tmp_path):
    path = tmp_path / "ub.csv"
    path.write_bytes(b"".join(",".join(map(str, r)).encode() + b"\r\n" for r in GOOD))
    frame, report = read_behaviors(path)
    assert len(frame) == len(GOOD) and report.bad_lines == 0
    assert list(frame["behavior_type"].astype(str)) == [r[3] for r in GOOD]


def test_window_none_keeps_every_timestamp(tmp_path):
    frame, report = read_behaviors(write_rows(tmp_path / "ub.csv", GOOD + OUT_OF_WINDOW), window=None)
    assert len(frame) == len(GOOD) + len(OUT_OF_WINDOW) and report.out_of_window == 0


def test_keep_users_filters_while_streaming(tmp_path):
    frame, report = read_behaviors(
        write_rows(tmp_path / "ub.csv", GOOD), keep_users=lambda u: u != 3, chunk_rows=1
    )
    assert set(frame["user_id"]) == {1, 7} and report.valid_rows == len(frame)


def test_cut_gzip_stream(tmp_path):
    data = gzip.compress("".join(",".join(map(str, r)) + "\n" for r in GOOD * 200).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    frame, report = read_behaviors(path, chunk_rows=16)
    assert report.truncated_stream and 0 < len(frame) < len(GOOD) * 200
    assert report.valid_rows + report.bad_lines + report.out_of_window == report.lines
    with pytest.raises(ValueError, match="compressed stream"):
        read_behaviors(path, strict=True, chunk_rows=16)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_behaviors(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_behaviors(tmp_path / "empty.csv")
    (tmp_path / "empty.csv.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(ValueError, match="no lines"):
        read_behaviors(tmp_path / "empty.csv.gz")
