"""``prepare``: read -> pipeline steps -> id maps -> arrays, with statistics and a disk cache.

The cache lives in ``cache_dir/<key>/``, one ``.npy`` per array (loaded as read-only memmaps, so
a second run takes seconds and training can stream a split larger than RAM) plus ``meta.json``
(table sizes, statistics, config, read report). The key hashes the input file's content, every
pipeline parameter and :data:`CACHE_VERSION`, so a changed file or parameter never loads a stale
cache. The file's content hash is remembered per ``(path, size, mtime)`` in
``cache_dir/file_digests.json`` to avoid re-hashing gigabytes on every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mdaf.data import pipeline as P
from mdaf.data.reader import BEHAVIORS, read_behaviors
from mdaf.schema import DatasetMeta

CACHE_VERSION = 2
"""Bump when the pipeline's output changes for the same file and parameters."""
ARRAY_KEYS = ("user", "item", "category", "hist_items", "hist_cats", "hist_len", "label", "timestamp")
STEP_NAMES = ("read", "clicks", "samples", "nonempty_history", "category_filter", "train", "valid")


@dataclass
class PreparedData:
    """The prepared dataset: the two splits (batch-contract arrays), table sizes, statistics, config.

    Ids outside the vocabulary (``PipelineConfig.vocabulary``: by default ids seen fewer than
    ``oov_min_count`` times in the training split, and every id unseen there) are ``OOV_ID``, a row
    that training samples of rare ids train; ``hist_len`` counts such history positions. Padding
    positions are ``PAD_ID``. ``id_maps`` turns raw ids into these ids (``IdMaps.lookup``).
    """

    train: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    meta: DatasetMeta
    stats: dict
    config: P.PipelineConfig
    id_maps: P.IdMaps | None = None
    cache_path: Path | None = None
    from_cache: bool = False
    extra: dict = field(default_factory=dict)

    def stats_table(self) -> str:
        return format_stats(self.stats)

    def save_stats(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps({"config": self.config.to_dict(), "stats": self.stats}, indent=2))


def format_stats(stats: dict) -> str:
    """A plain-text table of the per-step statistics (like the paper's Tables 1 and 6)."""
    head = (
        f"{'step':<18}{'samples':>11}{'users':>9}{'items':>9}{'cats':>7}{'pos rate':>9}"
        f"{'hist mean':>10}{'p50':>6}{'full':>7}{'cat in hist':>12}"
    )
    lines = [head]
    for name in STEP_NAMES:
        s = stats.get(name)
        if s is None:
            continue
        n = s.get("samples", s.get("rows", 0))
        hist = s.get("history_length", {})
        cells = [f"{name:<18}{n:>11,}{s['users']:>9,}{s['items']:>9,}{s['categories']:>7,}"]
        cells.append(f"{s['positive_rate']:>9.3f}" if "positive_rate" in s else f"{'':>9}")
        if hist:
            cells.append(
                f"{hist['mean']:>10.1f}{hist['p50']:>6.0f}{hist['share_full']:>7.1%}"
                f"{s['target_category_in_history']:>12.1%}"
            )
        lines.append("".join(cells))
    return "\n".join(lines + protocol_lines(stats))


def protocol_lines(stats: dict) -> list[str]:
    """What the negatives and the vocabulary did: the pool, the audit rates (0 where the protocol
    excludes them) and the out-of-vocabulary shares per split."""
    lines = []
    samples = stats.get("samples", {})
    audit = samples.get("negative_audit")
    if audit and audit.get("negatives"):
        lines.append(
            f"negatives from {samples['negative_pool']}: clicked by the user before the sample"
            f" {audit['clicked_before_sample']:.2%}, in the history {audit['in_history']:.2%}, first seen"
            f" after the sample {audit['first_seen_after_sample']:.2%}"
        )
    if "vocabulary" in stats:
        vocabulary = stats["vocabulary"]
        lines.append(
            f"vocabulary {vocabulary['kind']}, oov_min_count {vocabulary['oov_min_count']}:"
            f" {vocabulary['description']}"
        )
    for split in ("train", "valid"):
        oov = stats.get(split, {}).get("oov_share")
        if oov:
            lines.append(
                f"out of vocabulary in {split}: targets of positives {oov['target_item_positives']:.1%},"
                f" of negatives {oov['target_item_negatives']:.1%}, last history item"
                f" {oov['last_history_item']:.1%}, users {oov['users']:.1%}"
            )
    return lines


