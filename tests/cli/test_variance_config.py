"""``pyro-vae variance`` builds its study's training runs from the settings ``train`` takes (``--config
FILE``, ``--preset``, ``--model``, ``--model-option``) and from the user's own data (``--data``), so that a
user's program goes through the whole study, not only through ``--run-dir``."""

import csv
import json

import numpy as np
import pytest
import torch

from pyro_vae.cli import build_parser, main
from pyro_vae.cli.variance import base_config


def parse(*argv: str):
    return build_parser().parse_args(["variance", *argv])


def test_flags_override_the_preset_which_overrides_the_config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps({"model": "vae", "z_dim": 7, "hidden": [5], "lr": 0.01, "activation": "relu", "epochs": 90})
    )
    config = base_config(
        parse("--config", str(path), "--preset", "sbn-linear", "--z-dim", "3", "--model-option", "layers=2")
    )
    # the preset's model and hidden over the file's, the flag's z_dim over the preset's, the file's lr;
    # the study's epochs, not the file's (a long run's)
    assert (config.model, config.hidden, config.z_dim, config.model_options) == ("sbn", (), 3, {"layers": 2})
    assert (config.lr, config.activation, config.epochs) == (0.01, "relu", 5)
    assert base_config(parse("--config", str(path), "--epochs", "2")).epochs == 2


def test_a_config_file_with_an_unknown_entry_is_refused_by_name(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"z_dim": 3, "learning_rate": 0.1}))
    assert main(["variance", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "unknown entries ['learning_rate']" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags",
    [
        ["--model", "sbn"],
        ["--preset", "sbn-linear"],
        ["--model-option", "layers=2"],
        ["--seed", "3"],
        ["--z-dim", "4"],
        ["--epochs", "2"],
    ],
)
def test_a_comparison_at_a_run_refuses_the_settings_of_a_new_study(flags, tmp_path, capsys):
    assert main(["variance", "--run-dir", str(tmp_path / "run"), *flags, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "compares at the run as it was trained" in err and f"drop {flags[0]}" in err


@pytest.mark.slow
def test_a_two_layer_sbn_on_the_users_own_data_goes_through_the_whole_study(tmp_path):
    data = tmp_path / "bits.npz"
    np.savez(data, x=(torch.rand(80, 10, generator=torch.Generator().manual_seed(0)) < 0.3).numpy().astype("uint8"))
    out = tmp_path / "study"
    argv = ["variance", "--data", str(data), "--model", "sbn", "--model-option", "layers=2", "--z-dim", "3"]
    argv += ["--hidden", "8", "--batch-size", "16", "--epochs", "1", "--estimators", "disarm", "score-loo"]
    argv += ["--estimator-particles", "score-loo=2", "--reference", "disarm", "--draws", "3", "--adapt-steps", "1"]
    argv += ["--num-particles", "2", "--z-dims", "2", "--out", str(out), "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    for name in ("disarm", "score-loo"):
        config = json.loads((out / f"train-{name}" / "config.json").read_text())
        assert (config["model"], config["model_options"], config["dataset"]) == ("sbn", {"layers": 2}, "user")
    rows = [r for r in csv.DictReader(open(out / "variance.csv")) if r["experiment"] == "training"]
    evaluations = {r["estimator"]: float(r["evaluations_per_datum"]) for r in rows}
    # DisARM on L = 2 layers: one antithetic pair per layer besides the main chain, K (L + 1) = 3
    assert evaluations == {"disarm": 3.0, "score-loo": 2.0}
