"""Optimizers and learning-rate schedules from torch, each registered by name.

An optimizer is a :class:`torch.optim.Optimizer` class, built over the program's
parameters (``module.parameters()``, Pyro's PyTorch-native pattern, so no
parameter lives in Pyro's global param store) with ``lr``, ``weight_decay`` and
any of its own keyword arguments (``optimizer_options``, e.g. ``momentum`` of
``sgd``, ``betas`` of ``adam``). Torch's fused kernel is used where it has one.

A schedule is a factory ``(optimizer, epochs, **options) -> LRScheduler`` over
torch's :mod:`torch.optim.lr_scheduler`; the trainer steps it once per epoch and
saves its state with the optimizer's, so a resumed run keeps its place. The
option ``warmup=W`` (any schedule) puts a linear warm-up in front: the factor
rises linearly from ``1 / (W + 1)`` to 1 over the first ``W`` epochs, then the
schedule runs over the remaining ``epochs - W`` (:class:`torch.optim.lr_scheduler.SequentialLR`).

Every option is checked before any work against its rule in :data:`OPTION_RULES` (what torch
accepts and what makes sense: ``momentum`` in [0, 1), ``betas`` a pair in [0, 1), a decay's
``gamma`` in (0, 1], ``maximize`` and the kernel choices ``fused``, ``foreach``, ... refused),
and :func:`check_optimizer_settings` steps the schedule through the run's epochs: the learning
rate must stay finite and > 0 all along.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import lr_scheduler

from pyro_vae.registry import Registry
from pyro_vae.validation import check_step_size

#: The optimizers by name (``--optimizer``): :class:`torch.optim.Optimizer` classes, built by
#: :func:`make_optimizer` over the program's parameters with ``lr``, ``weight_decay`` and their own options.
OPTIMIZERS: Registry[type[torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.register("adam", torch.optim.Adam, help="Adam (Kingma & Ba 2015)")
OPTIMIZERS.register("adamw", torch.optim.AdamW, help="Adam with decoupled weight decay (Loshchilov & Hutter 2019)")
OPTIMIZERS.register("adagrad", torch.optim.Adagrad, help="Adagrad (Duchi et al. 2011), the AEVB paper's choice")
OPTIMIZERS.register("sgd", torch.optim.SGD, help="stochastic gradient descent (options: momentum, nesterov)")
OPTIMIZERS.register("rmsprop", torch.optim.RMSprop, help="RMSprop (Tieleman & Hinton 2012)")

Schedule = Callable[..., lr_scheduler.LRScheduler]
#: The learning-rate schedules by name (``--lr-schedule``): factories ``(optimizer, epochs, **options)
#: -> LRScheduler`` multiplying the learning rate by a factor per epoch, built by :func:`make_schedule`.
LR_SCHEDULES: Registry[Schedule] = Registry("learning-rate schedule")
register_schedule = LR_SCHEDULES.register

IWAE_STAGES = 8  # Burda et al. (2016): stages i = 0..7 of 3**i epochs, 3,280 epochs in all


def constant_factor(finished_epochs: int) -> float:
    """1 throughout."""
    return 1.0


def iwae_factor(finished_epochs: int) -> float:
    """Burda et al. (2016): lr x 10^(-i/7) for 3^i epochs, i = 0..7.

    During stage i, which lasts ``3 ** i`` epochs, the factor is ``10 ** (-i / 7)``;
    after epoch 3,280 the last stage's factor 0.1 stays."""
    stage, stage_end = 0, 1
    while finished_epochs >= stage_end and stage < IWAE_STAGES - 1:
        stage += 1
        stage_end += 3**stage
    return 10 ** (-stage / 7)


@register_schedule("constant")
def constant(optimizer: torch.optim.Optimizer, epochs: int) -> lr_scheduler.LRScheduler:
    """the configured learning rate throughout"""
    return lr_scheduler.LambdaLR(optimizer, constant_factor)


