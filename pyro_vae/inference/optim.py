"""Optimizers from torch, by a registered name or by torch's class name, with their schedules.

An optimizer is a :class:`torch.optim.Optimizer` class: a registered name (``adam``, ``adamw``,
``adagrad``, ``sgd``, ``rmsprop``) or any class of :mod:`torch.optim` by its class name
(``NAdam``, ``RAdam``, ``Adamax``, ...; :mod:`pyro_vae.inference.torch_classes`). It is built over
the program's parameters (``module.parameters()``, Pyro's PyTorch-native pattern, so no
parameter lives in Pyro's global param store) with ``lr``, ``weight_decay`` and any of its own
keyword arguments (``optimizer_options``, e.g. ``momentum`` of ``sgd``, ``betas`` of ``adam``).
Torch's fused kernel is used where it has one. Its learning-rate schedule is one of
:mod:`pyro_vae.inference.schedules`; :mod:`pyro_vae.inference.stepping` steps both in a run.

Every option is checked before any work (:mod:`pyro_vae.inference.option_rules`: its type and
its rule in :data:`~pyro_vae.inference.option_rules.OPTION_RULES`), and
:func:`check_optimizer_settings` steps the schedule through the run's epochs: the learning rate
must stay finite and > 0 all along.

**The loss scale and the learning rate.** The loss is the negative ELBO of the whole training
set: N/M times the sum over a minibatch of M (the paper's Algorithm 1), so its gradient is N
times that of the per-datum mean: for the default VAE on MNIST (N = 60,000) its norm is 2e6 to
4e6 over the first epoch, 35 to 60 per datum. Adam, Adagrad and RMSprop divide each step by a
running scale of the gradient, so their learning rates do not depend on N. Plain SGD steps lr
times the gradient, so its rate must be N times smaller than on a per-datum loss:
``sgd`` at lr 0.01 with momentum 0.9 is NaN at the second step. Either give SGD ``lr = r / N``
for a per-datum rate r, or ``loss_scale="mean"`` (:mod:`pyro_vae.inference.stepping`: the
gradient divided by N before each step; reported losses and metrics unchanged) and the rate r
itself. The default VAE trains at r = 0.01, or 0.001 with momentum 0.9; twice these diverge
(MNIST, 100 epochs of its first 1,000 images, and one epoch of all 60,000: train ELBO -179.9
and -176.6 nats, Adam at 1e-3 -151.6).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import lr_scheduler

from pyro_vae.inference.option_rules import OPTION_RULES as OPTION_RULES  # where docs/architecture.md names it
from pyro_vae.inference.option_rules import check_option_types, check_options, options_error
from pyro_vae.inference.schedules import LR_SCHEDULES, make_schedule
from pyro_vae.inference.schedules import iwae_factor as iwae_factor  # where tests/training/test_train.py finds it
from pyro_vae.inference.schedules import schedule_spans_the_run as schedule_spans_the_run  # training.folder's
from pyro_vae.inference.torch_classes import TorchClassRegistry, public_subclasses
from pyro_vae.validation import NON_NEGATIVE, POSITIVE

#: The optimizers by name (``--optimizer``): :class:`torch.optim.Optimizer` classes, built by
#: :func:`build_optimizer` over the program's parameters with ``lr``, ``weight_decay`` and their own
#: options; beyond the registered names, every class of :mod:`torch.optim` by its class name.
OPTIMIZERS: TorchClassRegistry[type[torch.optim.Optimizer]] = TorchClassRegistry(
    "optimizer",
    "torch.optim",
    public_subclasses(torch.optim, torch.optim.Optimizer),
    adapt=lambda cls: cls,
    unusable={
        "LBFGS": "its step needs a closure that evaluates the loss again (a line search)",
        "SparseAdam": "it steps sparse gradients only, and the programs' gradients are dense",
        "Muon": "it steps 2-D weight matrices only, not the biases",
    },
)
OPTIMIZERS.register("adam", torch.optim.Adam, help="Adam (Kingma & Ba 2015)")
OPTIMIZERS.register("adamw", torch.optim.AdamW, help="Adam with decoupled weight decay (Loshchilov & Hutter 2019)")
OPTIMIZERS.register("adagrad", torch.optim.Adagrad, help="Adagrad (Duchi et al. 2011), the AEVB paper's choice")
OPTIMIZERS.register("sgd", torch.optim.SGD, help="stochastic gradient descent (options: momentum, nesterov)")
OPTIMIZERS.register("rmsprop", torch.optim.RMSprop, help="RMSprop (Tieleman & Hinton 2012)")


def build_optimizer(
    params: Iterable[torch.Tensor],
    name: str,
    lr: float,
    weight_decay: float = 0.0,
    *,
    options: dict[str, Any] | None = None,
) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``params`` with ``lr``, ``weight_decay`` and its own keyword ``options``."""
    POSITIVE.check(lr=lr)
    NON_NEGATIVE.check(weight_decay=weight_decay)
    params, cls, options = list(params), OPTIMIZERS[name], dict(options or {})
    arguments = inspect.signature(cls).parameters
    taken = set(arguments) - {"params", "lr", "weight_decay"}
    if set(options) - taken:
        raise options_error("optimizer", name, cls, set(options) - taken, skip=1)
    check_options("optimizer", name, options)
    check_option_types("optimizer", name, cls, options)
    decay = {"weight_decay": weight_decay} if "weight_decay" in arguments else {}
    if weight_decay and not decay:
        raise ValueError(f"optimizer {name!r} takes no weight_decay; give weight_decay 0 (--weight-decay 0)")
    build: Callable[..., torch.optim.Optimizer] = cls  # a subclass's constructor, with lr (Optimizer's has none)
    try:
        return build(params, lr=lr, **decay, **{**fused_option(cls, params), **options})
    except (TypeError, ValueError, RuntimeError, IndexError) as err:
        raise ValueError(f"optimizer {name!r} with options {options}: {err}") from None


