"""Training algorithms: the protocol every one implements, and their registry.

An algorithm turns minibatches into parameter updates of a program (a model
with its guide). The training loop (:mod:`pyro_vae.training.loop`) names no
algorithm: it builds ``ALGORITHMS[config.algorithm](program, estimator, config)``
and calls

* ``step(batch, total_size) -> float``: one update on ``batch`` (a dict of
  keyword arguments for the model and guide, ``{"x": ...}`` or ``{"x": ...,
  "y": ...}``), the minibatch scaled to ``total_size`` data; returns the loss
  (a negative ELBO estimate of the whole data set, or the algorithm's own loss);
* ``end_epoch()``: steps epoch-wise learning-rate schedules;
* ``observe(row)`` (optional): a metrics row was written (``test_elbo``, ``train_elbo``, and
  ``val_elbo`` for a run with a validation split); a plateau schedule steps on it;
* ``learning_rate() -> float``: the current learning rate (for the metrics);
* ``state_dict()`` / ``load_state_dict(state)``: everything a checkpoint
  needs beyond the program's and estimator's parameters (optimizers,
  schedulers, baseline averages), so that a resumed run continues exactly.

``config`` is read for ``optimizer``, ``lr``, ``weight_decay`` and its options
(:func:`~pyro_vae.inference.optim.configured_optimizer`), the schedule, its interval, the loss
scale and ``clip_norm`` (:class:`~pyro_vae.inference.stepping.Stepping`, which the built-in
algorithms hand ``step``, ``end_epoch``, ``observe`` and their state to) and ``num_particles``
(a :class:`~pyro_vae.training.config.TrainConfig`).
The optional members below are declared with their defaults in :data:`ALGORITHM_DEFAULTS`
and read with :func:`algorithm_member`. An algorithm class may define ``check_config(config)`` to refuse settings it
cannot use, and sets ``splits_batches = False`` if its update is not a sum of
per-datum terms (one importance weight for a whole minibatch), so that a
minibatch split over processes (:mod:`pyro_vae.training.distributed`) would
change what it computes; such an algorithm runs on one process only. One that sets
``compiles = True`` steps nothing but ``estimator.elbo.loss_and_grads``, so ``train(...,
jit=True)`` may hand it the estimator with its ELBO compiled (:mod:`pyro_vae.inference.jit`);
one that sets ``global_latents = True`` trains programs with latents outside the data plate
(shared by all data); the training loop refuses such a program for the others.
Registered: ``aevb`` (:mod:`pyro_vae.inference.svi`),
``wake-sleep`` and ``rws`` (:mod:`pyro_vae.inference.wake_sleep`), ``mcem``
(:mod:`pyro_vae.inference.mcem`).

Parameters are those of the program's modules, stepped by torch optimizers;
state Pyro's ELBOs keep in the param store (``TraceGraph_ELBO``'s decaying
averages) lives in an algorithm's own :class:`ParamScope`, so training never
reads or clears the caller's global param store. (Pyro's
``pyro.settings.set(module_local_params=True)`` would also keep parameters in
the modules, but it is a process-wide switch that a ``PyroModule`` reads when
it is constructed; a library cannot set it for its caller, so pyro_vae keeps
Pyro's default and scopes the store instead.)
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import pyro
import torch
from pyro.params.param_store import StateDict

from pyro_vae.registry import Registry, declared_member


class Algorithm(Protocol):
    """What the training loop needs of an algorithm (see the module docstring)."""

    def step(self, batch: dict[str, torch.Tensor], total_size: int) -> float: ...

    def end_epoch(self) -> None: ...

    def learning_rate(self) -> float: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


#: The optional members of an algorithm class and what a class without one means (the module docstring
#: says more); read with :func:`algorithm_member`.
ALGORITHM_DEFAULTS: dict[str, object] = {
    # it reads config.kl_warmup (the latent terms' weight annealed from 0 to 1)
    "anneals": False,
    # it steps nothing but estimator.elbo.loss_and_grads, which train(..., jit=True) may compile
    "compiles": False,
    # it trains programs with latents outside the data plate (shared by all data)
    "global_latents": False,
    # its update is a sum of per-datum terms, so a minibatch may be split over processes
    "splits_batches": True,
    # check_config(config), a static method: refuse settings it cannot use; None: no check
    "check_config": None,
    # observe(row), on an instance: a metrics row was written (a plateau schedule steps on it); None: none
    "observe": None,
}


def algorithm_member(algorithm: object, name: str) -> Any:
    """``algorithm``'s (an algorithm class's or instance's) optional member ``name``, or its default in
    :data:`ALGORITHM_DEFAULTS` where it has none; a name not declared there is refused."""
    return declared_member(
        algorithm, name, ALGORITHM_DEFAULTS, "algorithm", "ALGORITHM_DEFAULTS (pyro_vae.inference.algorithms)"
    )


#: The training algorithms by name (``--algorithm``): classes built as ``ALGORITHMS[name](program,
#: estimator, config)`` that implement :class:`Algorithm` (``aevb``, ``wake-sleep``, ``rws``, ``mcem``).
ALGORITHMS: Registry[type] = Registry("algorithm")
register_algorithm = ALGORITHMS.register

# Pyro's names for the decaying-average baselines TraceGraph_ELBO keeps in the param store.
BASELINE_PREFIX = "__baseline_avg_downstream_cost_"


class ParamScope:
    """A private Pyro param store, entered around each step with ``with scope:``.

    While entered, it replaces the caller's global param store (which is set
    aside and restored on exit, never cleared): Pyro's registrations of the
    program's modules land here, and so does what Pyro's ELBOs store as
    ``pyro.param`` (decaying-average baselines), which :meth:`state_dict`
    returns for checkpoints. Stale entries of other programs with the same
    names cannot leak in. A program that creates a ``pyro.param`` that is not
    one of ``owned`` (its module parameters) would not be trained by the module
    optimizers, so it is refused.
    """

    def __init__(self, owned: Iterable[torch.Tensor] = ()) -> None:
        self.state: StateDict = {"params": {}, "constraints": {}}
        self.owned = {id(p) for p in owned}
        self._scope: AbstractContextManager[StateDict] | None = None

    def __enter__(self) -> ParamScope:
        self._scope = pyro.get_param_store().scope(self.state)
        self.state = self._scope.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        assert self._scope is not None  # __enter__ made it (for the type checker)
        self._scope.__exit__(*exc)
        stray = sorted(
            name
            for name, value in self.state["params"].items()
            if id(value) not in self.owned and not name.startswith(BASELINE_PREFIX)
        )
        if stray and exc[0] is None:
            raise ValueError(
                f"the program creates the Pyro params {stray} outside its modules; pyro_vae trains module "
                "parameters: declare them as nn.Parameter or PyroParam attributes of the PyroModule"
            )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The baseline values (detached copies); module parameters are saved with the modules."""
        return {
            name: value.detach().clone()
            for name, value in self.state["params"].items()
            if name.startswith(BASELINE_PREFIX)
        }

    def load_state_dict(self, values: dict[str, torch.Tensor]) -> None:
        """Set the baselines to ``values``, replacing those of the same names."""
        with self:
            store = pyro.get_param_store()
            for name, value in values.items():
                if name in store:
                    del store[name]
                pyro.param(name, value)