@register_schedule("iwae")
def iwae(optimizer: torch.optim.Optimizer, epochs: int) -> lr_scheduler.LRScheduler:
    """Burda et al. (2016): lr x 10^(-i/7) for 3^i epochs, i = 0..7"""
    return lr_scheduler.LambdaLR(optimizer, iwae_factor)


@register_schedule("cosine")
def cosine(optimizer: torch.optim.Optimizer, epochs: int, eta_min: float = 0.0) -> lr_scheduler.LRScheduler:
    """cosine annealing from lr to eta_min (default 0) over the run's epochs (Loshchilov & Hutter 2017)"""
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1), eta_min=eta_min)


cosine.spans_the_run = True  # its shape depends on the run's length


@register_schedule("step")
def step(
    optimizer: torch.optim.Optimizer, epochs: int, step_size: int = 30, gamma: float = 0.1
) -> lr_scheduler.LRScheduler:
    """lr x gamma (default 0.1) every step_size epochs (default 30)"""
    return lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


@register_schedule("exponential")
def exponential(optimizer: torch.optim.Optimizer, epochs: int, gamma: float = 0.99) -> lr_scheduler.LRScheduler:
    """lr x gamma^epoch (default gamma 0.99)"""
    return lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


@dataclass(frozen=True)
class OptionRule:
    """What the value of an optimizer or schedule option must be: ``accepts(value)``, and
    ``means``, the same in words (for the error)."""

    means: str
    accepts: Callable[[Any], bool]


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(words: str, accept: Callable[[float], bool]) -> OptionRule:
    """A finite number for which ``accept`` holds (``words`` says where it lies)."""
    return OptionRule(f"a finite number {words}", lambda value: _is_number(value) and accept(value))


def _below_one(value: float) -> bool:
    return 0 <= value < 1


_SWITCH = OptionRule("True or False", lambda value: isinstance(value, bool))
_THE_LIBRARYS = OptionRule(
    "left out (the library picks torch's kernel itself: the fused one where torch has it)", lambda value: False
)

#: The rule of each option of the built-in optimizers and schedules, by the option's name; an
#: option without one (a user's optimizer's own) is left to torch.
OPTION_RULES: Registry[OptionRule] = Registry("option rule")
for _name, _rule in {
    "betas": OptionRule(
        "a pair (beta1, beta2) of numbers in [0, 1)",
        lambda value: (
            isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(b) and _below_one(b) for b in value)
        ),
    ),
    "eps": _finite("> 0 (it keeps the step's denominator off zero)", lambda value: value > 0),
    "momentum": _finite("in [0, 1)", _below_one),
    "dampening": _finite("in [0, 1]", lambda value: 0 <= value <= 1),
    "alpha": _finite("in [0, 1) (the smoothing of RMSprop's mean square)", _below_one),
    "lr_decay": _finite(">= 0", lambda value: value >= 0),
    "initial_accumulator_value": _finite(">= 0", lambda value: value >= 0),
    "amsgrad": _SWITCH,
    "nesterov": _SWITCH,
    "centered": _SWITCH,
    "decoupled_weight_decay": _SWITCH,
    "maximize": OptionRule(
        "False (the trainer minimizes the loss, the negative ELBO; True would train uphill)",
        lambda value: value is False,
    ),
    "fused": _THE_LIBRARYS,
    "foreach": _THE_LIBRARYS,
    "differentiable": _THE_LIBRARYS,
    "capturable": _THE_LIBRARYS,
    "step_size": OptionRule("an int >= 1 (epochs)", lambda value: _is_int(value) and value >= 1),
    "gamma": _finite("in (0, 1] (a decay's factor)", lambda value: 0 < value <= 1),
    "eta_min": _finite(">= 0 (the cosine's floor)", lambda value: value >= 0),
    "warmup": OptionRule("an int >= 0 (epochs)", lambda value: _is_int(value) and value >= 0),
}.items():
    OPTION_RULES.register(_name, _rule, help=_rule.means)


