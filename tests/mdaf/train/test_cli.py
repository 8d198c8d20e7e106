"""The command line: complete help, clear errors for bad arguments (before any data is read)."""

import dataclasses

import pytest
import torch

from mdaf.cli import CliError, build_parser, main, parse_model_options
from mdaf.data import PipelineConfig
from mdaf.train.config import TrainConfig


@pytest.mark.parametrize("command", ["prepare", "train", "evaluate", "report"])
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


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--device", "cuda"])
    assert exit_info.value.code == 2 and "CUDA is not available" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--models", "mdaf", "nope"], "unknown"),
        (["train", "--models", "mdaf", "mdaf"], "duplicate"),
        (["train", "--seeds", "1", "1"], "distinct"),
        (["train", "--batch-size", "0"], "batch_size"),
        (["train", "--lr", "-1"], "lr"),
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
        (["report", "/no/such/run"], "results.json"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(argv, message, capsys, tmp_path):
    argv = [*argv, "--cache-dir", str(tmp_path)] if argv[0] == "train" else argv
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


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
