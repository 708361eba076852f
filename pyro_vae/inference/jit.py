"""Compiled training steps: an estimator's ELBO traced once per batch layout with Pyro's ``JitTrace_ELBO``.

Pyro's ``JitTrace_ELBO`` records the whole surrogate loss (the model and guide traces,
their log densities and the ELBO's sum) as one ``torch.jit`` graph on its first call,
and afterwards runs that graph without the Python side of Pyro's effect handlers: the
per-step cost of tracing the program (``pyro-vae benchmark``) goes, and the gradient
stays that of ``Trace_ELBO``. A graph fixes everything that is not a tensor argument:
the batch's shape, ``total_size``, every Python branch the program took and every
handler around it. :class:`CompiledELBO` therefore

* keeps one graph per batch layout (the names, shapes, dtypes and devices of the
  batch's tensors, and its other arguments), so a smaller last minibatch gets its own;
* compiles under a forked random stream (``torch.random.fork_rng``): the compiling
  runs draw nothing from the caller's stream, so a compiled run draws the same noise
  as the eager one and gives the same losses and parameters to float rounding;
* runs ``check`` (the program's data check) on every batch, outside the graph, which
  would otherwise have frozen the check's first result;
* refuses to run inside a Pyro handler, whose effect would be frozen into the graph
  (e.g. KL warm-up's beta at the epoch of the first step).

Only a program with static structure can be compiled, Pyro's condition for its JIT
ELBOs: the same sites, in the same order, whatever the data's values. The built-in
models on ``Trace_ELBO`` are (``tests/inference/test_jit.py`` checks each against its eager
losses); a user's model that branches in Python on tensor values is not, and should
train without ``--jit``. M2 trains with ``TraceEnum_ELBO``, which is not compiled.

:data:`CHECKED` lists the (built-in model, estimator) pairs whose compiled step the tests
check against the eager one; :func:`compiles_by_default` says when ``train`` compiles
without being asked (one of them, one particle, the aevb algorithm, no KL warm-up). A
user's own program trains eagerly unless ``jit=True`` (``--jit``) asks. ``torch.jit.trace``, on which
Pyro's JIT rests, is deprecated by PyTorch in favour of ``torch.compile``; its
``FutureWarning`` is silenced here.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import torch
from pyro.infer import ELBO, JitTrace_ELBO, Trace_ELBO
from pyro.poutine.runtime import _PYRO_STACK

from pyro_vae.inference.algorithms import ALGORITHMS, algorithm_member
from pyro_vae.inference.estimators import Estimator, Objective
from pyro_vae.models.program import Program, member

#: (model, estimator) pairs of the built-in models whose compiled step equals the eager one
#: (``tests/inference/test_jit.py``); ``train`` compiles these by default (:func:`compiles_by_default`).
CHECKED: tuple[tuple[str, str], ...] = (
    ("vae", "reparam"),
    ("vae", "stl"),
    ("vae", "score"),
    ("cvae", "reparam"),
    ("iaf", "reparam"),
    ("two-layer", "reparam"),
    ("mog-prior", "reparam"),
    ("vampprior", "reparam"),
)


def compiles_by_default(config, model_class: type | Callable) -> bool:
    """Whether a run of ``config`` (a ``TrainConfig``) whose program is ``model_class`` trains
    compiled when ``jit`` is not given: a checked built-in pair (:data:`CHECKED`, and the class
    pyro_vae registered under that name, not a user's), one particle, the aevb algorithm, no
    KL warm-up (whose beta a graph would freeze)."""
    return (
        (config.model, config.estimator) in CHECKED
        and model_class.__module__.startswith("pyro_vae.models.")
        and config.num_particles == 1
        and algorithm_member(ALGORITHMS[config.algorithm], "compiles")
        and not config.kl_warmup
        and not config.estimator_options
    )


# the ELBOs with a compiled counterpart in Pyro that pyro_vae's estimators use
JIT_ELBOS: dict[type, type] = {Trace_ELBO: JitTrace_ELBO}


class CompiledELBO:
    """``loss_and_grads(model, guide, **batch)`` of ``elbo``, compiled once per batch layout
    (see the module docstring); ``check(batch)`` runs on every batch first."""

    def __init__(self, elbo: Objective, check: Callable[[dict], None] | None = None) -> None:
        jit_class = JIT_ELBOS.get(type(elbo))
        if jit_class is None or not isinstance(elbo, ELBO):  # each key of JIT_ELBOS is one (for the type checker)
            raise ValueError(
                f"{type(elbo).__name__} has no compiled counterpart in Pyro; compiled ELBOs: "
                f"{sorted(c.__name__ for c in JIT_ELBOS)}"
            )
        self.options = dict(
            num_particles=elbo.num_particles,
            max_plate_nesting=elbo.max_plate_nesting,
            vectorize_particles=elbo.vectorize_particles,
            ignore_jit_warnings=True,
        )
        self.jit_class, self.check = jit_class, check
        self.graphs: dict[tuple, tuple[JitTrace_ELBO, Callable, Callable]] = {}

    def loss_and_grads(self, model: Callable, guide: Callable, **batch) -> float:
        """The eager ELBO's ``loss_and_grads(model, guide, **batch)``: backpropagates the
        surrogate loss and returns the loss."""
        if _PYRO_STACK:
            raise ValueError(
                "a compiled ELBO cannot run inside Pyro handlers "
                f"({', '.join(type(m).__name__ for m in _PYRO_STACK)}): the first step's graph would fix their "
                "effect for every later step (KL warm-up's beta, say); train without --jit"
            )
        if self.check is not None:
            self.check(batch)
        names = [k for k, v in batch.items() if torch.is_tensor(v)]
        others = {k: v for k, v in batch.items() if not torch.is_tensor(v)}
        key = (
            tuple((k, batch[k].shape, batch[k].dtype, batch[k].device) for k in names),
            tuple(sorted(others.items())),
            model,
            guide,
        )
        try:
            if key not in self.graphs:
                self.graphs[key] = self._compile(model, guide, names, others, [batch[k] for k in names])
            elbo, model_fn, guide_fn = self.graphs[key]
            return elbo.loss_and_grads(model_fn, guide_fn, *(batch[k] for k in names))
        except AssertionError:  # pyro.ops.jit: a traced parameter is not the param store's own
            raise ValueError(
                "--jit cannot compile this program: Pyro's JIT found a parameter that is not the one its "
                "param store holds, which happens when the model or guide calls pyro.module(name, module) "
                "on a PyroModule (whose parameters Pyro already tracks). Drop the pyro.module call (a "
                "PyroModule needs none), or train with --no-jit"
            ) from None

    def _compile(
        self, model: Callable, guide: Callable, names: list[str], others: dict, tensors: list[torch.Tensor]
    ) -> tuple[JitTrace_ELBO, Callable, Callable]:
        def model_fn(*values):
            return model(**dict(zip(names, values)), **others)

        def guide_fn(*values):
            return guide(**dict(zip(names, values)), **others)

        elbo = self.jit_class(**self.options)
        devices = [t.device for t in tensors if t.device.type == "cuda"]
        with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.trace.* is deprecated", category=FutureWarning)
            elbo.loss_and_surrogate_loss(model_fn, guide_fn, *tensors)  # traces; the caller's stream is untouched
        return elbo, model_fn, guide_fn


def compile_estimator(estimator: Estimator, check: Callable[[dict], None] | None = None) -> Estimator:
    """``estimator`` with its ELBO compiled (:class:`CompiledELBO`); ``ValueError`` naming the
    estimator if its ELBO has no compiled counterpart or it trains extra modules."""
    if len(estimator.modules):
        raise ValueError(f"the {estimator.name} estimator trains its own modules, which --jit does not compile")
    try:
        elbo = CompiledELBO(estimator.elbo, check)
    except ValueError as err:
        raise ValueError(f"the {estimator.name} estimator cannot be compiled: {err}") from None
    return dataclasses.replace(estimator, elbo=elbo)


def data_check(program: Program) -> Callable[[dict], None] | None:
    """The program's per-batch data check for :class:`CompiledELBO`, where it has one: the
    checks its model runs on a call, ``program.batch_size(x, None, context)`` (the data's
    shape, dtype and range, and the context's labels, as :class:`~pyro_vae.models.VAE`'s)."""
    batch_size = member(program, "batch_size")
    if batch_size is None:
        return None
    keys = [key for key in member(program, "data_keys") if key != "x"]
    return lambda batch: batch_size(batch["x"], None, {key: batch[key] for key in keys if key in batch})
