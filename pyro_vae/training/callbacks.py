"""Callbacks: a user's code run by the training loop at three points of a run.

Pass objects to ``train(config, run_dir, callbacks=[...])``; each may define any of

* ``on_eval(run, row)``: a metrics row was written (``row``: the dict written to ``metrics.csv``:
  epoch, samples seen, learning rate, train and test ELBO, times), once per row, at the end of
  the row's epoch;
* ``on_epoch_end(run, row)``: an epoch ended; ``row`` is the last metrics row so far (``None``
  before the first);
* ``on_train_end(run, row)``: the run reached ``config.epochs``.

They run on the main process only (rank 0 under torchrun), after the epoch's checkpoint and
metrics are written (an epoch with a row always writes them). A callback that raises stops the
run with one :class:`CallbackError` line naming it, the hook and the epoch, and loses no work:
the loop writes the epoch's checkpoint first if it was not due, so ``--resume`` continues after
that epoch once the callback is fixed. For example, logging to MLflow::

    class MLflowLogger:
        def on_eval(self, run, row):
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])

    train(config, run_dir, callbacks=[MLflowLogger()])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

HOOKS = ("on_eval", "on_epoch_end", "on_train_end")


class CallbackError(RuntimeError):
    """A callback raised; the run's files hold the epoch it was called at (the original
    exception is its ``__cause__``)."""


class Callback(Protocol):
    """What the training loop calls (each method optional; see the module docstring)."""

    def on_eval(self, run: Any, row: dict) -> None: ...

    def on_epoch_end(self, run: Any, row: dict | None) -> None: ...

    def on_train_end(self, run: Any, row: dict | None) -> None: ...


def check_callbacks(callbacks: Sequence[object]) -> None:
    """``ValueError`` naming a callback that defines none of :data:`HOOKS` (a typo, or a class
    passed instead of an instance)."""
    for callback in callbacks:
        if isinstance(callback, type) or not any(callable(getattr(callback, hook, None)) for hook in HOOKS):
            raise ValueError(
                f"callback {callback!r} defines none of {list(HOOKS)} (pass an instance with at least one of them)"
            )


def notify(callbacks: Sequence[object], hook: str, run: Any, row: dict | None, epoch: int) -> None:
    """Call ``hook(run, row)`` of every callback that defines it, in order; one that raises
    becomes a :class:`CallbackError` naming it, the hook and ``epoch``."""
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is None:
            continue
        try:
            method(run, row)
        except Exception as err:
            first = (str(err).strip().splitlines() or [""])[0]
            raise CallbackError(
                f"callback {type(callback).__name__}.{hook} failed at epoch {epoch} ({type(err).__name__}: {first}); "
                f"training stopped with epoch {epoch} saved, so nothing is lost: fix the callback and resume"
            ) from err


def end_of_epoch(callbacks: Sequence[object], run: Any, rows: Sequence[dict], epoch: int) -> None:
    """After epoch ``epoch``'s checkpoint is written: ``on_eval`` with each of its new metrics
    ``rows``, then ``on_epoch_end`` with the last row so far."""
    for row in rows:
        notify(callbacks, "on_eval", run, row, epoch)
    notify(callbacks, "on_epoch_end", run, run.metrics[-1] if run.metrics else None, epoch)


def end_of_run(callbacks: Sequence[object], run: Any, epoch: int) -> None:
    """``on_train_end`` with the last metrics row, once the run has reached its last epoch ``epoch``."""
    notify(callbacks, "on_train_end", run, run.metrics[-1] if run.metrics else None, epoch)
