"""The latent-structure table: each row's printed command trains exactly the row's run,
the table runs end to end on real data, resumes without retraining, and refuses bad names."""

import shlex

import pytest

from pyro_vae.cli import build_parser, main
from pyro_vae.cli.structures import cmd_structures
from pyro_vae.cli.train import _config_from_args
from pyro_vae.experiments.structures import ENTRIES, markdown_table, run_table


@pytest.mark.parametrize("name", list(ENTRIES))
@pytest.mark.parametrize(
    "budget",
    [
        {"epochs": 10, "seed": 0},
        {"epochs": 5, "seed": 2, "num_train": 5000},
        {"epochs": 6, "seed": 1, "activation": "elu"},
    ],
)
def test_the_printed_command_builds_the_entrys_config(name, budget):
    entry = ENTRIES[name]
    words = shlex.split(entry.command(budget))
    assert words[:2] == ["pyro-vae", "train"]
    assert _config_from_args(build_parser().parse_args(words[1:])) == entry.config(budget)


def test_a_budget_shorter_than_a_warm_up_is_refused_before_any_run(tmp_path):
    with pytest.raises(ValueError, match=r"^kl_warmup=5 epochs is longer than the run's epochs=2: "):
        run_table(tmp_path, ["vae", "vae-warmup"], epochs=2)
    assert list(tmp_path.iterdir()) == []  # not even the first entry trained


def test_entries_differ_from_the_baseline_only_where_they_say():
    base = ENTRIES["vae"].config({"epochs": 1, "seed": 0})
    assert (base.hidden, base.z_dim, base.optimizer, base.lr) == ((200, 200), 50, "adam", 1e-3)
    iwae = ENTRIES["iwae-k50"].config({"epochs": 1, "seed": 0})
    assert (iwae.estimator, iwae.num_particles, iwae.hidden) == ("iwae", 50, base.hidden)
    m2 = ENTRIES["m2-600"].config({"epochs": 1, "seed": 0})
    assert (m2.model, m2.estimator, m2.num_labels, m2.hidden, m2.z_dim) == ("m2", "enum", 600, (500,), 50)


def test_markdown_table_gives_mean_and_spread_over_seeds():
    rows = [
        {
            "entry": "m2-100",
            "description": "M2, 100 labels",
            "epoch": 10,
            "train_wall_seconds": s,
            "test_elbo": e,
            "test_log_px": e + 4,
            "test_error": err,
            "paper": "11.97%",
        }
        for s, e, err in [(60.0, -100.0, 0.10), (180.0, -102.0, 0.12)]
    ]
    rows.append(
        {
            "entry": "vae",
            "description": "VAE, ELBO",
            "epoch": 10,
            "train_wall_seconds": 30.0,
            "test_elbo": -95.0,
            "test_log_px": -91.0,
            "paper": "-86.76",
        }
    )
    lines = markdown_table(rows).splitlines()
    assert lines[2] == (
        "| M2, 100 labels | 2 | 10 | 2.0 +- 1.4 | -101.00 +- 1.41 | -97.00 +- 1.41 | 11.00 +- 1.41 | 11.97% |"
    )
    assert lines[3] == "| VAE, ELBO | 1 | 10 | 0.5 | -95.00 | -91.00 |  | -86.76 |"


@pytest.mark.slow
@pytest.mark.data
def test_table_runs_on_mnist_and_a_rerun_reuses_its_runs(tmp_path, real_data_dir):
    names = ["vae", "m2-100", "cvae"]
    rows = run_table(tmp_path, names, epochs=1, num_samples=5, num_test=50, data_dir=str(real_data_dir), num_train=500)
    assert [r["entry"] for r in rows] == names
    assert [("test_error" in r) for r in rows] == [False, True, False]
    for r in rows:
        assert (r["num_samples"], r["num_test"], r["epoch"]) == (5, 50, 1)
        assert r["test_log_px"] >= r["test_elbo"] and "--num-train 500" in r["command"]
    table = (tmp_path / "table.md").read_text()
    assert "| M2, 100 labels | 1 | 1 |" in table and (tmp_path / "runs.csv").is_file()
    assert (tmp_path / "m2-100-seed0" / "figures" / "analogies.png").is_file()
    assert (tmp_path / "cvae-seed0" / "figures" / "samples.png").is_file()
    files = sorted(tmp_path.glob("*/checkpoint.pt")) + sorted(tmp_path.glob("*/eval-*.json"))
    stamps = [p.stat().st_mtime_ns for p in files]
    assert len(files) == 6
    assert (
        run_table(tmp_path, names, epochs=1, num_samples=5, num_test=50, data_dir=str(real_data_dir), num_train=500)
        == rows
    )
    assert [p.stat().st_mtime_ns for p in files] == stamps


@pytest.mark.slow
@pytest.mark.data
def test_another_activation_is_its_own_run_and_named_in_the_row(tmp_path, real_data_dir):
    rows = run_table(
        tmp_path,
        ["vae"],
        epochs=1,
        num_samples=5,
        num_test=50,
        data_dir=str(real_data_dir),
        num_train=500,
        activation="elu",
    )
    assert rows[0]["description"] == "VAE, ELBO, elu units" and "--activation elu" in rows[0]["command"]
    # the same folder under the entries' own tanh: the resume check names the changed field
    with pytest.raises(ValueError, match="activation"):
        run_table(tmp_path, ["vae"], epochs=1, num_samples=5, num_test=50, data_dir=str(real_data_dir), num_train=500)


def test_cli_parses_and_refuses_bad_input(capsys):
    args = build_parser().parse_args(["structures", "vae", "iaf", "--epochs", "2", "--jobs", "2", "-k", "100"])
    assert (args.entries, args.epochs, args.jobs, args.num_samples, args.func) == (
        ["vae", "iaf"],
        2,
        2,
        100,
        cmd_structures,
    )
    assert build_parser().parse_args(["structures"]).entries == []  # all of them
    assert build_parser().parse_args(["structures", "--activation", "elu"]).activation == "elu"
    assert build_parser().parse_args(["structures"]).activation is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["structures", "--activation", "sigmoid"])
    assert main(["structures", "vae", "--seeds", "0"]) == 2
    assert "--seeds must be at least 1, got 0" in capsys.readouterr().err
    assert main(["structures", "vae", "m3", "--out", "unused"]) == 2
    assert "unknown entries ['m3']; expected some of ['vae'," in capsys.readouterr().err
