"""Streaming reader for the official Taobao ``UserBehavior.csv`` (plain or gzip).

The file has no header and five columns: ``user_id, item_id, category_id, behavior_type, timestamp``
(behaviour one of ``pv, buy, cart, fav``; Unix seconds). The reader takes raw byte blocks, finds
line ends and column separators with NumPy, and hands whole blocks of well-formed lines to the
pandas C parser, so the full 100 M-row file goes through in a few GB (the result itself is about
17 bytes a row with the compact dtypes below).

Bad lines are counted per kind, reported and dropped; valid rows are never lost. Kinds:

- ``column_count``: not exactly five comma-separated fields (blank lines included);
- ``bad_id``: a user, item or category id that is not a positive integer;
- ``bad_behavior``: a behaviour other than ``pv, buy, cart, fav``;
- ``bad_timestamp``: a timestamp that is not an integer;
- ``truncated_line``: a malformed last line with no line end (the file was cut off).

Rows whose timestamp falls outside ``window`` are counted as ``out_of_window`` and dropped (they
are well-formed, so ``strict`` does not raise on them; pass ``window=None`` to keep them).
With ``strict=True`` the first bad line raises :class:`MalformedLineError` naming file and line.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")
BEHAVIORS = ("pv", "buy", "cart", "fav")
"""Behaviour categories in code order: ``pv`` (a click) is code 0."""

# 2017-11-25 00:00:00 to 2017-12-03 23:59:59 in UTC+8, inclusive (the dataset's documented window).
OFFICIAL_WINDOW = (1511539200, 1512316799)

BAD_KINDS = ("column_count", "bad_id", "bad_behavior", "bad_timestamp", "truncated_line")
_EXAMPLES_PER_KIND = 3
_BYTES_PER_ROW = 40  # a little above the official file's 37.6 bytes per line
_INT32_MAX = np.iinfo(np.int32).max


class MalformedLineError(ValueError):
    """Raised in strict mode for the first malformed line; names the file, line number and kind."""

    def __init__(self, path: str, line_number: int, kind: str, line: str):
        self.path, self.line_number, self.kind, self.line = path, line_number, kind, line
        super().__init__(f"{path}:{line_number}: {kind}: {line!r}")


@dataclass
class ReadReport:
    """What the reader saw: line counts, bad lines per kind (with examples) and dropped rows."""

    path: str
    window: tuple[int, int] | None
    lines: int = 0
    valid_rows: int = 0
    out_of_window: int = 0
    bad: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BAD_KINDS, 0))
    examples: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    behavior_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BEHAVIORS, 0))
    truncated_stream: bool = False

    @property
    def bad_lines(self) -> int:
        return sum(self.bad.values())

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "window": list(self.window) if self.window else None,
            "lines": self.lines,
            "valid_rows": self.valid_rows,
            "out_of_window": self.out_of_window,
            "bad_lines": self.bad_lines,
            "bad": dict(self.bad),
            "behavior_counts": dict(self.behavior_counts),
            "truncated_stream": self.truncated_stream,
            "examples": {k: [[n, s] for n, s in v] for k, v in self.examples.items()},
        }

    def __str__(self) -> str:
        out = [
            f"read {self.path}: {self.lines:,} lines, {self.valid_rows:,} valid rows",
            f"  dropped: {self.bad_lines:,} bad lines, {self.out_of_window:,} out of window {self.window}",
        ]
        out += [
            f"  {kind}: {n:,}"
            + "".join(f"\n    line {ln}: {text!r}" for ln, text in self.examples.get(kind, []))
            for kind, n in self.bad.items()
            if n
        ]
        if self.truncated_stream:
            out.append("  the compressed stream ended early: rows up to the cut were kept")
        total = max(self.valid_rows, 1)
        out.append(
            "  behaviours: "
            + ", ".join(f"{b} {n:,} ({n / total:.1%})" for b, n in self.behavior_counts.items())
        )
        return "\n".join(out)


def _decompressed(path: Path, block_bytes: int, report: ReadReport, strict: bool) -> Iterator[bytes]:
    """The file's bytes, gunzipped when it starts with the gzip magic (multi-member streams too).

    A cut-off gzip keeps everything decompressed before the cut (``zlib`` streams incrementally;
    ``gzip.GzipFile.read`` would lose the last block).
    """
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if not compressed:
            while data := raw.read(block_bytes):
                yield data
            return
        inflate, fed = zlib.decompressobj(wbits=31), False
        try:
            while data := raw.read(max(block_bytes // 4, 64)):  # about block_bytes once inflated
                while data:
                    fed = True
                    yield inflate.decompress(data)
                    data = b""
                    if inflate.eof:  # a member ended: the rest may start another one
                        data = inflate.unused_data
                        inflate, fed = zlib.decompressobj(wbits=31), False
            yield inflate.flush()
            complete, reason = not fed, "the stream ends before its end marker"
        except zlib.error as err:
            complete, reason = False, str(err)
        if not complete:
            if strict:
                raise ValueError(f"{path}: the compressed stream is damaged or cut off: {reason}")
            report.truncated_stream = True


def _blocks(path: Path, block_bytes: int, report: ReadReport, strict: bool) -> Iterator[tuple[bytes, bool]]:
    """Yield ``(block, ends_with_newline)``: blocks of whole lines; the last may lack a line end."""
    carry = b""
    for data in _decompressed(path, block_bytes, report, strict):
        if not data:
            continue
        data = carry + data
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        if cut:
            yield data[:cut], True
    if carry:
        yield carry, False


def _line_spans(buf: np.ndarray, ends_with_newline: bool) -> tuple[np.ndarray, np.ndarray]:
    ends = np.flatnonzero(buf == 10)
    if not ends_with_newline:
        ends = np.append(ends, buf.size)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    return starts, ends


def _line_text(block: bytes, starts: np.ndarray, ends: np.ndarray, i: int) -> str:
    return block[starts[i] : ends[i]].decode("utf-8", "replace").rstrip("\r")


def _keep_lines(block: bytes, starts: np.ndarray, ends: np.ndarray, keep: np.ndarray) -> bytes:
    """The block without the dropped lines: bad lines are rare, so join the runs between them."""
    if keep.all():
        return block
    change = np.flatnonzero(np.diff(keep.astype(np.int8), prepend=0, append=0))
    runs = change.reshape(-1, 2)  # [first kept line, one past the last] of each run
    return b"".join(block[starts[a] : ends[b - 1] + 1] for a, b in runs)


def _parse_fast(data: bytes) -> pd.DataFrame:
    return pd.read_csv(
        io.BytesIO(data),
        header=None,
        names=list(COLUMNS),
        engine="c",
        dtype={
            "user_id": np.int64,
            "item_id": np.int64,
            "category_id": np.int64,
            "behavior_type": "category",
            "timestamp": np.int64,
        },
    )


def _parse_checked(data: bytes) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Slow path for a block with non-numeric fields: returns parsed columns and the error kind per row."""
    raw = pd.read_csv(
        io.BytesIO(data),
        header=None,
        names=list(COLUMNS),
        dtype=str,
        engine="c",
        na_filter=False,
        skip_blank_lines=False,
    )
    kind = np.full(len(raw), "", dtype=object)
    cols = {}
    for name, bad in (
        ("timestamp", "bad_timestamp"),
        ("category_id", "bad_id"),
        ("item_id", "bad_id"),
        ("user_id", "bad_id"),
    ):  # the first listed kind wins below
        text = raw[name].str.strip()
        ok = text.str.fullmatch(r"[+-]?\d{1,18}").to_numpy(dtype=bool)
        values = np.zeros(len(raw), dtype=np.int64)
        values[ok] = text[ok].astype(np.int64).to_numpy()
        kind[~ok] = bad
        cols[name] = values
    cols["behavior_type"] = raw["behavior_type"].str.strip().to_numpy(dtype=object)
    return cols, kind


