"""Scoring raw Taobao ids end to end: train, reload with the id maps, score raw rows by API and CLI.

Raw rows rebuilt from the validation split (ids through the inverse id maps, histories from the
behaviour log) must give exactly the validation arrays, hence exactly the model's validation scores.
Runs on generated data always and on the real sample when present (``MDAF_DATA_DIR``).
"""

import contextlib
import json
import os

import numpy as np
import pandas as pd
import pytest

import mdaf
from mdaf.cli import main
from mdaf.data import PipelineConfig, generate_synthetic, prepare, read_behaviors
from mdaf.schema import FEATURE_KEYS, FIRST_ID
from mdaf_kernels import backend
from tests.data_location import real_sample_path

UNSEEN = -7  # a raw id no training split holds: maps to OOV_ID, the trained out-of-vocabulary row
MAX_LEN = 10


@pytest.fixture(scope="module", params=["generated", "real"])
def run(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"raw-{request.param}")
    if request.param == "real":
        data, cap = real_sample_path(), ["--max-train-samples", "4000"]
    else:
        data = generate_synthetic(
            root / "tiny.csv", users=40, items=300, categories=12, rows_per_user=60, seed=5
        )
        cap = []
    out = root / "run"
    # the data path as a user types it, relative to where the command runs
    argv = ["train", "--data", os.path.relpath(data), "--cache-dir", str(root / "cache"), "--out", str(out)]
    argv += ["--models", "dcnv2", "--epochs", "1", "--batch-size", "256", "--n-boot", "20", "--no-progress"]
    argv += ["--train-eval-samples", "500", "--max-len", str(MAX_LEN), "--set", "embed_dim=8", *cap]
    # module-scoped fixtures run before conftest's per-test switch to the reference ops: switch here
    with backend.use("torch") if backend.interpreter_active() else contextlib.nullcontext():
        assert main(argv) == 0
    config = PipelineConfig(max_len=MAX_LEN, max_train_samples=4000 if cap else None)
    prepared = prepare(data, config, cache_dir=root / "cache")
    results = json.loads((out / "results.json").read_text())
    checkpoint = out / results["models"]["dcnv2"]["runs"][0]["checkpoint"]  # relative to the run folder
    return {"root": root, "data": data, "checkpoint": checkpoint, "prepared": prepared}


def raw_ids(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Contiguous ids back to raw ids through an id map; the out-of-vocabulary id to an id training never
    saw (padding never occurs here)."""
    return np.where(ids >= FIRST_ID, table[np.maximum(ids - FIRST_ID, 0)], UNSEEN)


def raw_rows(valid, maps, rows) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": raw_ids(maps.users, valid["user"][rows]),
            "item_id": raw_ids(maps.items, valid["item"][rows]),
            "category_id": raw_ids(maps.categories, valid["category"][rows]),
            "timestamp": valid["timestamp"][rows],
        }
    )


@pytest.fixture(scope="module")
def validation(run):
    loaded = mdaf.load(run["checkpoint"])
    valid = {k: np.asarray(v) for k, v in run["prepared"].valid.items()}
    rows = np.flatnonzero(valid["user"] >= FIRST_ID)[:400]  # a known user: its raw id is recoverable
    assert rows.size > 50
    return loaded, valid, rows, mdaf.predict(loaded.model, valid)


def test_the_id_maps_travel_with_the_checkpoint(run, validation):
    loaded = validation[0]
    for name in ("users", "items", "categories"):
        np.testing.assert_array_equal(
            getattr(loaded.info.id_maps, name), getattr(run["prepared"].id_maps, name)
        )
    # the stored data path is absolute: evaluate works from any directory
    assert loaded.info.data_path == str(run["data"].resolve())


def test_evaluate_works_from_another_directory(run, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(run["checkpoint"]), "--cache-dir", str(run["root"] / "cache")]) == 0


def test_raw_rows_with_a_log_give_the_validation_arrays_and_scores(run, validation):
    loaded, valid, rows, probs = validation
    frame = raw_rows(valid, loaded.info.id_maps, rows)
    encoded = loaded.encode(frame, history_log=run["data"])
    for key in FEATURE_KEYS:
        np.testing.assert_array_equal(encoded[key], valid[key][rows], err_msg=key)
    np.testing.assert_allclose(
        loaded.predict(frame, history_log=run["data"]), probs[rows], rtol=1e-5, atol=1e-7
    )


def test_raw_rows_with_history_lists_give_the_validation_scores(validation):
    loaded, valid, rows, probs = validation
    maps = loaded.info.id_maps
    frame = raw_rows(valid, maps, rows).drop(columns="timestamp")
    lengths = valid["hist_len"][rows]
    frame["hist_item_ids"] = [
        raw_ids(maps.items, h[:n]).tolist() for h, n in zip(valid["hist_items"][rows], lengths, strict=True)
    ]
    # space-separated strings, as a CSV holds them
    frame["hist_category_ids"] = [
        " ".join(map(str, raw_ids(maps.categories, h[:n])))
        for h, n in zip(valid["hist_cats"][rows], lengths, strict=True)
    ]
    np.testing.assert_allclose(loaded.predict(frame), probs[rows], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="no history"):
        loaded.predict(frame.drop(columns="hist_item_ids"))


def test_predict_command_on_a_csv_and_on_a_userbehavior_file(run, validation, capsys):
    loaded, valid, rows, probs = validation
    csv = run["root"] / "rows.csv"
    raw_rows(valid, loaded.info.id_maps, rows).to_csv(csv, index=False)
    out = run["root"] / "scores.csv"
    argv = ["predict", "--checkpoint", str(run["checkpoint"]), "--data", str(csv), "--out", str(out)]
    assert main([*argv, "--history-log", str(run["data"])]) == 0
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["user_id", "item_id", "category_id", "timestamp", "score"]
    np.testing.assert_allclose(scores["score"], probs[rows], atol=1e-6)

    # a UserBehavior file: every row scored, histories from the same file's earlier clicks
    out_log = run["root"] / "scores_log.csv"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(run["checkpoint"]),
                "--data",
                str(run["data"]),
                "--out",
                str(out_log),
            ]
        )
        == 0
    )
    scored = pd.read_csv(out_log)
    events, _ = read_behaviors(run["data"], window=None)
    assert len(scored) == len(events) and scored["score"].between(0, 1).all()
    np.testing.assert_array_equal(scored["item_id"], events["item_id"])
    assert f"scores written to {out_log}" in capsys.readouterr().out
