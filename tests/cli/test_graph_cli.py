"""Graph autoencoders through the ordinary command line: `train --model vgae`, `--resume`,
`evaluate`, and the Table-1 experiment `graph table`."""

import csv
import json

import torch

from pyro_vae.cli import main


def test_train_resume_evaluate_and_table(tmp_path, capsys):
    torch.set_num_threads(1)
    run_dir = tmp_path / "run"
    args = [
        "train",
        "--preset",
        "kipf",
        "--model",
        "vgae",
        "--dataset",
        "planted-partition",
        "--run-dir",
        str(run_dir),
        "--no-progress",
    ]
    assert main([*args, "--epochs", "2"]) == 0
    assert main([*args, "--epochs", "4", "--resume"]) == 0
    trained = json.loads((run_dir / "test-epoch0004.json").read_text())
    assert main([*args, "--epochs", "4"]) == 1  # the folder holds a run
    assert "already holds a run" in capsys.readouterr().err
    assert main(["evaluate", str(run_dir)]) == 0
    assert json.loads((run_dir / "test-epoch0004.json").read_text())["auc"] == trained["auc"]
    assert main(["train", "--model", "vgae", "--dataset", "mnist", "--run-dir", str(tmp_path / "bad")]) == 2
    assert "'vgae' trains on graph data" in capsys.readouterr().err
    out = tmp_path / "table"
    assert (
        main(
            [
                "graph",
                "table",
                "--datasets",
                "planted-partition",
                "--seeds",
                "2",
                "--epochs",
                "3",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    table = (out / "table.md").read_text()
    assert "| VGAE | planted-partition | 2 |" in table and "| GAE | planted-partition | 2 |" in table
    assert {r["split_seed"] for r in csv.DictReader(open(out / "runs.csv"))} == {"0"}


def test_a_graph_run_through_every_command_after_training(tmp_path, capsys):
    """Training ends with the test AUC/AP and one line on figures; plot, probe and variance refuse
    in one line; early stopping watches the validation AUC."""
    run_dir = tmp_path / "run"
    train = ["train", "--preset", "kipf", "--model", "vgae", "--dataset", "planted-partition", "--no-progress"]
    assert main([*train, "--run-dir", str(run_dir), "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "test AUC" in out and "figures not drawn: a graph run has no image figures" in out
    assert main(["plot", str(run_dir), "--figures", "curves"]) == 2
    assert capsys.readouterr().err.startswith("pyro-vae: error: a graph run has no image figures")
    assert main(["probe", str(run_dir), "--no-progress"]) == 2
    assert "a graph run's codes are judged by link prediction" in capsys.readouterr().err
    assert main(["variance", "--run-dir", str(run_dir), "--no-progress", "--out", str(tmp_path / "v")]) == 2
    assert "a graph run has one graph" in capsys.readouterr().err
    stopped = tmp_path / "stopped"
    assert main([*train, "--run-dir", str(stopped), "--epochs", "200", "--early-stopping", "1"]) == 0
    rows = list(csv.DictReader(open(stopped / "metrics.csv")))
    assert len(rows) < 200 and (stopped / "best.pt").is_file()
    aucs = [float(r["val_auc"]) for r in rows]
    assert aucs[-1] <= max(aucs[:-1])  # it stopped on a row that did not improve
