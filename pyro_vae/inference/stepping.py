"""How an algorithm's torch optimizers step in a run: schedules, loss scale, gradient clipping.

The training loop calls an algorithm's ``step(batch, total_size)`` for each minibatch,
``end_epoch()`` after each epoch and ``observe(row)`` after each metrics row
(:mod:`pyro_vae.inference.algorithms`). An algorithm hands all three to a :class:`Stepping` over
its optimizers, which does what the config asks of them:

* **Schedules** (:mod:`pyro_vae.inference.schedules`), one per optimizer. With
  ``schedule_interval="epoch"`` (the default) they step at each epoch's end, over the run's
  epochs; with ``"step"`` after each update, over the run's optimizer steps, ``epochs x``
  :func:`steps_per_epoch` (known at the first update from ``total_size``, and saved, so that a
  resumed run builds them alike); ``warmup=W`` then counts optimizer steps. A plateau schedule
  steps on neither, but on the bound of each metrics row (:meth:`Stepping.observe`).
* **Loss scale**: ``loss_scale="sum"`` (the default) steps the gradient of the loss as the
  algorithm computes it, the whole-data negative ELBO, N/M times the minibatch sum (the paper's
  Algorithm 1), whose norm is 2e6 to 4e6 for the default VAE on MNIST. ``"mean"`` divides the
  gradient by N: that of the per-datum mean, so that a learning rate of plain SGD does not depend
  on the data set's size (:mod:`pyro_vae.inference.optim` gives the rates that train).
  ``weight_decay`` then weighs against a per-datum loss: the N(0, I) prior on the weights, which is
  ``weight_decay=1`` on the "sum" scale, is ``1 / N`` on this one. The losses the algorithm returns
  and the metrics are the whole-data ones on either scale.
* **Clipping**: ``clip_norm=c`` rescales the gradient of each optimizer's parameters (wake-sleep:
  theta's and phi's each) to an L2 norm of at most c (:func:`torch.nn.utils.clip_grad_norm_`),
  after the loss scale. On the "sum" scale the norm is the whole-data gradient's, N times a
  per-datum one: for the default VAE on MNIST (N = 60,000) 2e6 to 4e6 over the first epoch, so
  that a c below 2e6 clips nearly every step; on the "mean" scale the norm is 35 to 60.

Scale and clip act in a pre-hook of each optimizer's ``step`` (``register_step_pre_hook``), added
at the first update, when needed, so they see the gradient the optimizer is about to step: after
the algorithm's backward passes (and RWS's N/M rescaling), and after any hook added when the
algorithm was built; on several processes that is the averaging of the gradients over processes
(:class:`~pyro_vae.training.distributed.DistributedAlgorithm`), so the gradient clipped is the
one-process gradient.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.optim import lr_scheduler

from pyro_vae.inference.schedules import make_schedule

#: When schedules step (``schedule_interval``): at each epoch's end, or after each optimizer step.
SCHEDULE_INTERVALS = ("epoch", "step")
#: The gradient an optimizer steps (``loss_scale``), by name: the whole-data loss's, or the per-datum mean's.
LOSS_SCALES = {
    "sum": "the gradient of the whole-data negative ELBO, N/M times the minibatch sum (the paper's Algorithm 1)",
    "mean": "that gradient divided by N: the per-datum mean's (an SGD learning rate independent of N)",
}
#: The bounds of a metrics row a plateau schedule steps on, the first present: the validation
#: bound where the run has one, else the test ELBO.
PLATEAU_BOUNDS = ("val_elbo", "test_elbo")


def steps_per_epoch(config: Any, total_size: int) -> int:
    """The minibatches the training loop draws per epoch from ``total_size`` = N training data:
    ``N // batch_size`` (the short last batch is dropped, :class:`~pyro_vae.data.batches.Batches`),
    ``(N - num_labels) // (batch_size - labelled_per_batch)`` with labelled minibatches (one pass
    over the unlabelled data, :class:`~pyro_vae.data.batches.MixedBatches`), at least 1 (a graph is
    one batch)."""
    if config.labelled_per_batch:
        return max(1, (total_size - config.num_labels) // (config.batch_size - config.labelled_per_batch))
    return max(1, total_size // config.batch_size)


class Stepping:
    """The schedules, loss scale and gradient clipping of an algorithm's ``optimizers``, as
    ``config`` (a :class:`~pyro_vae.training.config.TrainConfig`) sets them; see the module docstring.

    An algorithm runs each update inside ``with stepping.update(total_size):`` and forwards
    ``end_epoch()``, ``observe(row)``, ``state_dict()`` and ``load_state_dict(state)``.
    Its ``epoch`` counts the epochs finished (KL warm-up reads it).
    """

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer], config: Any) -> None:
        self.optimizers, self.config = list(optimizers), config
        self.per_step = config.schedule_interval == "step"
        self.epoch = 0
        self.steps_per_epoch: int | None = None  # per-step schedules: fixed at the first update
        self.steps_in_epoch = 0
        self.total_size = 1
        self.schedulers: list[lr_scheduler.LRScheduler] = []
        self.hooked = config.clip_norm is None and config.loss_scale == "sum"  # no hook needed
        if not self.per_step:
            self._build(config.epochs)

    def _build(self, length: int) -> None:
        self.schedulers = [
            make_schedule(optimizer, self.config.lr_schedule, length, self.config.schedule_options)
            for optimizer in self.optimizers
        ]

    def _build_per_step(self, steps: int) -> None:
        self.steps_per_epoch = steps
        self._build(self.config.epochs * steps)

    @contextmanager
    def update(self, total_size: int) -> Iterator[None]:
        """Around one update of the algorithm (its backward passes and optimizer steps) on a
        minibatch scaled to ``total_size`` data: builds per-step schedules and the gradient hook at
        the first, and steps per-step schedules after each."""
        if self.per_step and not self.schedulers:
            self._build_per_step(steps_per_epoch(self.config, total_size))
        if not self.hooked:
            for optimizer in self.optimizers:
                optimizer.register_step_pre_hook(self._prepare_gradient)
            self.hooked = True
        self.total_size = total_size
        yield
        self.steps_in_epoch += 1
        if self.per_step:
            self._step_schedules()

    def _prepare_gradient(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """The pre-hook of ``optimizer.step``: the loss scale, then the clip, on its gradients."""
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if self.config.loss_scale == "mean":
            for p in params:
                p.grad.div_(self.total_size)
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, self.config.clip_norm)

    def _step_schedules(self) -> None:
        for scheduler in self.schedulers:
            if not isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
                scheduler.step()

    def end_epoch(self) -> None:
        """Count the epoch, and step epoch-wise schedules; a per-step schedule must have seen the
        steps it was built for."""
        if self.per_step and self.steps_in_epoch != self.steps_per_epoch:
            raise ValueError(
                f"the per-step schedule was built for {self.steps_per_epoch} steps per epoch (steps_per_epoch of "
                f"N / batch_size) and this epoch took {self.steps_in_epoch}; train with schedule_interval='epoch'"
            )
        self.steps_in_epoch = 0
        self.epoch += 1
        if not self.per_step:
            self._step_schedules()

    def observe(self, row: Mapping[str, Any]) -> None:
        """Step the plateau schedules on the negative of the row's first bound of :data:`PLATEAU_BOUNDS`."""
        plateaus = [s for s in self.schedulers if isinstance(s, lr_scheduler.ReduceLROnPlateau)]
        if not plateaus:
            return
        key = next((key for key in PLATEAU_BOUNDS if key in row), None)
        if key is None:
            raise ValueError(
                f"the plateau schedule steps on a metrics row's {' or '.join(PLATEAU_BOUNDS)}; the row has {sorted(row)}"
            )
        for scheduler in plateaus:
            scheduler.step(-row[key])

    def state_dict(self) -> dict:
        return {
            "schedulers": [s.state_dict() for s in self.schedulers],
            "epoch": self.epoch,
            "steps_per_epoch": self.steps_per_epoch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()``'s ``state``; before the optimizers' own states, since a per-step
        schedule built here sets the learning rates, which the optimizers' states then restore.
        A state without ``epoch`` (written before it was kept, by epoch-wise schedules only)
        counts the epochs its first schedule has stepped."""
        saved = list(state.get("schedulers", []))
        if self.per_step and not self.schedulers and state.get("steps_per_epoch"):
            self._build_per_step(state["steps_per_epoch"])
        for scheduler, scheduler_state in zip(self.schedulers, saved):
            scheduler.load_state_dict(scheduler_state)
        self.epoch = state.get("epoch", saved[0]["last_epoch"] if saved else 0)
