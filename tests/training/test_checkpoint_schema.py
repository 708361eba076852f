"""A checkpoint whose CRC is valid but whose fields are not what the trainer writes
(hand-made, or mixed from two runs) is one CheckpointError naming the field."""

import subprocess
import sys

import pytest
import torch

from pyro_vae.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pyro_vae.training.loop import TrainConfig, load_run, train

SMALL = dict(dataset="synthetic", z_dim=2, batch_size=100, lr=1e-2, epochs=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One-epoch runs with --hidden 50 and --hidden 20 (the same parameter count, other shapes)."""
    root = tmp_path_factory.mktemp("runs")
    for hidden in (50, 20):
        train(TrainConfig(**SMALL, hidden=(hidden,)), root / str(hidden), progress=False)
    return root


def _rewrite(runs, tmp_path, **fields):
    state = load_checkpoint(runs / "50" / "checkpoint.pt")
    state.update(fields)
    state.pop("format")
    (tmp_path / "run").mkdir()
    save_checkpoint(state, tmp_path / "run" / "checkpoint.pt")
    return tmp_path / "run"


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(rng={}), "the field rng.torch must be a uint8 tensor"),
        (dict(rng={"torch": torch.zeros(3, dtype=torch.uint8)}), "rng.torch must be a uint8 tensor of shape"),
        (dict(epoch=-1), "the field epoch must be a non-negative int, got -1"),
        (dict(epoch=1.5), "the field epoch must be a non-negative int, got 1.5"),
        (dict(metrics="garbage"), "the field metrics must be a list of rows"),
        (dict(metrics=["garbage"]), "the field metrics[0] must be a row"),
        (dict(model=[1, 2]), "the field model must be a state dict"),
        (dict(optimizer=None), "the field optimizer must be a dict"),
        (dict(config="x"), "the field config must be a dict"),
        (dict(wall_seconds=float("nan")), "the field wall_seconds must be a finite number"),
        (dict(distributed={"world_size": 2, "ranks": []}), "the field distributed.ranks must be a list of 2"),
        (dict(since_row={"loss": 1.0}), "the field since_row must be {'loss': a number, 'steps': an int >= 0"),
        (dict(since_row={"loss": float("nan"), "steps": 1, "train_seconds": 0.0}), "the field since_row must be"),
        (dict(since_row={"loss": 1.0, "steps": -1, "train_seconds": 0.0}), "the field since_row must be"),
    ],
)
def test_hand_made_fields_are_named(runs, tmp_path, fields, message):
    run_dir = _rewrite(runs, tmp_path, **fields)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(run_dir / "checkpoint.pt")
    assert message in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_load_run_names_a_bad_device(runs):
    with pytest.raises(ValueError, match="device 'gpu' is not a torch device"):
        load_run(runs / "50", device="gpu")


def _swap_optimizer(runs, tmp_path):
    other = load_checkpoint(runs / "20" / "checkpoint.pt")["optimizer"]
    return _rewrite(runs, tmp_path, optimizer=other)


def test_an_optimizer_state_of_another_architecture_is_refused(runs, tmp_path):
    run_dir = _swap_optimizer(runs, tmp_path)
    with pytest.raises(CheckpointError, match=r"optimizer\.optimizer\.state\[0\]\.exp_avg has shape \(20, 64\), the parameter it steps \(50, 64\)"):
        train(TrainConfig(**dict(SMALL, epochs=2), hidden=(50,)), run_dir, resume=True, progress=False)


@pytest.mark.slow
def test_the_optimizer_swap_through_the_cli_is_one_line_not_a_segfault(runs, tmp_path):
    # in a subprocess: on main this resume crashed the interpreter (exit 139)
    run_dir = _swap_optimizer(runs, tmp_path)
    cli = [sys.executable, "-m", "pyro_vae", "train", "--run-dir", str(run_dir), "--resume", "--epochs", "2",
           "--no-progress"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("pyro-vae: error: checkpoint") and "optimizer.optimizer.state[0].exp_avg" in last


@pytest.mark.parametrize("groups, message", [
    (lambda g: g + g, "has 2 parameter group(s), the model's optimizer 1"),
    (lambda g: [{**g[0], "params": g[0]["params"][:-1]}], "parameters per group"),
])
def test_optimizer_groups_must_fit(runs, tmp_path, groups, message):
    state = load_checkpoint(runs / "50" / "checkpoint.pt")["optimizer"]
    state["optimizer"]["param_groups"] = groups(state["optimizer"]["param_groups"])
    run_dir = _rewrite(runs, tmp_path, optimizer=state)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(TrainConfig(**dict(SMALL, epochs=2), hidden=(50,)), run_dir, resume=True, progress=False)


def test_an_intact_checkpoint_still_resumes(runs, tmp_path):
    run_dir = _rewrite(runs, tmp_path)
    run = train(TrainConfig(**dict(SMALL, epochs=2), hidden=(50,)), run_dir, resume=True, progress=False)
    assert [m["epoch"] for m in run.metrics] == [1, 2]