def make_optimizer(
    params: Iterable[torch.Tensor],
    name: str,
    lr: float,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    *,
    epochs: int = 1,
    options: dict[str, Any] | None = None,
    schedule_options: dict[str, Any] | None = None,
) -> tuple[torch.optim.Optimizer, lr_scheduler.LRScheduler]:
    """An optimizer over ``params`` (:func:`build_optimizer`) and its epoch-wise scheduler
    (``schedule`` with ``schedule_options``, for a run of ``epochs``). The trainer's algorithms
    build theirs with :class:`~pyro_vae.inference.stepping.Stepping`, which also steps per step,
    on the metrics (``plateau``), clips and scales the gradient as the config says."""
    optimizer = build_optimizer(params, name, lr, weight_decay, options=options)
    return optimizer, make_schedule(optimizer, schedule, epochs, schedule_options)


def optimizer_settings(config: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`make_optimizer` (after ``params``) that a
    :class:`~pyro_vae.training.config.TrainConfig` sets."""
    return dict(
        name=config.optimizer,
        lr=config.lr,
        weight_decay=config.weight_decay,
        schedule=config.lr_schedule,
        epochs=config.epochs,
        options=config.optimizer_options,
        schedule_options=config.schedule_options,
    )


def configured_optimizer(params: Iterable[torch.Tensor], config: Any) -> torch.optim.Optimizer:
    """The optimizer a :class:`~pyro_vae.training.config.TrainConfig` names, over ``params``."""
    return build_optimizer(params, config.optimizer, config.lr, config.weight_decay, options=config.optimizer_options)


#: The most schedule steps :func:`check_optimizer_settings` takes (~25 us each); beyond, the rules
#: of the options (:data:`OPTION_RULES`) keep the built-in schedules' rates finite and > 0.
CHECKED_EPOCHS = 10_000


def check_optimizer_settings(config: Any) -> None:
    """Build the optimizer and schedule ``config`` names over one scalar parameter, so that an
    unknown option or a value torch refuses fails when the config is made, not at the first step;
    then step the schedule once per epoch through the run's epochs (at most :data:`CHECKED_EPOCHS`;
    a per-step schedule as if each epoch were one step): the learning rate of every epoch must be
    finite and > 0. A plateau schedule is not stepped: it only multiplies the rate by its factor
    in (0, 1), down to ``min_lr >= 0``, and its ``eps`` stops it above 0."""
    optimizer = configured_optimizer([torch.zeros(1, requires_grad=True)], config)
    scheduler = make_schedule(optimizer, config.lr_schedule, config.epochs, config.schedule_options)
    if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
        return
    for epoch in range(1, min(config.epochs, CHECKED_EPOCHS) + 1):
        lr = optimizer.param_groups[0]["lr"]
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(
                f"schedule {config.lr_schedule!r} with options {config.schedule_options} makes the learning rate "
                f"{lr:.3g} at {config.schedule_interval} {epoch} (--lr {config.lr}); it must stay finite and > 0 "
                "over the run"
            )
        optimizer.step()  # no gradient: nothing moves; torch wants a step before the schedule's
        scheduler.step()


def changed_options(config: Any) -> list[str]:
    """The optimizer and schedule options of ``config`` that differ from their defaults, as the
    flags that set them (``--optimizer-option momentum=0.99``): beside the learning rate, the
    suspects of a divergence."""
    cls, schedule = OPTIMIZERS[config.optimizer], LR_SCHEDULES[config.lr_schedule]
    defaults = {
        "optimizer": {key: p.default for key, p in inspect.signature(cls).parameters.items()},
        "schedule": {"warmup": 0, **{key: p.default for key, p in inspect.signature(schedule).parameters.items()}},
    }
    given = {"optimizer": config.optimizer_options, "schedule": config.schedule_options}
    return [
        f"--{kind}-option {key}={value!r}"
        for kind in given
        for key, value in given[kind].items()
        if defaults[kind].get(key, inspect.Parameter.empty) != value
    ]


def fused_option(cls: type[torch.optim.Optimizer], params: list[torch.Tensor]) -> dict:
    """``{"fused": True}`` where ``cls`` takes it and torch has a fused kernel for every one of
    ``params`` (floating point, on the CPU or a CUDA device), else ``{}``: one kernel for all the
    parameters instead of a Python loop of element-wise ops over each. The update is the same
    up to float rounding; for the IWAE architecture on one CPU thread an Adam step takes
    0.38 ms instead of 0.91 ms, an Adagrad step 0.28 ms instead of 0.56 ms."""
    takes_fused = "fused" in inspect.signature(cls).parameters
    supported = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return {"fused": True} if takes_fused and supported and params else {}
