"""Callbacks: a user's hooks at each metrics row, each epoch's end and the run's end."""

import re

import pytest
import torch
from support import SMALL

from pyro_vae.cli import main
from pyro_vae.training import TrainConfig, load_run, train
from pyro_vae.training.callbacks import BEST_CHECKPOINT, HOOKS, CallbackError, EarlyStopping
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
    with pytest.raises(ValueError, match=re.escape(f"defines none of {list(HOOKS)}")):
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
    assert main(argv) == 1
    assert capsys.readouterr().err == (
        "pyro-vae: error: callback TensorBoard.on_eval failed at epoch 1 (OSError: the event file cannot be "
        "written); training stopped with epoch 1 saved, so nothing is lost: fix the callback and resume\n"
    )
    assert load_checkpoint(run_dir / "checkpoint.pt")["epoch"] == 1


class Steps:
    def __init__(self):
        self.steps = []

    def on_batch_end(self, run, step):
        self.steps.append((step["epoch"], step["step"], step["loss"]))


def test_on_batch_end_sees_every_step_and_its_loss(tmp_path):
    steps = Steps()
    run = train(TrainConfig(**SMALL, epochs=2, num_train=300), tmp_path, progress=False, callbacks=[steps])
    assert [s[:2] for s in steps.steps] == [(e, k) for e in (1, 2) for k in (1, 2, 3)]  # 300 points, batches of 100
    first_row = run.metrics[0]  # the row's train ELBO is the mean of its epoch's step losses per datum
    assert first_row["train_elbo"] == pytest.approx(-sum(loss for e, _, loss in steps.steps if e == 1) / (3 * 300))


class StopAt:
    def __init__(self, epoch):
        self.epoch, self.should_stop, self.ended = epoch, False, None

    def on_batch_end(self, run, step):  # asked mid-epoch: the run still ends that epoch
        self.should_stop = self.should_stop or step["epoch"] == self.epoch

    def on_train_end(self, run, row):
        self.ended = len(run.metrics)


def test_should_stop_ends_the_run_cleanly_after_its_epoch_and_a_resume_goes_on(tmp_path):
    config = TrainConfig(**SMALL, epochs=5, num_train=200, evals_per_decade=1)  # rows are not due every epoch
    stopper = StopAt(2)
    run = train(config, tmp_path, progress=False, callbacks=[stopper])
    assert stopper.ended == len(run.metrics) == 0  # no row was due: the stop still wrote epoch 2
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2
    whole = train(config, tmp_path / "whole", progress=False)
    resumed = train(config, tmp_path, resume=True, progress=False)
    assert [r["test_elbo"] for r in resumed.metrics] == [r["test_elbo"] for r in whole.metrics]


def test_early_stopping_stops_after_patience_rows_and_keeps_the_best_checkpoint(tmp_path):
    # the test ELBO rises every epoch of this run, so with mode="min" epoch 1 stays best
    stopper = EarlyStopping("test_elbo", patience=2, mode="min")
    run = train(TrainConfig(**SMALL, epochs=10), tmp_path, progress=False, callbacks=[stopper])
    elbos = [r["test_elbo"] for r in run.metrics]
    assert elbos == sorted(elbos) and len(run.metrics) == 3 and stopper.best_epoch == 1
    best = load_checkpoint(tmp_path / BEST_CHECKPOINT)
    assert best["epoch"] == 1 and load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 3
    epoch_1 = train(TrainConfig(**SMALL, epochs=1), tmp_path / "one", progress=False)
    for name, value in epoch_1.program.state_dict().items():
        assert torch.equal(best["model"][name], value), name


def test_early_stopping_on_a_column_the_rows_lack_stops_with_one_line(tmp_path):
    with pytest.raises(CallbackError, match="EarlyStopping monitors 'val_elbo', which the metrics rows lack"):
        train(TrainConfig(**SMALL, epochs=2), tmp_path, progress=False, callbacks=[EarlyStopping("val_elbo")])
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


@pytest.mark.parametrize(
    "options, message",
    [
        ({"patience": 0}, "patience must be >= 1"),
        ({"mode": "up"}, "mode must be 'max' or 'min'"),
        ({"min_delta": -1.0}, "min_delta must be a finite number >= 0"),
    ],
)
def test_early_stopping_settings_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        EarlyStopping("val_elbo", **options)


def test_early_stopping_on_the_validation_bound_of_a_held_out_split(tmp_path):
    stopper = EarlyStopping("val_elbo", patience=1, mode="min")  # stops at the second row: the bound rises
    config = TrainConfig(**SMALL, epochs=5, validation_fraction=0.2)
    run = train(config, tmp_path, progress=False, callbacks=[stopper])
    assert [r["epoch"] for r in run.metrics] == [1, 2] and all("val_elbo" in r for r in run.metrics)
    assert load_checkpoint(tmp_path / BEST_CHECKPOINT)["epoch"] == 1
    assert len(run.dataset.validation) == round(0.2 * (len(run.dataset.train) + len(run.dataset.validation)))


def test_early_stopping_from_the_command_line_needs_a_validation_set(tmp_path, capsys):
    argv = ["train", "--dataset", "synthetic", "--z-dim", "2", "--hidden", "16", "--no-progress", "-k", "2"]
    assert main([*argv, "--run-dir", str(tmp_path / "a"), "--early-stopping", "2"]) == 2
    assert "add --validation-fraction F" in capsys.readouterr().err
    run_dir = tmp_path / "b"
    assert main([*argv, "--run-dir", str(run_dir), "--early-stopping", "2", "--validation-fraction", "0.2"]) == 0
    assert (run_dir / BEST_CHECKPOINT).is_file() and "val_elbo" in (run_dir / "metrics.csv").read_text()