def check_options(kind: str, name: str, options: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first of ``options`` (of the ``kind`` ``name``: ``"optimizer"``
    ``"adam"``) that breaks its rule in :data:`OPTION_RULES`."""
    for key, value in options.items():
        if key in OPTION_RULES and not OPTION_RULES[key].accepts(value):
            raise ValueError(
                f"{kind} {name!r} with options {dict(options)}: {key} must be {OPTION_RULES[key].means}, got {value!r}"
            )


def _options_error(kind: str, name: str, fn: Callable, options: dict, skip: int) -> ValueError:
    accepted = [
        p for p in list(inspect.signature(fn).parameters)[skip:] if p not in ("params", "lr", "weight_decay", "kwargs")
    ]
    return ValueError(f"{kind} {name!r} does not take the option(s) {sorted(options)}; it takes {accepted}")


def make_schedule(
    optimizer: torch.optim.Optimizer, name: str, epochs: int, options: dict[str, Any] | None = None
) -> lr_scheduler.LRScheduler:
    """The registered schedule ``name`` over ``optimizer`` for a run of ``epochs`` epochs, with
    its ``options`` (and ``warmup=W``: a linear warm-up over the first W epochs in front)."""
    options = dict(options or {})
    check_options("schedule", name, options)
    warmup = options.pop("warmup", 0)
    factory = LR_SCHEDULES[name]
    unknown = set(options) - set(list(inspect.signature(factory).parameters)[2:])
    if unknown:
        raise _options_error("schedule", name, factory, unknown, skip=2)
    try:
        main = factory(optimizer, max(epochs - warmup, 1), **options)
    except (TypeError, ValueError, RuntimeError, IndexError) as err:
        raise ValueError(f"schedule {name!r} with options {options}: {err}") from None
    if not warmup:
        return main
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def schedule_spans_the_run(config: Any) -> bool:
    """Whether the schedule of ``config`` depends on its number of epochs (``cosine``), so that a
    run resumed to more epochs would change its learning rates."""
    return getattr(LR_SCHEDULES[config.lr_schedule], "spans_the_run", False)


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
    """A registered optimizer over ``params`` (with its own keyword ``options``) and its
    epoch-wise scheduler (``schedule`` with ``schedule_options``, for a run of ``epochs``)."""
    check_step_size(lr, weight_decay)
    params, cls, options = list(params), OPTIMIZERS[name], dict(options or {})
    taken = set(inspect.signature(cls).parameters) - {"params", "lr", "weight_decay"}
    if set(options) - taken:
        raise _options_error("optimizer", name, cls, set(options) - taken, skip=1)
    check_options("optimizer", name, options)
    try:
        optimizer = cls(params, lr=lr, weight_decay=weight_decay, **{**fused_option(cls, params), **options})
    except (TypeError, ValueError, RuntimeError, IndexError) as err:
        raise ValueError(f"optimizer {name!r} with options {options}: {err}") from None
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


#: The most epochs of a schedule :func:`check_optimizer_settings` steps through (~25 us each); beyond,
#: the rules of the options (:data:`OPTION_RULES`) keep the built-in schedules' rates finite and > 0.
CHECKED_EPOCHS = 10_000


def check_optimizer_settings(config: Any) -> None:
    """Build the optimizer and schedule ``config`` names over one scalar parameter, so that an
    unknown option or a value torch refuses fails when the config is made, not at the first step;
    then step the schedule once per epoch, as the trainer does, through the run's epochs (at most
    :data:`CHECKED_EPOCHS`): the learning rate of every epoch must be finite and > 0."""
    optimizer, scheduler = make_optimizer([torch.zeros(1, requires_grad=True)], **optimizer_settings(config))
    for epoch in range(1, min(config.epochs, CHECKED_EPOCHS) + 1):
        lr = optimizer.param_groups[0]["lr"]
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(
                f"schedule {config.lr_schedule!r} with options {config.schedule_options} makes the learning rate "
                f"{lr:.3g} at epoch {epoch} (--lr {config.lr}); it must stay finite and > 0 over the run's epochs"
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
