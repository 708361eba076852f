"""Exit status by convention: 2 for a usage error (a bad flag or value), 1 for a failure at run
time (a missing run, data set or file, a diverged run, ...), for every command; the mapping is
the one table ``pyro_vae.cli.errors.EXIT_STATUS``."""

import pytest

from pyro_vae import cli
from pyro_vae.cli import main
from pyro_vae.cli.errors import EXIT_STATUS, FAILURE, USAGE, exit_status
from pyro_vae.data import CorruptDataError, DatasetNotFoundError
from pyro_vae.training import TrainConfig, TrainingDiverged, train
from pyro_vae.training.callbacks import CallbackError
from pyro_vae.training.checkpoint import CheckpointError
from pyro_vae.training.run_dir import RunDirBusyError
from pyro_vae.validation import ArgumentTypeError, MemoryRefusal


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    train(TrainConfig(dataset="synthetic", z_dim=2, hidden=(8,), epochs=1), run, progress=False)
    return run


TINY = ["--epochs", "1", "--seeds", "1", "--data-dir", "{tmp}/no-data", "--out", "{tmp}/out"]
# command: (a usage error, a failure at run time, each with a piece of its one line)
CASES = {
    "train": (
        (["train", "--dataset", "synthetic", "--num-train", "10"], "num_train=10 is smaller than batch_size=100"),
        (["train", "--resume", "--run-dir", "{tmp}/nothing"], "no checkpoint at"),
    ),
    "evaluate": (
        (["evaluate", "pretrained:nothing"], "unknown pretrained model 'nothing'"),
        (["evaluate", "{tmp}/nothing"], "no checkpoint at"),
    ),
    "plot": (
        (["plot", "{run}", "--figures", "nothing", "--out", "{tmp}/figures"], "unknown figure 'nothing'"),
        (["plot", "{tmp}/nothing"], "no checkpoint at"),
    ),
    "variance": (
        (
            ["variance", "--estimators", "stl", "stl", "--out", "{tmp}/out"],
            "estimators ['stl'] are named more than once",
        ),
        (["variance", "--run-dir", "{tmp}/nothing", "--out", "{tmp}/out"], "no checkpoint at"),
    ),
    "reproduce": (
        (["reproduce", "fig4", "--z-dims", "3", "--out", "{tmp}/out"], "--z-dims and --datasets select fig2's"),
        (["reproduce", "fig4", "--budget", "tiny", "--data-dir", "{tmp}/no-data", "--out", "{tmp}/out"], "not on disk"),
    ),
    "structures": (
        (["structures", "m3", "--out", "{tmp}/out"], "unknown entries ['m3']"),
        (["structures", "vae", "--num-train", "100", *TINY[2:]], "not on disk"),
    ),
    "probe": (
        (["probe", "{run}", "--num-labels", "6", "--out", "{tmp}/out"], "num_labels must be a positive multiple"),
        (["probe", "{tmp}/nothing"], "no checkpoint at"),
    ),
    "benchmark": (
        (["benchmark", "--jit", "--num-particles", "3", "--steps", "1", "--rounds", "1"], "cannot be compiled"),
        (
            ["benchmark", "--hidden", "8", "--z-dim", "2", "--steps", "1", "--rounds", "1", "--batch-size", "10"]
            + ["--out", "{tmp}/no-folder/result.json"],
            "cannot access {tmp}/no-folder/result.json: no such file or directory",
        ),
    ),
    "graph": (
        (["graph", "table", "--seeds", "0"], "--seeds must be at least 1, got 0"),
        (["graph", "table", "--models", "gae", "--datasets", "cora", *TINY], "not on disk"),
    ),
}


@pytest.mark.parametrize(
    "argv, message, status",
    [
        pytest.param(*CASES[name][kind], status, id=f"{name}-{'usage' if status == USAGE else 'failure'}")
        for name in CASES
        for kind, status in enumerate((USAGE, FAILURE))
    ],
)
def test_usage_errors_exit_2_and_failures_at_run_time_exit_1(argv, message, status, run_dir, tmp_path, capsys):
    code = main([a.format(tmp=tmp_path, run=run_dir) for a in argv])
    err = capsys.readouterr().err
    assert code == status, err
    assert err.startswith("pyro-vae: error: ") and err.count("\n") == 1, err
    assert message.format(tmp=tmp_path) in err, err


def test_every_command_has_its_cases():
    assert set(CASES) == set(cli.COMMANDS)


@pytest.mark.parametrize(
    "error, status",
    [
        (ValueError("a bad value"), USAGE),
        (TypeError("a bad type"), USAGE),
        (ArgumentTypeError("a bad type"), USAGE),  # a TypeError and a ValueError
        (MemoryRefusal("-k too large for memory"), USAGE),  # a value to choose smaller
        (CorruptDataError("a damaged file"), FAILURE),  # a ValueError, but not the user's flag
        (DatasetNotFoundError("no MNIST"), FAILURE),
        (PermissionError(13, "Permission denied", "run/metrics.csv"), FAILURE),
        (CheckpointError("truncated"), FAILURE),
        (TrainingDiverged("NaN at step 3"), FAILURE),
        (RunDirBusyError("busy"), FAILURE),
        (CallbackError("tensorboard failed"), FAILURE),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_an_error_takes_the_status_of_its_first_class_in_the_table(error, status, monkeypatch, capsys):
    assert exit_status(error) == status
    monkeypatch.setattr(cli.COMMANDS["plot"], "run", lambda args: (_ for _ in ()).throw(error))
    assert main(["plot", "RUN"]) == status
    assert capsys.readouterr().err.count("\n") == 1


def test_the_table_covers_what_the_command_line_reports():
    assert set(EXIT_STATUS.values()) == {USAGE, FAILURE}
    assert all(isinstance(cls, type) and issubclass(cls, Exception) for cls in EXIT_STATUS)