def file_digest(path: Path, cache_dir: Path | None = None) -> str:
    """BLAKE2b of the file's bytes, remembered per (path, size, mtime) when ``cache_dir`` is given."""
    stat = path.stat()
    memo_key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    memo_path = cache_dir / "file_digests.json" if cache_dir is not None else None
    memo = {}
    if memo_path is not None and memo_path.is_file():
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, ValueError):
            memo = {}
        if memo_key in memo:
            return memo[memo_key]
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    value = digest.hexdigest()
    if memo_path is not None:
        memo[memo_key] = value
        _atomic_write_text(memo_path, json.dumps(memo, indent=1))
    return value


def cache_key(digest: str, config: P.PipelineConfig) -> str:
    payload = json.dumps(
        {"file": digest, "config": config.to_dict(), "version": CACHE_VERSION}, sort_keys=True
    )
    return hashlib.blake2b(payload.encode(), digest_size=12).hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _load_cached(entry: Path, config: P.PipelineConfig) -> PreparedData:
    meta_json = json.loads((entry / "meta.json").read_text())
    splits = {
        split: {k: np.load(entry / f"{split}_{k}.npy", mmap_mode="r") for k in ARRAY_KEYS}
        for split in ("train", "valid")
    }
    maps = P.IdMaps(*(np.load(entry / f"ids_{name}.npy") for name in ("users", "items", "categories")))
    return PreparedData(
        splits["train"],
        splits["valid"],
        DatasetMeta(**meta_json["meta"]),
        meta_json["stats"],
        config,
        id_maps=maps,
        cache_path=entry,
        from_cache=True,
        extra=meta_json.get("extra", {}),
    )


def prepare(
    path: str | os.PathLike,
    config: P.PipelineConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    log: Callable[[str], None] | None = None,
    chunk_rows: int = 1 << 20,
) -> PreparedData:
    """Run the whole pipeline on ``path`` (UserBehavior CSV or gzip), or load it from the cache.

    ``log`` (e.g. ``print``) receives the read report and the statistics table. With
    ``cache_dir`` the arrays are written there as ``.npy`` and returned as read-only memmaps.
    """
    config = config or P.PipelineConfig()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"UserBehavior file not found: {path}")
    entry = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        entry = cache_dir / cache_key(file_digest(path, cache_dir), config)
        if (entry / "meta.json").is_file():
            data = _load_cached(entry, config)
            if log:
                log(f"loaded cached dataset {entry}\n{data.stats_table()}")
            return data
    events, report = _read_events(path, config, chunk_rows)
    if log:
        log(str(report))
    build_dir = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".building-")) if entry is not None else None
    try:
        data = _run_pipeline(events, config, report.to_dict(), build_dir)
        if log:
            log(data.stats_table())
        if entry is None:
            return data
        (build_dir / "meta.json").write_text(
            json.dumps(
                {
                    "meta": data.meta.__dict__,
                    "stats": data.stats,
                    "config": config.to_dict(),
                    "extra": data.extra,
                },
                indent=2,
            )
        )
        data.save_stats(build_dir / "stats.json")
        for name in ("users", "items", "categories"):
            np.save(build_dir / f"ids_{name}.npy", getattr(data.id_maps, name))
        try:
            os.replace(build_dir, entry)
        except OSError:  # another process finished the same entry first: use theirs
            shutil.rmtree(build_dir, ignore_errors=True)
        data = _load_cached(entry, config)
        data.from_cache = False
        return data
    except BaseException:
        if build_dir is not None:
            shutil.rmtree(build_dir, ignore_errors=True)
        raise


def _write_npy(out_dir: Path, split: str, n: int, max_len: int, chunks) -> None:
    """Write ``<split>_<key>.npy`` files chunk by chunk with plain writes (no memmap: the resident
    set stays at one chunk however large the split)."""
    files = {}
    try:
        for key, (row, dtype) in P.array_specs(max_len).items():
            files[key] = open(out_dir / f"{split}_{key}.npy", "wb")
            header = {
                "descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": False,
                "shape": (n, *row),
            }
            np.lib.format.write_array_header_1_0(files[key], header)
        written = 0
        for chunk in chunks:
            for key, value in chunk.items():
                files[key].write(np.ascontiguousarray(value).tobytes())
            written += chunk["user"].size
        if written != n:
            raise RuntimeError(f"wrote {written} rows of {split}, expected {n}")
    finally:
        for f in files.values():
            f.close()


