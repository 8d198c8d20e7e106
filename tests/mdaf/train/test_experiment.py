"""End to end on tiny generated data through the command line: train, evaluate, report, reload, predict."""

import contextlib
import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

import mdaf
from mdaf.cli import main
from mdaf.data import PipelineConfig, generate_synthetic, prepare
from mdaf.train.metrics import auc
from mdaf.train.report import CONSOLE_WIDTH, render_console
from mdaf_kernels import backend

TINY_MODEL = ["--set", "embed_dim=16", "--set", "mdaf.d_state=4", "--set", "mdaf.expand=1"]
TINY_PIPELINE = ["--max-len", "10"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = generate_synthetic(root / "tiny.csv", users=40, items=300, categories=12, rows_per_user=60, seed=3)
    out = root / "run"
    argv = [
        "train",
        "--data",
        str(data),
        "--cache-dir",
        str(root / "cache"),
        "--out",
        str(out),
        "--models",
        "mdaf",
        "dcnv2",
        "--epochs",
        "3",
        "--batch-size",
        "256",
        "--lr",
        "3e-3",
        "--n-boot",
        "100",
        "--no-progress",
        "--train-eval-samples",
        "1000",
        *TINY_MODEL,
        *TINY_PIPELINE,
    ]
    # module-scoped fixtures run before conftest's per-test switch to the reference ops: switch here
    with backend.use("torch") if backend.interpreter_active() else contextlib.nullcontext():
        assert main(argv) == 0
    return {
        "root": root,
        "data": data,
        "out": out,
        "argv": argv,
        "results": json.loads((out / "results.json").read_text()),
    }


def test_mdaf_beats_a_constant_predictor_and_reports_every_table(run):
    results = run["results"]
    mdaf_run = results["models"]["mdaf"]["runs"][0]
    # a constant predictor has AUC 0.5; the planted signal is learnt within 3 tiny epochs
    assert mdaf_run["metrics"]["auc"] > 0.62
    assert len(mdaf_run["history"]) == 3 and {"train_auc", "val_auc", "gap", "val_logloss"} <= set(
        mdaf_run["history"][0]
    )
    assert set(results["floors"]) == {
        "floor:item-popularity",
        "floor:category-share",
        "floor:item-in-history",
        "floor:target-unknown",
    }
    for floor in results["floors"].values():
        assert floor["auc"] >= 0.5 and floor["auc"] == pytest.approx(
            max(floor["raw_auc"], 1 - floor["raw_auc"])
        )
    assert "floors" in results["models"]["mdaf"]["verdict"]
    assert set(results["models"]["mdaf"]["vs_floors"][0]) == set(results["floors"])
    # settings chosen on the held-out training day: validation chooses nothing
    assert results["data"]["n_fit"] + results["data"]["n_holdout"] == results["data"]["n_train"]
    assert results["models"]["mdaf"]["lr_selection"]["chosen"] == 3e-3
    assert 0.5 < mdaf_run["metrics"]["holdout_auc"] and 0.5 < mdaf_run["metrics"]["train_auc"]
    gate = mdaf_run["gate"]
    assert 0 < gate["stats"]["min"] <= gate["stats"]["mean"] <= gate["stats"]["max"] < 1
    assert [b["history_length"] for b in gate["by_history_length"]] == ["< 10", "10-30", "> 30"]
    assert results["models"]["dcnv2"]["runs"][0]["gate"] is None
    (test,) = results["significance"]
    assert (test["a"], test["b"]) == ("mdaf", "dcnv2") and test["bootstrap"]["low"] <= test["bootstrap"][
        "high"
    ]
    summary = (run["out"] / "summary.md").read_text()
    for title in (
        "Table 2",
        "Table 4",
        "Table 5",
        "Table 6",
        "Table 7",
        "Significance",
        "floor:category-share",
    ):
        assert title in summary
    assert (run["out"] / "val_auc.png").stat().st_size > 0 and (run["out"] / "gate.png").stat().st_size > 0
    assert results["config"]["pipeline"]["max_len"] == 10 and results["config"]["train"]["batch_size"] == 256


def test_console_tables_fit_a_terminal(run):
    # the widest case: several seeds (mean ± std cells) and the longest model name
    results = copy.deepcopy(run["results"])
    results["models"]["mdaf-attn-fusion"] = results["models"].pop("dcnv2")
    for model in results["models"].values():
        model["summary"] = {k: {**v, "n": 3, "std": 0.0123} for k, v in model["summary"].items()}
        model["runs"] = [{**model["runs"][0], "seed": seed, "best_epoch": 20} for seed in (0, 1, 2)]
    text = render_console(results)
    assert max(len(line) for line in text.splitlines()) <= CONSOLE_WIDTH
    floors = results["floors"]
    assert all(f"{name}: untrained, {floor['description']}" in text for name, floor in floors.items())
    assert "  mdaf: " in text and "vs the best floor" in text
    assert "UNDER-TRAINED" not in text
    results["models"]["mdaf-attn-fusion"]["undertrained"] = True
    assert "  mdaf-attn-fusion: UNDER-TRAINED: " in render_console(results)


def test_reload_and_predict_match_the_evaluation(run):
    model, info = mdaf.load(run["out"] / "mdaf" / "seed0" / "best.pt")
    assert info.model_name == "mdaf" and info.model_config.embed_dim == 16 and not model.training
    prepared = prepare(run["data"], PipelineConfig(max_len=10), cache_dir=run["root"] / "cache")
    valid = {k: np.asarray(v) for k, v in prepared.valid.items()}
    probs, gate = mdaf.predict(model, valid, return_gate=True, batch_size=100)
    assert probs.shape == (len(valid["label"]),) and gate is not None
    expected = run["results"]["models"]["mdaf"]["runs"][0]["metrics"]["auc"]
    assert auc(valid["label"], probs) == pytest.approx(expected, abs=1e-6)
    # the same rows as a DataFrame with id lists (oldest first) give the same scores
    rows = slice(0, 50)
    lengths = valid["hist_len"][rows]
    frame = pd.DataFrame(
        {
            "user": valid["user"][rows],
            "item": valid["item"][rows],
            "category": valid["category"][rows],
            "hist_items": [h[:n].tolist() for h, n in zip(valid["hist_items"][rows], lengths, strict=True)],
            "hist_cats": [h[:n].tolist() for h, n in zip(valid["hist_cats"][rows], lengths, strict=True)],
        }
    )
    np.testing.assert_allclose(mdaf.predict(model, frame), probs[rows], rtol=1e-5, atol=1e-6)
    tensors = {
        k: torch.tensor(valid[k][rows])
        for k in ("user", "item", "category", "hist_items", "hist_cats", "hist_len")
    }
    np.testing.assert_allclose(mdaf.predict(model, tensors, device="cpu"), probs[rows], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="lacks columns"):
        mdaf.predict(model, frame.drop(columns=["hist_cats"]))


def test_evaluate_and_report_commands(run, capsys):
    out_json = run["root"] / "eval.json"
    checkpoint = run["out"] / "mdaf" / "seed0" / "best.pt"
    assert (
        main(["evaluate", str(checkpoint), "--cache-dir", str(run["root"] / "cache"), "--out", str(out_json)])
        == 0
    )
    evaluation = json.loads(out_json.read_text())
    expected = run["results"]["models"]["mdaf"]["runs"][0]["metrics"]["auc"]
    assert evaluation["metrics"]["auc"] == pytest.approx(expected, abs=1e-9)
    (run["out"] / "summary.md").unlink()
    assert main(["report", str(run["out"])]) == 0
    assert "Table 2" in (run["out"] / "summary.md").read_text()
    assert "Overall comparison" in capsys.readouterr().out


def test_resume_of_a_finished_run_reproduces_it(run):
    with backend.use("torch") if backend.interpreter_active() else contextlib.nullcontext():
        assert main([*run["argv"], "--resume"]) == 0
    again = json.loads((run["out"] / "results.json").read_text())
    for name in ("mdaf", "dcnv2"):
        assert (
            again["models"][name]["runs"][0]["metrics"]
            == run["results"]["models"][name]["runs"][0]["metrics"]
        )
        assert len(again["models"][name]["runs"][0]["history"]) == 3


def test_learning_rate_chosen_on_held_out_training_days(run, tmp_path):
    from mdaf.train.config import TrainConfig
    from mdaf.train.experiment import run_experiment

    prepared = prepare(run["data"], PipelineConfig(max_len=10), cache_dir=run["root"] / "cache")
    config = TrainConfig(epochs=2, batch_size=256, progress=False, train_eval_samples=1000, patience=0)
    results = run_experiment(
        prepared,
        ["dcnv2"],
        train_config=config,
        out_dir=tmp_path,
        model_overrides={"dcnv2": {"embed_dim": 16}},
        lr_candidates=[1e-6, 3e-3],
        n_boot=20,
        log=lambda text: None,
    )
    selection = results["models"]["dcnv2"]["lr_selection"]
    # 1e-6 barely moves the weights in 2 epochs; the rule must see that on the held-out day
    assert (
        selection["chosen"] == 3e-3 and selection["holdout_auc"]["0.003"] > selection["holdout_auc"]["1e-06"]
    )
    assert (tmp_path / "dcnv2" / "seed0-lr1e-06" / "best.pt").is_file()
    assert results["models"]["dcnv2"]["runs"][0]["lr"] == 3e-3
    assert "learning rate" in results["config"]["selection"]["rule"]
