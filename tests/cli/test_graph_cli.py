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
    assert main([*args, "--epochs", "4"]) == 2  # the folder holds a run
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
