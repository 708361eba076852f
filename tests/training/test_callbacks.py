"""Callbacks: a user's hooks at each metrics row, each epoch's end and the run's end."""

import pytest

from pyro_vae.training import TrainConfig, train
from support import SMALL


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
    assert first.calls == [("on_eval", 1), ("on_epoch_end", 1), ("on_eval", 2), ("on_epoch_end", 2),
                           ("on_train_end", 2, 2)]
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
    assert recorder.calls == [("on_eval", 1), ("on_epoch_end", 1), ("on_eval", 2), ("on_epoch_end", 2),
                              ("on_train_end", 2, 2)]


@pytest.mark.parametrize("callback", [object(), Recorder])
def test_a_callback_without_hooks_is_refused(tmp_path, callback):
    with pytest.raises(ValueError, match="defines none of \\['on_eval', 'on_epoch_end', 'on_train_end'\\]"):
        train(TrainConfig(**SMALL, epochs=1), tmp_path, progress=False, callbacks=[callback])
