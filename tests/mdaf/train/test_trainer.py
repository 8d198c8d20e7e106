"""The trainer on a stand-in model: learning, early stopping, exact resume, atomic checkpoints."""

import numpy as np
import pytest
import torch

from mdaf.train.checkpoint import CHECKPOINT_FORMAT, atomic_save, load_checkpoint, seed_everything
from mdaf.train.config import TrainConfig
from mdaf.train.trainer import Trainer, make_lr_lambda, smooth_targets
from tests.mdaf.train.helpers import StandIn, tiny_split

TRAIN = tiny_split(1200, seed=1)
VALID = tiny_split(400, seed=2)


def config(**changes):
    base = dict(
        epochs=3, batch_size=128, eval_batch_size=256, lr=3e-2, progress=False, train_eval_samples=300
    )
    return TrainConfig(**{**base, **changes})


def fit(cfg, out_dir=None, seed=0, **kwargs):
    seed_everything(seed)
    trainer = Trainer(StandIn(), cfg, out_dir=out_dir, log=lambda _: None)
    return trainer, trainer.fit(TRAIN, VALID, **kwargs)


def test_learns_the_planted_signal_and_reports_dynamics():
    _, result = fit(config(epochs=4))
    assert result.evaluation.metrics["auc"] > 0.72  # a constant predictor scores 0.5
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    for record in result.history:
        assert record["gap"] == pytest.approx(record["train_auc"] - record["val_auc"])
        assert record["samples_per_s"] > 0
    assert result.best_val_auc == max(r["val_auc"] for r in result.history)
    assert result.evaluation.gate is not None and result.evaluation.gate.shape == (400,)


def test_early_stopping_keeps_the_best_epoch():
    # a learning rate this small cannot raise validation AUC by min_delta: epoch 1 stays the best
    _, result = fit(config(epochs=10, lr=1e-9, patience=2, min_delta=0.05))
    assert result.stopped_early
    assert result.epochs_run == 3 and result.best_epoch == 1


def test_best_weights_are_restored(tmp_path):
    trainer, result = fit(config(epochs=3), out_dir=tmp_path)
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == result.best_epoch
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, best["model_state"][key], rtol=0, atol=0)
    assert result.evaluation.metrics["auc"] == pytest.approx(result.best_val_auc)


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("stop_at", [5, 10])  # mid-epoch (10 batches per epoch) and at an epoch's end
def test_resume_gives_the_uninterrupted_result(tmp_path, stop_at):
    cfg = config(checkpoint_every=5)
    _, full = fit(cfg, out_dir=tmp_path / "full")

    def crash(step):
        if step == stop_at:
            raise Interrupted

    with pytest.raises(Interrupted):
        fit(cfg, out_dir=tmp_path / "cut", on_step=crash)
    saved = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert saved["trainer_state"]["global_step"] == stop_at
    # a different initialisation seed: everything must come from the checkpoint
    trainer, resumed = fit(cfg, out_dir=tmp_path / "cut", seed=123, resume=tmp_path / "cut" / "last.pt")
    keys = ("epoch", "train_loss", "train_auc", "val_auc", "val_logloss", "best")

    def table(history):
        return [{k: r[k] for k in keys} for r in history]

    assert table(resumed.history) == table(full.history)
    np.testing.assert_array_equal(resumed.evaluation.probs, full.evaluation.probs)


def test_resume_refuses_a_changed_config(tmp_path):
    fit(config(epochs=1), out_dir=tmp_path)
    with pytest.raises(ValueError, match="lr"):
        fit(config(epochs=1, lr=1e-3), out_dir=tmp_path, resume=tmp_path / "last.pt")
    with pytest.raises(ValueError, match="resume needs"):
        fit(config(epochs=1), resume=tmp_path / "best.pt")


def test_atomic_save_never_leaves_a_corrupt_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_save({"format": CHECKPOINT_FORMAT, "value": 1}, path)

    def broken_save(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"format": CHECKPOINT_FORMAT, "value": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["value"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not an mdaf checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    # a pickled object would run code on load: weights_only refuses it
    torch.save({"format": CHECKPOINT_FORMAT, "payload": Exception("code")}, tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="not a readable mdaf checkpoint"):
        load_checkpoint(tmp_path / "pickled.pt")


def test_checkpoints_hold_only_plain_values(tmp_path):
    fit(config(epochs=1), out_dir=tmp_path)
    for name in ("last.pt", "best.pt"):
        state = torch.load(tmp_path / name, weights_only=True)
        assert state["format"] == CHECKPOINT_FORMAT and "model_state" in state


def test_progress_lines_never_separate_a_row_from_its_header(capsys):
    lines = []
    seed_everything(0)
    Trainer(StandIn(), config(epochs=2, progress=True), log=lines.append).fit(TRAIN, VALID)
    rows = [i for i, line in enumerate(lines) if line.lstrip().startswith(("1 ", "2 "))]
    assert len(rows) == 2
    for i in rows:
        assert lines[i - 1].split()[:2] == ["epoch", "train"]
    progress = capsys.readouterr().err
    assert "loss (running mean)" in progress and "up to 2 epochs" in lines[0]


def test_schedule_and_smoothing():
    warm = make_lr_lambda(total_steps=100, warmup_steps=10, schedule="linear")
    assert warm(0) == pytest.approx(0.1) and warm(9) == pytest.approx(1.0)
    assert warm(10) == pytest.approx(1.0) and warm(100) == pytest.approx(0.0)
    assert make_lr_lambda(100, 0, "cosine")(50) == pytest.approx(0.5)
    assert make_lr_lambda(100, 0, "constant")(99) == 1.0
    assert smooth_targets(torch.tensor([0.0, 1.0]), 0.01).tolist() == pytest.approx([0.005, 0.995])


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(lr=0.0), "lr"),
        (dict(amp="fp8"), "amp"),
        (dict(schedule="step"), "schedule"),
        (dict(label_smoothing=1.0), "label_smoothing"),
        (dict(patience=-1), "patience"),
        (dict(warmup_ratio=1.0), "warmup_ratio"),
    ],
)
def test_bad_config_is_a_clear_error(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_bad_inputs_are_clear_errors():
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="needs a CUDA device"):
            Trainer(StandIn(), config(amp="bf16"))
        with pytest.raises(ValueError, match="CUDA is not available"):
            Trainer(StandIn(), config(device="cuda"))
    trainer = Trainer(StandIn(), config(), log=lambda _: None)
    with pytest.raises(ValueError, match="missing arrays"):
        trainer.fit({k: v for k, v in TRAIN.items() if k != "hist_len"}, VALID)
    with pytest.raises(ValueError, match="empty"):
        trainer.fit({k: v[:0] for k, v in TRAIN.items()}, VALID)
