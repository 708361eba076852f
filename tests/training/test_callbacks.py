"""Callbacks: a user's hooks at each metrics row, each epoch's end and the run's end."""

import pytest
from support import SMALL

from pyro_vae.cli import main
from pyro_vae.training import TrainConfig, load_run, train
from pyro_vae.training.callbacks import CallbackError
from pyro_vae.training.checkpoint import load_checkpoint


class Recorder:
    """Every call, as (hook, epoch of the row it got, the run's epochs done on disk)."""

    def __init__(self):
        self.calls = []

    def on_eval(self, run, row):
        self.calls.append(("on_eval", row["epoch"]))

    def on_epoch_end(self, run, row):
        self.calls.append(("on_epoch_end", row and row["epoch"]))

    def on_train_end(self, run, row):
        self.calls.append(("on_train_end", row["epoch"], len(run.metrics)))


def test_the_loop_calls_every_hook_in_order_and_a_resumed_run_goes_on(tmp_path):
    first, second = Recorder(), Recorder()
    train(TrainConfig(**SMALL, epochs=2), tmp_path, progress=False, callbacks=[first])
    assert first.calls == [
        ("on_eval", 1),
        ("on_epoch_end", 1),
        ("on_eval", 2),
        ("on_epoch_end", 2),
        ("on_train_end", 2, 2),
    ]
    train(TrainConfig(**SMALL, epochs=3), tmp_path, progress=False, resume=True, callbacks=[second])
    assert second.calls == [("on_eval", 3), ("on_epoch_end", 3), ("on_train_end", 3, 3)]


def test_a_callback_with_one_hook_and_on_a_log_schedule(tmp_path):
    rows = []

    class OnlyRows:
        def on_eval(self, run, row):
            rows.append(row)

    run = train(TrainConfig(**SMALL, epochs=3, evals_per_decade=4), tmp_path, progress=False, callbacks=[OnlyRows()])
    assert rows == run.metrics and len(rows) >= 2  # every row written, no other hook needed


def test_graph_runs_call_the_hooks_too(tmp_path):
    recorder = Recorder()
    config = TrainConfig(model="vgae", dataset="planted-partition", hidden=(8,), z_dim=4, epochs=2, lr=0.01)
    train(config, tmp_path, progress=False, callbacks=[recorder])
    assert recorder.calls == [
        ("on_eval", 1),
        ("on_epoch_end", 1),
        ("on_eval", 2),
        ("on_epoch_end", 2),
        ("on_train_end", 2, 2),
    ]


@pytest.mark.parametrize("callback", [object(), Recorder])
def test_a_callback_without_hooks_is_refused(tmp_path, callback):
    with pytest.raises(ValueError, match="defines none of \\['on_eval', 'on_epoch_end', 'on_train_end'\\]"):
        train(TrainConfig(**SMALL, epochs=1), tmp_path, progress=False, callbacks=[callback])


class SeesItsEpochSaved:
    """Records, at each hook, the epoch of the row it got and the epoch the checkpoint on disk holds."""

    def __init__(self, run_dir):
        self.run_dir, self.calls = run_dir, []

    def on_eval(self, run, row):
        self.calls.append((row["epoch"], load_checkpoint(self.run_dir / "checkpoint.pt")["epoch"]))


def test_callbacks_run_after_the_epochs_checkpoint_is_written(tmp_path):
    seen = SeesItsEpochSaved(tmp_path)
    train(TrainConfig(**SMALL, epochs=6, evals_per_decade=2), tmp_path, progress=False, callbacks=[seen])
    assert seen.calls == [(2, 2), (5, 5), (6, 6)]  # rows at epochs 2, 5 and 6, each seen once its epoch is saved


class FailsAt:
    """A callback whose ``hook`` raises at epoch ``epoch`` (a logger whose disk went away)."""

    def __init__(self, hook, epoch):
        self.hook, self.epoch = hook, epoch

    def on_eval(self, run, row):
        self._maybe_fail("on_eval", row["epoch"])

    def on_epoch_end(self, run, row):
        self._maybe_fail("on_epoch_end", row and row["epoch"])

    def _maybe_fail(self, hook, epoch):
        if hook == self.hook and epoch == self.epoch:
            raise RuntimeError("the logger's disk went away\nsecond line")


