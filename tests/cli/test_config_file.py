"""``pyro-vae train --config FILE``: a run's own config.json starts a new run, the flags given
override its values, and an entry that is not a setting is refused in one line naming it."""

import json

import pytest

from pyro_vae.cli import main

TINY = ["--dataset", "synthetic", "--z-dim", "2", "--hidden", "8", "--epochs", "1", "--seed", "3"]
QUIET = ["--no-progress", "-k", "2", "--num-test", "20", "--device", "cpu"]


@pytest.fixture
def first(tmp_path, capsys):
    """A tiny run trained from flags: its folder."""
    run = tmp_path / "first"
    assert main(["train", *TINY, "--lr", "0.005", "--run-dir", str(run), *QUIET]) == 0, capsys.readouterr().err
    return run


def test_a_run_from_a_runs_config_with_epochs_overridden(first, tmp_path, capsys):
    second = tmp_path / "second"
    argv = ["train", "--config", str(first / "config.json"), "--epochs", "2", "--run-dir", str(second), *QUIET]
    assert main(argv) == 0, capsys.readouterr().err
    old, new = (json.loads((run / "config.json").read_text()) for run in (first, second))
    assert new["epochs"] == 2 and old["epochs"] == 1
    assert {**new, "epochs": 1} == old  # every other setting (lr 0.005, seed 3, ...) from the file
    assert len((second / "metrics.csv").read_text().splitlines()) == 1 + 2  # it trained 2 epochs


def test_flags_and_a_preset_override_the_file(tmp_path):
    from pyro_vae.cli.main import build_parser
    from pyro_vae.cli.train import _config_from_args

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"dataset": "synthetic", "z_dim": 3, "lr": 0.5, "hidden": [8]}))
    args = build_parser().parse_args(["train", "--config", str(path), "--preset", "iwae", "--z-dim", "4"])
    config = _config_from_args(args)
    assert config.z_dim == 4  # the flag over the preset's 50 and the file's 3
    assert config.lr == 1e-3 and config.hidden == (200, 200)  # the preset's over the file's
    assert config.dataset == "synthetic"  # the file's over TrainConfig's default


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"z_dim": 2, "learning_rate": 0.1, "colour": 1}', "unknown entries ['colour', 'learning_rate']"),
        ("[1, 2]", "holds a list, not a JSON object of TrainConfig's fields"),
        ("{z_dim: 2}", "is not JSON"),
    ],
)
def test_a_bad_config_file_is_refused_in_one_line(text, message, tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(text)
    assert main(["train", "--config", str(path), "--run-dir", str(tmp_path / "run"), *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pyro-vae: error: --config {path}") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_a_config_file_that_is_missing_is_a_failure_at_run_time(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "none.json"), *QUIET]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def test_resume_takes_no_config_file(first, capsys):
    argv = ["train", "--resume", "--run-dir", str(first), "--config", str(first / "config.json"), *QUIET]
    assert main(argv) == 2
    assert "--resume takes every setting from the checkpoint" in capsys.readouterr().err
