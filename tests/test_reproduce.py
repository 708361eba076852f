import csv
import dataclasses
from pathlib import Path

import pytest

from pyro_vae.experiments.reproduce import (
    BUDGETS,
    fig2,
    fig3,
    fig4,
    fig5,
    get_budget,
    paper_config,
    reproduce,
    run_name,
)
from pyro_vae.cli import build_parser, cmd_reproduce
from pyro_vae.training.loop import TrainConfig


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.data
def test_fig2_tiny(tmp_path, real_data_dir):
    rows = fig2(tmp_path, "tiny", real_data_dir)
    b = BUDGETS["tiny"]
    expected = {("mnist", z, a) for z in b.mnist_z_dims for a in ("aevb", "wake-sleep")}
    expected |= {("frey", z, a) for z in b.frey_z_dims for a in ("aevb", "wake-sleep")}
    assert {(r["dataset"], r["z_dim"], r["algorithm"]) for r in rows} == expected
    assert len(rows) == len(b.mnist_z_dims) * 2 * b.mnist_epochs + len(b.frey_z_dims) * 2 * b.frey_epochs
    assert len(_csv(tmp_path / "fig2.csv")) == len(rows)
    assert (tmp_path / "fig2.png").stat().st_size > 0
    mnist_aevb = [r for r in rows if r["dataset"] == "mnist" and r["algorithm"] == "aevb"]
    assert -300 < mnist_aevb[-1]["test_elbo"] < -80  # nats: a sane binarized-MNIST bound after one epoch


@pytest.mark.data
def test_fig3_tiny_and_resume(tmp_path, real_data_dir):
    rows = fig3(tmp_path, "tiny", real_data_dir)
    b = BUDGETS["tiny"]
    small = min(b.fig3_num_train)
    expected = {(n, a) for n in b.fig3_num_train for a in ("aevb", "wake-sleep")} | {(small, "mcem")}
    assert {(r["num_train"], r["algorithm"]) for r in rows} == expected
    assert sorted({r["samples_seen"] for r in rows}) == list(b.fig3_samples)
    for r in rows:
        assert r["test_log_px"] < 0 and r["train_log_px"] < 0
    assert (tmp_path / "fig3.png").stat().st_size > 0
    checkpoints = sorted(tmp_path.glob("runs/*/checkpoint.pt"))
    assert len(checkpoints) == len(expected) and all("-n1000-" in p.parent.name for p in checkpoints)
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    assert fig3(tmp_path, "tiny", real_data_dir) == rows  # a second call reuses runs and estimates
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps


@pytest.mark.data
def test_fig4_tiny(tmp_path, real_data_dir):
    rows = fig4(tmp_path, "tiny", real_data_dir)
    assert [r["dataset"] for r in rows] == ["mnist", "frey"]
    for name in ("fig4-mnist.png", "fig4-frey.png", "fig4.csv"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.data
def test_fig5_tiny(tmp_path, real_data_dir):
    rows = fig5(tmp_path, "tiny", real_data_dir)
    assert [r["z_dim"] for r in rows] == list(BUDGETS["tiny"].sample_z_dims)
    for row in rows:
        assert (tmp_path / row["figure"]).stat().st_size > 0


def test_paper_config_and_run_names():
    aevb = paper_config("mnist", 3, 500, 2)
    assert type(aevb) is TrainConfig
    assert (aevb.optimizer, aevb.lr, aevb.init_std, aevb.weight_decay, aevb.batch_size) == ("adagrad", 0.02, 0.01, 1.0, 100)
    ws = paper_config("mnist", 3, 500, 2, "wake-sleep")
    assert type(ws) is TrainConfig and ws.algorithm == "wake-sleep"
    subset = paper_config("mnist", 3, 100, 2, num_train=1000)
    assert subset.num_train == 1000 and subset.algorithm == "aevb"
    assert paper_config("frey", 2, 200, 2).lr == 0.01
    names = {run_name(c) for c in (aevb, ws, subset)}
    assert len(names) == 3 and run_name(aevb).startswith("mnist-aevb-z3-h500-")
    assert run_name(paper_config("mnist", 3, 500, 7)) == run_name(aevb)  # epochs do not name a run
    assert run_name(dataclasses.replace(aevb, lr_schedule="iwae")) != run_name(aevb)


def test_bad_names_are_reported(tmp_path):
    with pytest.raises(ValueError, match=r"unknown budget 'huge'; expected one of \['full', 'small', 'tiny'\]"):
        get_budget("huge")
    with pytest.raises(ValueError, match="unknown figure 'fig9'"):
        reproduce("fig9", tmp_path)


def test_reproduce_subcommand_parses():
    parser = build_parser()
    args = parser.parse_args(["reproduce", "fig3", "--budget", "full", "--out", "x", "--device", "cpu"])
    assert (args.figure, args.budget, args.out, args.device, args.func) == ("fig3", "full", Path("x"), "cpu", cmd_reproduce)
    assert parser.parse_args(["reproduce", "fig2"]).out == Path("runs/reproduce")
    with pytest.raises(SystemExit):
        parser.parse_args(["reproduce", "fig7"])