def _behavior_codes(values) -> np.ndarray:
    """Codes into :data:`BEHAVIORS` (int8), -1 for anything else."""
    parsed = values if isinstance(values, pd.Categorical) else pd.Categorical(values)
    lookup = np.array(
        [BEHAVIORS.index(c) if c in BEHAVIORS else -1 for c in parsed.categories] + [-1], dtype=np.int8
    )
    return lookup[parsed.codes]  # code -1 (missing) reads the last entry


def _columns_from_frame(frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
    cols = {name: frame[name].to_numpy() for name in COLUMNS if name != "behavior_type"}
    cols["behavior_type"] = frame["behavior_type"].array
    return cols, np.full(len(frame), "", dtype=object)


def read_behaviors(
    path: str | os.PathLike,
    *,
    strict: bool = False,
    chunk_rows: int = 1 << 20,
    window: tuple[int, int] | None = OFFICIAL_WINDOW,
    keep_users: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[pd.DataFrame, ReadReport]:
    """Read ``UserBehavior.csv`` (or its gzip, detected from the content) in chunks.

    Returns a DataFrame with columns ``user_id, item_id, category_id`` (int32 while the ids fit),
    ``behavior_type`` (a Categorical over :data:`BEHAVIORS`, 1 byte a row) and ``timestamp``
    (int64), in file order, and a :class:`ReadReport`. ``chunk_rows`` sets the approximate rows
    per block (memory use scales with it). ``window`` is an inclusive ``(start, end)`` range in
    Unix seconds, ``None`` to keep every timestamp. ``keep_users`` (a vectorised predicate on
    user ids) drops other users' rows while streaming, so a user sample of the full file stays
    small; dropped users' rows are not counted as valid.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"UserBehavior file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"UserBehavior file is empty: {path}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    report = ReadReport(path=str(path), window=tuple(window) if window is not None else None)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in COLUMNS}
    first_line = 1
    for block, ends_with_newline in _blocks(path, max(chunk_rows * _BYTES_PER_ROW, 64), report, strict):
        buf = np.frombuffer(block, dtype=np.uint8)
        starts, ends = _line_spans(buf, ends_with_newline)
        commas = np.flatnonzero(buf == 44)
        fields_ok = (np.searchsorted(commas, ends) - np.searchsorted(commas, starts)) == 4
        line_numbers = first_line + np.arange(starts.size)
        first_line += starts.size
        report.lines += starts.size

        kinds = np.where(fields_ok, "", "column_count").astype(object)
        good_lines = np.flatnonzero(fields_ok)
        cols = None
        if good_lines.size:
            data = _keep_lines(block, starts, ends, fields_ok)
            try:
                cols, kind = _columns_from_frame(_parse_fast(data))
            except (ValueError, OverflowError):
                cols, kind = _parse_checked(data)
            behavior = _behavior_codes(cols["behavior_type"])
            ids_ok = (cols["user_id"] > 0) & (cols["item_id"] > 0) & (cols["category_id"] > 0)
            kind[(kind == "") & ~ids_ok] = "bad_id"
            kind[(kind == "") & (behavior < 0)] = "bad_behavior"
            kinds[good_lines] = kind
        if not ends_with_newline and kinds[-1] != "":
            kinds[-1] = "truncated_line"
        bad_lines = np.flatnonzero(kinds != "")
        for i in bad_lines[:1] if strict else ():
            raise MalformedLineError(
                report.path, int(line_numbers[i]), kinds[i], _line_text(block, starts, ends, i)
            )
        for kind in BAD_KINDS:
            hits = bad_lines[kinds[bad_lines] == kind]
            report.bad[kind] += hits.size
            examples = report.examples.setdefault(kind, []) if hits.size else []
            for i in hits[: max(_EXAMPLES_PER_KIND - len(examples), 0)]:
                examples.append((int(line_numbers[i]), _line_text(block, starts, ends, i)))
        if cols is None:
            continue
        valid = kinds[good_lines] == ""
        timestamps = cols["timestamp"]
        if window is not None:
            in_window = (timestamps >= window[0]) & (timestamps <= window[1])
            report.out_of_window += int((valid & ~in_window).sum())
            valid &= in_window
        if keep_users is not None:
            valid &= np.asarray(keep_users(cols["user_id"]), dtype=bool)
        codes = behavior[valid]
        for name in ("user_id", "item_id", "category_id"):
            values = cols[name][valid]
            parts[name].append(values.astype(np.int32) if values.max(initial=0) <= _INT32_MAX else values)
        parts["timestamp"].append(timestamps[valid].astype(np.int64))
        parts["behavior_type"].append(codes)
        report.valid_rows += int(valid.sum())
        counts = np.bincount(codes, minlength=len(BEHAVIORS))
        for b, n in zip(BEHAVIORS, counts, strict=True):
            report.behavior_counts[b] += int(n)
    if report.lines == 0:
        raise ValueError(f"UserBehavior file has no lines: {path}")
    columns = {
        name: (np.concatenate(parts[name]) if parts[name] else np.zeros(0, dtype=np.int32))
        for name in COLUMNS
    }
    columns["timestamp"] = columns["timestamp"].astype(np.int64, copy=False)
    columns["behavior_type"] = pd.Categorical.from_codes(
        columns["behavior_type"].astype(np.int8), categories=BEHAVIORS
    )
    return pd.DataFrame(columns, copy=False), report
