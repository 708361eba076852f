"""Long runs survive a restart: a run continued from its committed files (checkpoint.pt,
metrics.csv, COMMAND, as a clean clone has them) ends bit for bit where an uninterrupted run does."""

import csv
import shlex
import shutil

import pytest
import torch

from pyro_vae.cli import main
from pyro_vae.training import loop
from pyro_vae.training.checkpoint import CheckpointError
from pyro_vae.training.longrun import COMMAND, continue_command, read_command_file, write_command_file
from pyro_vae.training.loop import load_run

START = (
    "uv run pyro-vae train --dataset synthetic --z-dim 2 --hidden 16 --lr 0.01 --batch-size 100 "
    "--epochs 4 {flags} --no-progress -k 5 --run-dir longruns/toy"
)


def test_continue_command_keeps_the_process_flags_and_drops_the_settings():
    start = (
        "uv run pyro-vae train --preset iwae --lr-schedule iwae --epochs 3280 -k 200 --jit --threads 1 "
        "--no-flush-denormal --no-progress --evals-per-decade 10 --model-option num_components=5 "
        "--optimizer-option eps=6 --schedule-option warmup=2 --estimator-option beta=4 --init glorot "
        "--data-dir ../shared/data --run-dir longruns/vae-iwae-s0 --seed -1"
    )
    assert continue_command(start) == (
        "uv run pyro-vae train --resume --run-dir longruns/vae-iwae-s0 -k 200 --jit "
        "--threads 1 --no-flush-denormal --no-progress --data-dir ../shared/data"
    )


@pytest.mark.parametrize(
    "command, message",
    [
        ("uv run pyro-vae evaluate runs/a", "not a `pyro-vae train` command"),
        ("uv run pyro-vae train --epochs 3", "exactly one --run-dir FOLDER"),
    ],
)
def test_continue_command_refuses_what_it_cannot_continue(command, message):
    with pytest.raises(ValueError, match=message):
        continue_command(command)


def test_command_file_needs_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*longruns/toy/checkpoint.pt: nothing to continue"):
        write_command_file(START.format(flags=""), "toy", root=tmp_path)


def _rows(path):
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if "seconds" not in k} for row in csv.DictReader(f)]


@pytest.mark.parametrize(
    "flags, with_metrics, killed_at, rows",
    [
        ("", True, 1, 4),  # a row and a checkpoint every epoch
        ("--jit", False, 1, 4),
        ("--evals-per-decade 8", True, 2, 6),  # rows on a log scale, the first at epoch 2
    ],
)
def test_run_continued_from_a_committed_checkpoint_equals_an_uninterrupted_run(
    tmp_path, monkeypatch, flags, with_metrics, killed_at, rows
):
    start = START.format(flags=flags)
    argv = shlex.split(start)[3:]
    (tmp_path / "straight").mkdir()
    monkeypatch.chdir(tmp_path / "straight")
    assert main(argv) == 0

    # the first work period: killed just after its first checkpoint is written
    first = tmp_path / "first"
    first.mkdir()
    monkeypatch.chdir(first)
    write_epoch = loop.write_epoch

    def killed_after_writing(run_dir, metrics, checkpoint, keep_every):
        write_epoch(run_dir, metrics, checkpoint, keep_every)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "write_epoch", killed_after_writing)
    assert main(argv) == 130
    monkeypatch.undo()
    write_command_file(start, "a toy long run", root=first)

    # a clean clone: only what .gitignore tracks in a long run's folder
    clone = tmp_path / "clone" / "longruns" / "toy"
    clone.mkdir(parents=True)
    for name in ["checkpoint.pt", COMMAND] + (["metrics.csv"] if with_metrics else []):
        shutil.copy(first / "longruns" / "toy" / name, clone / name)
    monkeypatch.chdir(tmp_path / "clone")
    assert load_run(clone).metrics[-1]["epoch"] == killed_at
    command = read_command_file(clone)
    assert command[:4] == ["train", "--resume", "--run-dir", "longruns/toy"] and ("--jit" in command) == (
        "--jit" in flags
    )
    assert main(command) == 0

    straight, continued = load_run(tmp_path / "straight" / "longruns" / "toy"), load_run(clone)
    assert continued.metrics[-1]["epoch"] == 4
    for (name, p), q in zip(
        straight.program.state_dict().items(), continued.program.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
    straight_rows = _rows(tmp_path / "straight" / "longruns" / "toy" / "metrics.csv")
    assert len(straight_rows) == rows and straight_rows == _rows(clone / "metrics.csv")
