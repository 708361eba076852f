"""Callbacks: a user's code run by the training loop at three points of a run.

Pass objects to ``train(config, run_dir, callbacks=[...])``; each may define any of

* ``on_eval(run, row)``: a metrics row was appended (``row``: the dict written to ``metrics.csv``:
  epoch, samples seen, learning rate, train and test ELBO, times);
* ``on_epoch_end(run, row)``: an epoch ended (its checkpoint, if one was due, is written);
  ``row`` is the last metrics row so far (``None`` before the first);
* ``on_train_end(run, row)``: the run reached ``config.epochs``.

They run on the main process only (rank 0 under torchrun), after the files of that point are
written, so a callback that fails loses no work. For example, logging to MLflow::

    class MLflowLogger:
        def on_eval(self, run, row):
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])

    train(config, run_dir, callbacks=[MLflowLogger()])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

HOOKS = ("on_eval", "on_epoch_end", "on_train_end")


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


def notify(callbacks: Sequence[object], hook: str, run: Any, row: dict | None) -> None:
    """Call ``hook(run, row)`` of every callback that defines it, in order."""
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(run, row)
