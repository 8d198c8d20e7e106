"""The command line: complete help, clear errors for bad arguments (before any data is read)."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from mdaf.cli import COMMAND_HELP, CliError, build_parser, main, parse_model_options
from mdaf.data import PipelineConfig
from mdaf.data.pipeline import IdMaps
from mdaf.models import build_model
from mdaf.schema import DatasetMeta
from mdaf.train.checkpoint import CHECKPOINT_FORMAT, atomic_save
from mdaf.train.config import TrainConfig


@pytest.mark.parametrize("command", list(COMMAND_HELP))
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: mdaf {command}")


def test_train_help_lists_every_config_field():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for f in dataclasses.fields(TrainConfig):
        if f.name not in ("seed", "progress"):
            assert f"--{f.name.replace('_', '-')}" in text, f.name
    for f in dataclasses.fields(PipelineConfig):
        flag = "--data-seed" if f.name == "seed" else f"--{f.name.replace('_', '-')}"
        assert flag in text, f.name
    for flag in ("--data", "--models", "--epochs", "--seeds", "--device", "--out", "--set", "--no-progress"):
        assert flag in text


def test_help_texts_state_each_default_once_in_plain_words():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    helps = {a.dest: a.help for a in train._actions if a.help}
    for dest, text in helps.items():
        assert text.count("(default:") <= 1 and "('" not in text and "None" not in text, (dest, text)
    # the CPU defaults show where they apply
    assert "on CPU 512" in helps["train_batch_size"] and "on CPU 0.001" in helps["train_lr"]
    assert "on CPU 16000" in helps["pipeline_max_train_samples"] and "on CPU 2" in helps["epochs"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--device", "cuda"])
    assert exit_info.value.code == 2 and "CUDA is not available" in capsys.readouterr().err


@pytest.fixture
def bad_files(tmp_path):
    """Files a user may pass by mistake, and one small valid checkpoint with id maps."""
    meta = DatasetMeta(num_users=5, num_items=7, num_categories=3, max_len=4)
    model = build_model("dcnv2", meta, embed_dim=4)
    good = tmp_path / "good.pt"
    atomic_save(
        {
            "format": CHECKPOINT_FORMAT,
            "model_name": "dcnv2",
            "model_config": dataclasses.asdict(model.config),
            "meta": dataclasses.asdict(meta),
            "model_state": model.state_dict(),
            "id_maps": IdMaps(np.arange(1, 5), np.arange(1, 7), np.arange(1, 3)).to_dict(),
        },
        good,
    )
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    old = tmp_path / "old.pt"
    torch.save({"format": 1}, old)
    results = tmp_path / "results.json"
    results.write_text('{"models": {}}')
    corrupt_results = tmp_path / "run"
    corrupt_results.mkdir()
    (corrupt_results / "results.json").write_text("{not json")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(bytes(range(256)) * 8)
    no_ids = tmp_path / "no_ids.csv"
    no_ids.write_text("user,item\n1,2\n")
    no_item = tmp_path / "no_item.csv"
    no_item.write_text("user_id,category_id\n1,2\n")
    no_history = tmp_path / "no_history.csv"
    no_history.write_text("user_id,item_id,category_id\n1,2,3\n")
    bad_history = tmp_path / "bad_history.csv"
    bad_history.write_text("user_id,item_id,category_id,hist_item_ids,hist_category_ids\n1,2,3,a b,1 2\n")
    return {
        p.stem: str(p)
        for p in (good, truncated, old, results, corrupt, no_ids, no_item, no_history, bad_history)
    } | {
        "tmp": str(tmp_path),
        "corrupt_run": str(corrupt_results),
    }


def _predict(data: str, checkpoint: str = "{good}") -> list[str]:
    return ["predict", "--checkpoint", checkpoint, "--data", data, "--out", "{tmp}/scores.csv"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--models", "mdaf", "nope"], "unknown"),
        (["train", "--models", "mdaf", "mdaf"], "duplicate"),
        (["train", "--seeds", "1", "1"], "distinct"),
        (["train", "--batch-size", "0"], "batch_size"),
        (["train", "--lr", "-1"], "lr"),
        (["train", "--lr", "fast"], "invalid float value"),
        (["train", "--positive-rate", "2"], "positive_rate"),
        (["train", "--negative-scheme", "random"], "invalid choice"),
        (["train", "--set", "no_equals_sign"], "FIELD=VALUE"),
        (["train", "--set", "bst.d_state=4"], "no setting"),
        (["train", "--set", "nothing_has_this=4"], "none of"),
        (["train", "--set", "dcnv2.embed_dim=4"], "not among"),
        (["train", "--n-boot", "0"], "n-boot"),
        (["train", "--resume"], "--resume needs --out"),
        (["train", "--device", "tpu"], "device"),
        (["train", "--data", "/no/such/file.csv"], "file not found"),
        (["evaluate", "/no/such/best.pt"], "checkpoint not found"),
        (["evaluate", "{results}"], "not a readable mdaf checkpoint"),
        (["evaluate", "{corrupt}"], "not a readable mdaf checkpoint"),
        (["evaluate", "{truncated}"], "not a readable mdaf checkpoint"),
        (["evaluate", "{old}"], "format 1"),
        (["evaluate", "{tmp}"], "is a directory"),
        (["report", "/no/such/run"], "results.json"),
        (["report", "{corrupt_run}"], "not a results file"),
        (["nope"], "invalid choice"),
        (["predict", "--data", "x.csv"], "required"),
        (_predict("/no/such/rows.csv"), "--data: file not found"),
        (_predict("{no_ids}"), "expected a CSV with the columns user_id, item_id, category_id"),
        (_predict("{no_item}"), "lacks columns ['item_id']"),
        (_predict("{no_history}"), "no history"),
        (_predict("{bad_history}"), "integer ids"),
        (_predict("{results}"), "no UserBehavior row"),
        (_predict("{no_history}", "{results}"), "--checkpoint"),
        ([*_predict("{no_history}"), "--history-log", "/no/such.csv"], "--history-log: file not found"),
    ],
)
def test_bad_arguments_exit_2_with_one_error_line(argv, message, bad_files, capsys):
    argv = [arg.format(**bad_files) for arg in argv]
    argv = [*argv, "--cache-dir", bad_files["tmp"]] if argv[0] == "train" else argv
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (error_line,) = [line for line in err.splitlines() if "error:" in line]
    assert message in error_line
    # the usage shown is the subcommand's
    assert err.startswith(f"usage: mdaf {argv[0]}" if argv[0] in COMMAND_HELP else "usage: mdaf")


def test_a_results_file_as_checkpoint_ends_in_one_line_from_the_console_command(bad_files):
    """As a user meets it: the installed entry point in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-m", "mdaf.cli", "evaluate", bad_files["results"]], capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith("mdaf evaluate: error: checkpoint:")


def test_top_level_help_does_not_import_torch():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from mdaf.cli import main\ntry: main(['--help'])\n"
            "except SystemExit: pass\nprint('torch' in sys.modules, 'pandas' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert done.stdout.splitlines()[-1] == "False False", done.stderr


def test_model_options_parse_json_values():
    overrides = parse_model_options(
        ["embed_dim=16", "bst.mlp_hidden=[64, 32]", "mdaf.fusion=concat"], ["mdaf", "bst"]
    )
    assert overrides == {
        "mdaf": {"embed_dim": 16, "fusion": "concat"},
        "bst": {"embed_dim": 16, "mlp_hidden": (64, 32)},
    }
    with pytest.raises(CliError):
        parse_model_options(["=3"], ["mdaf"])
