"""Callbacks: a user's code run by the training loop at four points of a run and after its final
evaluation, and a way to stop it.

Pass objects to ``train(config, run_dir, callbacks=[...])``; each may define any of

* ``on_batch_end(run, step)``: an optimizer step ended; ``step`` is ``{"epoch", "step", "loss"}``
  (the step's number within its epoch, its loss: the negative whole-data bound estimate);
* ``on_eval(run, row)``: a metrics row was written (``row``: the dict written to ``metrics.csv``:
  epoch, samples seen, learning rate, train and test ELBO, times), once per row, at the end of
  the row's epoch;
* ``on_epoch_end(run, row)``: an epoch ended; ``row`` is the last metrics row so far (``None``
  before the first);
* ``on_train_end(run, row)``: the run reached ``config.epochs``;
* ``on_evaluate(run, report)``: the trained run's final evaluation ended (``report``: the dict of
  :func:`~pyro_vae.training.report.evaluate_run` given ``callbacks=``, as ``pyro-vae train``
  evaluates: test ELBO and log p(x) at K importance samples, ...).

They run on the main process only (rank 0 under torchrun), after the epoch's checkpoint and
metrics are written (an epoch with a row always writes them). A callback that raises stops the
run with one :class:`CallbackError` line naming it, the hook and the epoch, and loses no work:
the loop writes the epoch's checkpoint first if it was not due, so ``--resume`` continues after
that epoch once the callback is fixed (``on_batch_end`` raises mid-epoch: the last checkpoint
written is the one to resume from).

A callback stops a run cleanly by setting its attribute ``should_stop`` to true (in any hook):
the loop finishes the epoch, writes its checkpoint, calls ``on_train_end`` and returns; a later
``resume=True`` continues from there. :class:`EarlyStopping` stops when a metrics column has not
improved for some rows and keeps the best epoch's checkpoint. For example, logging to MLflow::

    class MLflowLogger:
        def on_eval(self, run, row):
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])

    train(config, run_dir, callbacks=[MLflowLogger()])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from pyro_vae.files import atomic_copy

#: The hooks a callback may define: the training loop's (after a step, a metrics row, an epoch, the
#: run) and ``on_evaluate``, after the run's final evaluation.
HOOKS = ("on_batch_end", "on_eval", "on_epoch_end", "on_train_end", "on_evaluate")
BEST_CHECKPOINT = "best.pt"  # EarlyStopping's copy of the best epoch's checkpoint, in the run folder


class CallbackError(RuntimeError):
    """A callback raised; the run's files hold the epoch it was called at (the original
    exception is its ``__cause__``)."""


class Callback(Protocol):
    """What the training loop calls (each method optional, and the ``should_stop`` attribute;
    see the module docstring)."""

    def on_batch_end(self, run: Any, step: dict) -> None: ...

    def on_eval(self, run: Any, row: dict) -> None: ...

    def on_epoch_end(self, run: Any, row: dict | None) -> None: ...

    def on_train_end(self, run: Any, row: dict | None) -> None: ...

    def on_evaluate(self, run: Any, report: dict) -> None: ...


def check_callbacks(callbacks: Sequence[object]) -> None:
    """``ValueError`` naming a callback that defines none of :data:`HOOKS` (a typo, or a class
    passed instead of an instance)."""
    for callback in callbacks:
        if isinstance(callback, type) or not any(callable(getattr(callback, hook, None)) for hook in HOOKS):
            raise ValueError(
                f"callback {callback!r} defines none of {list(HOOKS)} (pass an instance with at least one of them)"
            )


def notify(callbacks: Sequence[object], hook: str, run: Any, row: dict | None, epoch: int, saved: str = "") -> None:
    """Call ``hook(run, row)`` of every callback that defines it, in order; one that raises
    becomes a :class:`CallbackError` naming it, the hook and ``epoch`` (``saved``: what is saved,
    when it is not that epoch)."""
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
                f"training stopped with {saved or f'epoch {epoch} saved, so nothing is lost'}: "
                "fix the callback and resume"
            ) from err


def end_of_batch(callbacks: Sequence[object], run: Any, step: dict, saved_epoch: int) -> None:
    """``on_batch_end`` with ``step`` (``{"epoch", "step", "loss"}``); the last checkpoint written is
    of ``saved_epoch``."""
    saved = f"the checkpoint of epoch {saved_epoch} to resume from" if saved_epoch else "no checkpoint written yet"
    notify(callbacks, "on_batch_end", run, step, step["epoch"], saved)


def stop_requested(callbacks: Sequence[object]) -> bool:
    """Whether a callback asks the run to stop (its ``should_stop`` is true)."""
    return any(getattr(callback, "should_stop", False) for callback in callbacks)


def end_of_epoch(callbacks: Sequence[object], run: Any, rows: Sequence[dict], epoch: int) -> None:
    """After epoch ``epoch``'s checkpoint is written: ``on_eval`` with each of its new metrics
    ``rows``, then ``on_epoch_end`` with the last row so far."""
    for row in rows:
        notify(callbacks, "on_eval", run, row, epoch)
    notify(callbacks, "on_epoch_end", run, run.metrics[-1] if run.metrics else None, epoch)


def end_of_run(callbacks: Sequence[object], run: Any, epoch: int) -> None:
    """``on_train_end`` with the last metrics row, once the run has reached its last epoch ``epoch``."""
    notify(callbacks, "on_train_end", run, run.metrics[-1] if run.metrics else None, epoch)


def after_evaluation(callbacks: Sequence[object], run: Any, report: dict) -> None:
    """``on_evaluate`` with the final evaluation's ``report`` (of the run's last epoch, ``report["epoch"]``)."""
    notify(callbacks, "on_evaluate", run, report, report["epoch"], "every epoch saved (only the evaluation is lost)")


class EarlyStopping:
    """Stop a run when the metrics column ``monitor`` has not improved for ``patience`` rows in
    a row, and keep the best row's checkpoint as ``best.pt`` in the run folder (``keep_best``).

    ``mode="max"`` (the default) counts a value above the best by more than ``min_delta`` as an
    improvement, as for a bound (``val_elbo``, ``test_elbo``) or a score (``val_auc``);
    ``mode="min"`` one below it, as for a loss. Monitor a validation column where the run has one
    (``val_elbo``, ``val_auc``): stopping on the test set chooses the test result. A row is
    written at an epoch's end or, with ``evals_per_decade``, within an epoch; the checkpoint kept
    is of that epoch's end. A row without the column, or a NaN in it, raises (the run then stops
    with a :class:`CallbackError`, its epoch saved)."""

    def __init__(
        self, monitor: str, patience: int = 10, mode: str = "max", min_delta: float = 0.0, keep_best: bool = True
    ) -> None:
        if patience < 1:
            raise ValueError(f"EarlyStopping patience must be >= 1, got {patience}")
        if mode not in ("max", "min"):
            raise ValueError(f"EarlyStopping mode must be 'max' or 'min', got {mode!r}")
        if not (math.isfinite(min_delta) and min_delta >= 0):
            raise ValueError(f"EarlyStopping min_delta must be a finite number >= 0, got {min_delta}")
        self.monitor, self.patience, self.mode, self.min_delta, self.keep_best = (
            monitor,
            patience,
            mode,
            min_delta,
            keep_best,
        )
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_rows = 0
        self.should_stop = False

    def on_eval(self, run: Any, row: dict) -> None:
        if self.monitor not in row:
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r}, which the metrics rows lack (they hold {list(row)})"
            )
        value = float(row[self.monitor])
        if math.isnan(value):
            raise ValueError(f"EarlyStopping: {self.monitor} is NaN at epoch {row['epoch']}")
        sign = 1.0 if self.mode == "max" else -1.0
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.best_epoch, self.bad_rows = value, row["epoch"], 0
            if self.keep_best and run.folder is not None:
                atomic_copy(run.folder / "checkpoint.pt", run.folder / BEST_CHECKPOINT)
            return
        self.bad_rows += 1
        self.should_stop = self.bad_rows >= self.patience