def events_from_frame(frame) -> dict[str, np.ndarray]:
    """The pipeline's events table from a ``read_behaviors`` DataFrame (or any frame with its columns;
    ``behavior_type`` as strings of :data:`BEHAVIORS` or their Categorical)."""
    behavior = pd.Categorical(frame["behavior_type"], categories=BEHAVIORS)
    return {
        "user": frame["user_id"].to_numpy(),
        "item": frame["item_id"].to_numpy(),
        "category": frame["category_id"].to_numpy(),
        "timestamp": frame["timestamp"].to_numpy(),
        "behavior": np.asarray(behavior.codes),
    }


def _read_events(path: Path, config: P.PipelineConfig, chunk_rows: int):
    keep = None
    if config.user_fraction < 1.0:

        def keep(users):
            return P.select_users(users, config.user_fraction, config.seed)

    frame, report = read_behaviors(path, window=config.window, keep_users=keep, chunk_rows=chunk_rows)
    events = events_from_frame(frame)
    if events["user"].size == 0:
        raise ValueError(
            f"no valid rows left to prepare in {path} (after the window and user sampling):\n{report}"
        )
    return events, report


def _run_pipeline(
    events: dict, config: P.PipelineConfig, read_report: dict, out_dir: Path | None
) -> PreparedData:
    stats: dict = {"read": P.event_stats(events)}
    # what the reader dropped, as the console shows it: bad lines per reason, out-of-window rows
    stats["read"]["dropped"] = {
        "bad_lines": read_report["bad_lines"],
        "bad_lines_by_reason": read_report["bad"],
        "out_of_window": read_report["out_of_window"],
    }
    clicks = P.extract_clicks(events)
    if clicks.user.size == 0:
        raise ValueError("no click (pv) events to build samples from")
    stats["clicks"] = P.sample_stats(
        {
            "user": clicks.user,
            "item": clicks.item,
            "category": clicks.category,
            "label": np.ones(clicks.user.size),
        },
        None,
        config.max_len,
    )
    last_day = int(P.day_index(events["timestamp"].max(), config.utc_offset_hours))
    pools = P.item_pools(events, clicks)
    del events
    positives = P.attach_histories(P.positive_samples(clicks, config, last_day), clicks, config.max_len)
    samples, negative_counts = P.sample_negatives(positives, clicks, pools, config)
    samples = P.mark_category_in_history(samples, clicks, config.max_len)
    del positives
    stats["samples"] = {
        **P.sample_stats(samples, clicks, config.max_len),
        **negative_counts,
        "negative_pool": P.NEGATIVE_POOLS[config.negative_scheme],
        "negative_audit": P.negative_audit(samples, clicks, pools, config.max_len),
    }
    samples = P.drop_empty_history(samples)
    stats["nonempty_history"] = P.sample_stats(samples, clicks, config.max_len)
    if config.category_filter:
        samples = P.filter_category(samples, clicks, config.max_len)
        stats["category_filter"] = P.sample_stats(samples, clicks, config.max_len)
    train, valid = P.temporal_split(samples, last_day, config.validation_days)
    del samples
    train, valid = P.limit_train_samples(train, valid, config.max_train_samples, config.seed)
    if train["user"].size == 0:
        raise ValueError("the training split is empty: too few days or samples for the temporal split")
    train, valid = P.sort_samples(train), P.sort_samples(valid)
    stats["train"] = P.sample_stats(train, clicks, config.max_len)
    stats["valid"] = P.sample_stats(valid, clicks, config.max_len)
    vocabulary_splits = (train,) if config.vocabulary == "train" else (train, valid)
    maps = P.fit_id_maps(vocabulary_splits, clicks, config.oov_min_count)
    num_users, num_items, num_categories = maps.sizes()
    meta = DatasetMeta(
        num_users=num_users, num_items=num_items, num_categories=num_categories, max_len=config.max_len
    )
    stats["vocabulary"] = {
        "kind": config.vocabulary,
        "oov_min_count": config.oov_min_count,
        "description": P.VOCABULARIES[config.vocabulary],
    }
    for split, part in (("train", train), ("valid", valid)):
        stats[split]["oov_share"] = P.oov_stats(part, clicks, maps)
    stats["tables"] = {"num_users": num_users, "num_items": num_items, "num_categories": num_categories}
    arrays = {}
    for split, part in (("train", train), ("valid", valid)):
        if out_dir is None:
            arrays[split] = P.materialize(part, clicks, maps, config.max_len)
        else:
            _write_npy(
                out_dir,
                split,
                part["user"].size,
                config.max_len,
                P.materialize_chunks(part, clicks, maps, config.max_len),
            )
            arrays[split] = {}
    return PreparedData(
        arrays["train"],
        arrays["valid"],
        meta,
        stats,
        config,
        id_maps=maps,
        extra={"read_report": read_report},
    )
