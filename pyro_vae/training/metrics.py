"""When the training loop evaluates, and what a metrics row holds.

:class:`EvalSchedule` picks the steps after which a row is written (every epoch, or
``evals_per_decade`` points per decade of samples seen); :class:`Clock` keeps the
training time and loss between rows; :func:`metrics_row` evaluates the program
on the test set (the test ELBO per datum, the test error of a classifier, the
columns of an ``on_eval`` callback).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from pyro_vae.inference.classification import classification_error, classifies
from pyro_vae.inference.evaluate import evaluate
from pyro_vae.training.build import Run
from pyro_vae.training.distributed import DistributedContext


class EvalSchedule:
    """The global steps after which the training loop writes a metrics row (and evaluates).

    ``evals_per_decade = 0``: after the last step of every epoch. ``d > 0``: after the
    first step at which the samples seen reach ``10^(j/d)``, for every integer j with
    ``10^(j/d)`` at least one epoch's samples (points evenly spaced on a log axis, as the
    paper's learning curves are drawn), and after the last step of training.
    """

    def __init__(self, evals_per_decade: int, steps_per_epoch: int, batch_size: int, epochs: int) -> None:
        last = steps_per_epoch * epochs
        if evals_per_decade == 0:
            self.steps = set(range(steps_per_epoch, last + 1, steps_per_epoch))
            return
        self.steps = {last}
        j = math.ceil(evals_per_decade * math.log10(steps_per_epoch * batch_size) - 1e-9)
        while (samples := 10 ** (j / evals_per_decade)) <= last * batch_size:
            self.steps.add(math.ceil(samples / batch_size - 1e-9))
            j += 1

    def due(self, step: int) -> bool:
        return step in self.steps


class Clock:
    """Training time and loss since the last metrics row, and the run's wall time.

    ``since_row`` (from :meth:`state`, saved in the checkpoint) continues an interval that a
    resumed run began before it stopped, so the first row after a restart averages the same
    steps as an uninterrupted run's (rows between epochs, ``evals_per_decade > 0``)."""

    def __init__(self, wall: float, since_row: dict | None = None) -> None:
        self._wall_start = time.perf_counter() - wall
        self._mark = time.perf_counter()
        since_row = since_row or {}
        self.loss = float(since_row.get("loss", 0.0))
        self.steps = int(since_row.get("steps", 0))
        self.train_seconds = float(since_row.get("train_seconds", 0.0))

    def state(self) -> dict:
        """The interval since the last row: ``{"loss", "steps", "train_seconds"}``."""
        return {"loss": self.loss, "steps": self.steps, "train_seconds": self.train_seconds}

    def add_step(self, loss: float) -> None:
        now = time.perf_counter()
        self.train_seconds += now - self._mark
        self._mark = now
        self.loss += loss
        self.steps += 1

    def reset(self) -> None:
        """Start the next row's interval (evaluation time is not training time)."""
        self._mark = time.perf_counter()
        self.loss, self.steps, self.train_seconds = 0.0, 0, 0.0

    def wall(self) -> float:
        return time.perf_counter() - self._wall_start


def metrics_row(
    run: Run,
    epoch: int,
    samples_seen: int,
    lr: float,
    clock: Clock,
    device: str,
    distributed: DistributedContext,
    on_eval: Callable[[Run], dict] | None,
) -> dict:
    """One metrics row: the learning rate, the mean minibatch bound since the last row, the test ELBO
    (and the validation ELBO ``val_elbo`` of a run with a validation set), the
    test error of a program that classifies (M2's q(y|x), :func:`classifies`) and ``on_eval``'s columns.

    With a log schedule (``evals_per_decade > 0``) the test ELBO draws the same z at every
    row (torch's RNG forked and seeded), so that differences between rows are changes of
    the model, not of the Monte Carlo noise, and the training's random numbers do not
    depend on the schedule. The per-epoch schedule (the default) draws the test ELBO's z
    from the training's RNG stream, as runs recorded before the log schedule did, so their
    numbers stay reproducible. ``on_eval`` always runs on a forked, seeded RNG.
    """
    config, vae = run.config, run.program
    batches = run.dataset.test_batches(1000, device, keys=vae.data_keys, shard=distributed.shard)
    with forked_rng(config.seed, device, fork=config.evals_per_decade > 0):
        test = evaluate(vae, batches, num_samples=config.metrics_num_samples, reduce=distributed.reduce)
        if run.dataset.validation is not None:
            held_out = run.dataset.validation_batches(1000, device, keys=vae.data_keys, shard=distributed.shard)
            val = evaluate(vae, held_out, num_samples=config.metrics_num_samples, reduce=distributed.reduce)
    row = {
        "epoch": epoch,
        "samples_seen": samples_seen,
        "lr": lr,
        "train_elbo": -clock.loss / (clock.steps * len(run.dataset.train)),
        "test_elbo": test.elbo,
        **({} if run.dataset.validation is None else {"val_elbo": val.elbo}),
        "train_seconds": clock.train_seconds,
    }
    if classifies(vae):
        row["test_error"] = classification_error(vae, batches, reduce=distributed.reduce)
    if on_eval is not None:
        with forked_rng(config.seed, device):
            row.update(on_eval(run))
    row["wall_seconds"] = clock.wall()
    clock.reset()
    return row


@contextmanager
def forked_rng(seed: int, device: str, fork: bool = True) -> Iterator[None]:
    """Run the body on torch's RNG seeded with ``seed``, restoring the RNG afterwards (if ``fork``)."""
    if not fork:
        yield
        return
    cuda = torch.device(device).type == "cuda"
    with torch.random.fork_rng(devices=[torch.device(device)] if cuda else []):
        torch.manual_seed(seed)
        yield
