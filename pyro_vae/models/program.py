"""What a program is: the members the library reads of one, declared once with their defaults.

A program is the trained object: a :class:`~pyro.nn.PyroModule` (or any ``nn.Module``) with a
generative ``model`` and a ``guide`` (:class:`Program`). Beyond those, every member the library
reads is optional and has a declared default (:data:`PROGRAM_DEFAULTS`), read by :func:`member`,
so a plain ``PyroModule`` that defines only ``model``, ``guide``, ``data_keys`` and
``max_plate_nesting`` trains; a :class:`~pyro_vae.models.VAE` subclass defines more. The members
are read of a program or of its class (a model class registered in
:data:`~pyro_vae.models.registry.MODELS`; ``data_kind`` also of a data set's loader).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class Program(Protocol):
    """The members every program has (the optional ones are in :data:`PROGRAM_DEFAULTS`):
    ``model(x, **context)`` and ``guide(x, **context)``, the Pyro programs; ``data_keys``, the
    batch keys they take (``("x",)``, or ``("x", "y")`` with labels); ``max_plate_nesting``,
    for Pyro's ELBOs."""

    data_keys: tuple[str, ...]
    max_plate_nesting: int

    def model(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any: ...

    def guide(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any: ...

    def parameters(self, recurse: bool = True) -> Any: ...


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
    if name not in PROGRAM_DEFAULTS:
        raise AttributeError(
            f"{name!r} is not a declared program member; declare it in PROGRAM_DEFAULTS "
            f"(pyro_vae.models.program) or use one of {sorted(PROGRAM_DEFAULTS)}"
        )
    return getattr(program, name, PROGRAM_DEFAULTS[name])
