"""What a program is, and the registry of them: every probabilistic program pyro_vae trains is
registered in :data:`MODELS` by name (``--model``).

A program is the trained object: a :class:`~pyro.nn.PyroModule` (or any ``nn.Module``) with

* ``model(x=None, *, total_size=None, num_generated=None, **context)`` and
  ``guide(x, *, total_size=None, **context)``: the Pyro program p(x, latents)
  and the recognition model q(latents | x), every per-datum site inside the
  plate named ``data_plate_name`` at ``dim=-1``;
* ``data_keys``: the batch entries passed to both as keywords (``("x",)``, or
  ``("x", "y")`` for a model of labelled data);
* ``max_plate_nesting`` (:class:`Program`); and, for a registered model class,
* a classmethod ``build(spec, **options)`` making an instance for data
  described by a :class:`DataSpec` (``options`` come from the training config).

"Model" names two things, as in Pyro: a registered *model class* (``TrainConfig.model``,
``--model``, :data:`MODELS`) and a program's generative *method* ``model``. The object trained is
the *program*.

Every other member the library reads is optional and has a declared default
(:data:`PROGRAM_DEFAULTS`), read by :func:`member`, so a plain ``PyroModule`` that defines only
``model``, ``guide``, ``data_keys`` and ``max_plate_nesting`` trains. The members are read of a
program or of its class (``data_kind`` also of a data set's loader). Among them:

* ``auxiliary_loss(*, x, y=None, total_size=None) -> torch.Tensor | None``: a
  term added to the training loss that is not part of the bound (M2's
  alpha-weighted classification loss). The AEVB algorithm backpropagates it
  with the estimator's surrogate and adds its value to the step's loss;
  ``None`` adds nothing. Evaluation ignores it. It receives the batch's data
  and ``total_size`` (N), and should be on the loss's scale: a total over the
  N data the minibatch stands for;
* ``initialize(x_train)``: a data-dependent initialization (the VampPrior's
  ``pseudo_init="data"``), to be called once with the training images after ``build``
  and before the first step;
* ``classify(x) -> torch.Tensor``: one predicted class per datum; ``pyro-vae
  evaluate`` then reports the test error;
* ``program_options``: the names of constructor options that take a trained program (the
  stacked M1 + M2's ``m1``). A config gives such an option as a string, ``pretrained:NAME``
  or a run folder, which the training layer loads before ``build``
  (:func:`pyro_vae.training.build.load_program`); the model itself loads no files.

:class:`pyro_vae.models.vae.VAE` is the reference implementation; a subclass
overriding its hooks (``prior``, ``posterior``, ``decode``, ``model``,
``guide``) and decorated with ``@register_model("name")`` is trainable with
``pyro-vae train --model name``, reloadable with ``load_run`` and evaluated
like the built-in models.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from pyro.nn import PyroModule

from pyro_vae.registry import Registry, declared_member
from pyro_vae.validation import check_arguments


class Program(Protocol):
    """The members every program has (the optional ones are in :data:`PROGRAM_DEFAULTS`):
    ``model(x, **context)`` and ``guide(x, **context)``, the Pyro programs; ``data_keys``, the
    batch keys they take (``("x",)``, or ``("x", "y")`` with labels); ``max_plate_nesting``,
    for Pyro's ELBOs; and what every ``nn.Module`` has that the library uses (its parameters,
    its training mode)."""

    data_keys: tuple[str, ...]
    max_plate_nesting: int
    training: bool

    def model(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any: ...

    def guide(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any: ...

    def parameters(self, recurse: bool = True) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...


#: The optional members of a program (or its class) and what a program without one means.
PROGRAM_DEFAULTS: dict[str, object] = {
    # the kind of data the model (or a data set's loader) holds: "vectors" or "graph"
    "data_kind": "vectors",
    # the batch keys the model and guide take; ("x",): unlabelled data
    "data_keys": ("x",),
    # the name of the plate over the data (the minibatch dimension)
    "data_plate_name": "data",
    # the latent code's size where the program has one code z; None: not known
    "z_dim": None,
    # classify(x): q(y|x)'s most probable class (M2); None: the program does not classify
    "classify": None,
    # auxiliary_loss(batch, total_size): a loss term added to the ELBO's (M2's alpha term); None: none
    "auxiliary_loss": None,
    # batch_size(x, total_size, context): the data check the model runs on a call; None: none
    "batch_size": None,
    # initialize(batch): a data-dependent start before training (the VampPrior's pseudo-inputs); None: none
    "initialize": None,
    # the model options (model_options keys) that name a trained program (a run folder or pretrained:NAME)
    "program_options": (),
    # check_config(config), on the class: refuse a TrainConfig the model cannot train; None: no check
    "check_config": None,
}


def member(program: object, name: str) -> Any:
    """``program``'s (or its class's) optional member ``name``, or its default in
    :data:`PROGRAM_DEFAULTS` where it has none; a name not declared there is refused."""
    return declared_member(program, name, PROGRAM_DEFAULTS, "program", "PROGRAM_DEFAULTS (pyro_vae.models.program)")


def _check_model(name: str, obj: object) -> None:
    """A model is a :class:`~pyro.nn.PyroModule` subclass or a factory ``f(spec, **options)`` returning one."""
    if isinstance(obj, type) and not issubclass(obj, PyroModule):
        raise TypeError(f"model {name!r}: {obj.__name__} is not a PyroModule subclass (e.g. of pyro_vae's VAE)")
    if not callable(obj):
        raise TypeError(f"model {name!r}: {obj!r} is neither a PyroModule subclass nor a factory function")
    if not isinstance(obj, type):
        try:
            inspect.signature(obj).bind(DataSpec((1,)))
        except TypeError:
            raise TypeError(f"model {name!r}: a factory must take (spec, **options), got {obj!r}") from None


#: The probabilistic programs by name (``--model``): classes with ``model``, ``guide`` and
#: ``build(spec, **options)`` as the module docstring describes, e.g. ``vae`` for p(z) p(x|z), q(z|x).
MODELS: Registry[type | Callable] = Registry("model", check=_check_model)
register_model = MODELS.register


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know of its data: the shape of one datum and,
    for labelled data, the number of classes."""

    x_shape: tuple[int, ...]
    num_classes: int | None = None