@pytest.mark.parametrize(
    "hook, evals_per_decade, epoch, saved_rows, all_rows",
    [
        ("on_eval", 0, 2, [1, 2], [1, 2, 3, 4, 5, 6]),  # a row each epoch
        ("on_epoch_end", 0, 2, [1, 2], [1, 2, 3, 4, 5, 6]),
        ("on_eval", 2, 5, [2, 5], [2, 5, 6]),  # rows at epochs 2, 5 and 6 only
    ],
)
def test_a_failing_callback_loses_no_epoch_and_is_one_line(
    tmp_path, hook, evals_per_decade, epoch, saved_rows, all_rows
):
    config = TrainConfig(**SMALL, epochs=6, evals_per_decade=evals_per_decade)
    with pytest.raises(CallbackError) as err:
        train(config, tmp_path, progress=False, callbacks=[FailsAt(hook, epoch)])
    assert str(err.value) == (
        f"callback FailsAt.{hook} failed at epoch {epoch} (RuntimeError: the logger's disk went away); training "
        f"stopped with epoch {epoch} saved, so nothing is lost: fix the callback and resume"
    )
    assert isinstance(err.value.__cause__, RuntimeError)  # the callback's own error, for its traceback
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == epoch
    assert [row["epoch"] for row in load_run(tmp_path).metrics] == saved_rows
    resumed = train(config, tmp_path, resume=True, progress=False)
    assert [row["epoch"] for row in resumed.metrics] == all_rows


class _FailsAtEpochEnd:
    """``on_epoch_end`` raises at the end of the ``epoch``-th epoch (counted: the epoch may have no row)."""

    def __init__(self, epoch):
        self.epoch, self.ended = epoch, 0

    def on_epoch_end(self, run, row):
        self.ended += 1
        if self.ended == self.epoch:
            raise OSError("no space left")


def test_an_epoch_without_a_due_checkpoint_is_saved_when_its_callback_fails(tmp_path):
    # evals_per_decade=2: epoch 3 has no metrics row, so no checkpoint is due at its end
    with pytest.raises(CallbackError, match=r"_FailsAtEpochEnd.on_epoch_end failed at epoch 3 \(OSError: no space"):
        train(
            TrainConfig(**SMALL, epochs=6, evals_per_decade=2),
            tmp_path,
            progress=False,
            callbacks=[_FailsAtEpochEnd(3)],
        )
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 3


def test_a_failing_graph_callback_loses_no_epoch(tmp_path):
    config = TrainConfig(model="vgae", dataset="planted-partition", hidden=(8,), z_dim=4, epochs=3, lr=0.01)
    with pytest.raises(CallbackError, match="failed at epoch 2 .*epoch 2 saved"):
        train(config, tmp_path, progress=False, callbacks=[FailsAt("on_eval", 2)])
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2


def test_a_failing_callback_through_the_cli_is_one_line(tmp_path, monkeypatch, capsys):
    from pyro_vae.plots.tensorboard import TensorBoard

    def fails(self, run, row):
        raise OSError("the event file cannot be written")

    monkeypatch.setattr(TensorBoard, "on_eval", fails)
    run_dir = tmp_path / "run"
    argv = [
        "train",
        "--dataset",
        "synthetic",
        "--z-dim",
        "2",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--no-progress",
        "--device",
        "cpu",
        "-k",
        "2",
        "--run-dir",
        str(run_dir),
        "--tensorboard",
    ]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "pyro-vae: error: callback TensorBoard.on_eval failed at epoch 1 (OSError: the event file cannot be "
        "written); training stopped with epoch 1 saved, so nothing is lost: fix the callback and resume\n"
    )
    assert load_checkpoint(run_dir / "checkpoint.pt")["epoch"] == 1
