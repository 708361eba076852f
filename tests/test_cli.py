import json

import pytest
import torch

from pyro_vae import cli
from pyro_vae.cli import build_parser, main


@pytest.mark.parametrize("command", ["train", "evaluate", "plot", None])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"] if command else ["--help"])
    assert exit_info.value.code == 0
    assert "usage: pyro-vae" in capsys.readouterr().out


def test_train_evaluate_plot_round_trip(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--dataset", "synthetic", "--z-dim", "2", "--hidden", "16", "--epochs", "2",
            "--run-dir", str(run), "--eval-k", "20", "--no-progress", "--device", "cpu", "--keep-every", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "log p(x) (IS, K=20)" in out
    assert {p.name for p in (run / "figures").iterdir()} == {
        "samples.png", "reconstructions.png", "latents.png", "curves.png", "manifold.png"}
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0001.pt", "epoch-0002.pt"]
    assert main(["evaluate", str(run), "-k", "50", "--num-test", "100",
                 "--checkpoint", str(run / "checkpoints" / "epoch-0001.pt")]) == 0
    report = json.loads((run / "eval-epoch0001-k50-n100.json").read_text())
    assert report["epoch"] == 1 and report["num_test"] == 100 and report["test_log_px"] >= report["test_elbo"]
    assert main(["train", "--run-dir", str(run), "--resume", "--epochs", "3", "--no-progress", "--eval-k", "5"]) == 0
    assert json.loads((run / "eval-epoch0003-k5-n500.json").read_text())["epoch"] == 3
    assert main(["plot", str(run), "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "manifold.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "{tmp}/nothing"], "no checkpoint at"),
        (["train", "--resume"], "--resume needs --run-dir"),
        (["train", "--resume", "--run-dir", "{tmp}/nothing"], "nothing to resume in"),
        (["train", "--dataset", "synthetic", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["train", "--dataset", "synthetic", "--device", "cuda:7"], "CUDA is not available"),
        (["evaluate", "{tmp}/nothing", "--threads", "0"], "--threads must be at least 1, got 0"),
    ],
)
def test_errors_are_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("pyro-vae: error:") and message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", [["train"], ["evaluate", "RUN"], ["plot", "RUN"], ["variance"], ["reproduce", "fig4"], ["benchmark"]])
def test_every_command_takes_threads(command, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(cli, f"cmd_{command[0]}", lambda args: None)
    assert main([*command, "--threads", "3"]) == 0 and calls == [3]


def test_unknown_estimator_rejected_by_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "--estimator", "magic"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'magic'" in capsys.readouterr().err


def test_variance_study_smoke(tmp_path):
    out = tmp_path / "variance"
    assert main(["variance", "--dataset", "synthetic", "--hidden", "8", "--z-dim", "2", "--epochs", "1",
                 "--estimators", "reparam", "score", "score-nvil", "--draws", "4", "--adapt-steps", "2",
                 "--particles", "1", "2", "--z-dims", "1", "--out", str(out), "--device", "cpu"]) == 0
    import csv

    rows = list(csv.DictReader(open(out / "variance.csv")))
    assert {r["experiment"] for r in rows} == {"training", "particles", "latent"}
    assert {r["estimator"] for r in rows} == {"reparam", "score", "score-nvil"}
    assert {r["epoch"] for r in rows if r["experiment"] == "training"} == {"0", "1"}
    assert {r["num_particles"] for r in rows if r["experiment"] == "particles"} == {"1", "2"}
    for name in ("elbo_curves.png", "variance_training.png", "snr_training.png",
                 "variance_particles.png", "variance_latent.png", "summary.md", "training.csv"):
        assert (out / name).exists(), name
    assert "| score-nvil |" in (out / "summary.md").read_text()
    at = tmp_path / "at-run"
    assert main(["variance", "--run-dir", str(out / "train-reparam"), "--estimators", "reparam", "stl",
                 "--draws", "3", "--adapt-steps", "1", "--out", str(at), "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(at / "variance.csv")))
    assert {(r["estimator"], r["epoch"]) for r in rows} == {("reparam", "1"), ("stl", "1")}