def build_model(name: str, spec: DataSpec, **options) -> PyroModule:
    """An instance of registered model ``name`` for data ``spec``: ``cls.build(spec, **options)``
    for a class, ``factory(spec, **options)`` for a factory.

    An option the model does not take, or of another type than its constructor's annotation
    (``num_components="abc"``), is one error naming it; so is a factory that returns no ``PyroModule``.
    """
    obj = MODELS[name]
    build = obj.build if inspect.isclass(obj) else obj  # type: ignore[attr-defined]  # a registered class has build (see MODELS)
    forwards = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(build).parameters.values())
    check_arguments(obj.__init__ if inspect.isclass(obj) and forwards else build, **options)
    try:
        program = build(spec, **options)
    except TypeError as err:
        if "unexpected keyword argument" in str(err):
            raise ValueError(f"model {name!r} does not take the option in: {err}") from None
        raise
    if not isinstance(program, PyroModule):
        raise TypeError(f"model {name!r}: its factory returned {program!r}, not a PyroModule (e.g. a VAE)")
    return program


def constructor_default(obj: type | Callable, option: str) -> Any:
    """The default of keyword ``option`` where ``obj`` (a model class or factory) takes it: the first
    ``__init__`` along the class's MRO that names it, passing by the ones that forward ``**kwargs``
    (:class:`~pyro_vae.models.priors.VampPriorVAE` takes ``hidden`` from
    :class:`~pyro_vae.models.vae.VAE`), or the factory's own; ``None`` where none declares one."""
    if inspect.isclass(obj):
        functions = [vars(cls)["__init__"] for cls in obj.__mro__ if "__init__" in vars(cls)]
    else:
        functions = [obj]
    for function in functions:
        parameters = inspect.signature(function).parameters
        if option in parameters:
            default = parameters[option].default
            return None if default is inspect.Parameter.empty else default
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return None
    return None
