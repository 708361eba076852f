"""Learning-rate schedules: by a registered name or by the class name of a torch schedule.

A schedule is a factory ``(optimizer, length, **options) -> LRScheduler``: a registered name
(``constant``, ``iwae``, ``cosine``, ``step``, ``exponential``, ``plateau``) or any class of
:mod:`torch.optim.lr_scheduler` by its class name (``OneCycleLR``, ``CosineAnnealingWarmRestarts``,
...; :mod:`pyro_vae.inference.torch_classes`). ``length`` is how many times the run steps it:
once per epoch, or once per optimizer step with ``schedule_interval="step"``
(:mod:`pyro_vae.inference.stepping` steps it and saves its state with the optimizer's, so a
resumed run keeps its place). An argument that says how long the run is (``T_max``,
``total_steps``: :data:`RUN_LENGTH`) is that length unless given; any other argument torch
requires must be given (``--schedule-option max_lr=0.01``), else one line names it. The option
``warmup=W`` (any schedule but ``plateau``) puts a linear warm-up in front: the factor rises
linearly from ``1 / (W + 1)`` to 1 over the first ``W`` schedule steps, then the schedule runs
over the remaining ``length - W`` (:class:`torch.optim.lr_scheduler.SequentialLR`).

``plateau`` (also by its class name ``ReduceLROnPlateau``) is torch's ReduceLROnPlateau in mode
``"min"`` on the *negative* ELBO per datum of each metrics row: the validation bound where the
run has one, else the test ELBO (:meth:`~pyro_vae.inference.stepping.Stepping.observe`). After
``patience`` rows without an improvement, the learning rate is multiplied by ``factor``. Mode
"min" on the negative ELBO, not "max" on the ELBO, because torch's default relative threshold
compares with ``best * (1 - threshold)`` (``best * (1 + threshold)`` in mode "max"), which asks
for an improvement only of a positive value; the negative ELBO of discrete data is positive (for
continuous data whose ELBO may be above 0, give ``threshold_mode='abs'``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch.optim import lr_scheduler

from pyro_vae.inference.option_rules import check_option_types, check_options, options_error
from pyro_vae.inference.torch_classes import TorchClassRegistry, public_subclasses

Schedule = Callable[..., lr_scheduler.LRScheduler]


def torch_schedule(cls: type[lr_scheduler.LRScheduler]) -> Schedule:
    """The factory of a schedule class of torch: ``(optimizer, length, **options) -> cls(optimizer,
    **options)``, whose signature lists the class's own arguments (``last_epoch`` left out: the
    trainer keeps the schedule's place), so that unknown, missing and run-length arguments are found
    as for a registered factory."""

    def factory(optimizer: torch.optim.Optimizer, length: int, /, **options: Any) -> lr_scheduler.LRScheduler:
        return cls(optimizer, **options)

    own = [p.replace(kind=p.KEYWORD_ONLY) for p in list(inspect.signature(cls).parameters.values())[1:]]
    signature = inspect.Signature(
        [
            inspect.Parameter("optimizer", inspect.Parameter.POSITIONAL_ONLY),
            inspect.Parameter("length", inspect.Parameter.POSITIONAL_ONLY),
            *(p for p in own if p.name != "last_epoch"),
        ]
    )
    # attributes of the function object, which mypy does not model: what inspect.signature reads, and
    # the class whose annotations type the options (option_rules.check_option_types)
    setattr(factory, "__signature__", signature)
    factory.__doc__ = f"{cls.__module__}.{cls.__name__}"
    setattr(factory, "torch_class", cls)
    return factory


#: The learning-rate schedules by name (``--lr-schedule``): factories ``(optimizer, length, **options)
#: -> LRScheduler`` built by :func:`make_schedule`; beyond the registered names, every class of
#: :mod:`torch.optim.lr_scheduler` by its class name (``ReduceLROnPlateau`` is ``plateau``).
LR_SCHEDULES: TorchClassRegistry[Schedule] = TorchClassRegistry(
    "learning-rate schedule",
    "torch.optim.lr_scheduler",
    public_subclasses(lr_scheduler, lr_scheduler.LRScheduler),
    adapt=torch_schedule,
    unusable={
        "LambdaLR": "it takes a Python function; register a schedule instead (register_schedule)",
        "MultiplicativeLR": "it takes a Python function; register a schedule instead (register_schedule)",
        "SequentialLR": "it chains other schedules; use warmup=W, or register a schedule",
        "ChainedScheduler": "it chains other schedules; use warmup=W, or register a schedule",
    },
    stand_ins={"ReduceLROnPlateau": "plateau"},
)
register_schedule = LR_SCHEDULES.register

#: The arguments of a schedule that say how long the run is, each the run's length (its epochs, or
#: its optimizer steps) unless given, or unless one of the arguments listed with it is given
#: (OneCycleLR's ``epochs`` and ``steps_per_epoch`` instead of ``total_steps``).
RUN_LENGTH: dict[str, tuple[str, ...]] = {"T_max": (), "total_steps": ("epochs", "steps_per_epoch")}

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


setattr(cosine, "spans_the_run", True)  # its shape depends on the run's length (an attribute mypy does not model)


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


@register_schedule("plateau")
def plateau(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: Literal["rel", "abs"] = "rel",
    cooldown: int = 0,
    min_lr: float = 0.0,
    eps: float = 1e-8,
) -> lr_scheduler.ReduceLROnPlateau:
    """lr x factor (default 0.1) after patience metrics rows (default 10) without a better bound (validation, else test)"""
    return lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="min",  # on the negative ELBO (see the module docstring)
        factor=factor,
        patience=patience,
        threshold=threshold,
        threshold_mode=threshold_mode,
        cooldown=cooldown,
        min_lr=min_lr,
        eps=eps,
    )


def _schedule_parameters(factory: Schedule) -> dict[str, inspect.Parameter]:
    """The options a schedule factory takes: its arguments after ``(optimizer, length)``."""
    return dict(list(inspect.signature(factory).parameters.items())[2:])


def run_length_options(factory: Schedule, options: dict[str, Any]) -> list[str]:
    """The arguments of :data:`RUN_LENGTH` that ``factory`` takes and ``options`` leave to the run."""
    taken = _schedule_parameters(factory)
    return [
        key
        for key, instead in RUN_LENGTH.items()
        if key in taken and key not in options and not set(instead) & set(options)
    ]


def make_schedule(
    optimizer: torch.optim.Optimizer, name: str, length: int, options: dict[str, Any] | None = None
) -> lr_scheduler.LRScheduler:
    """The schedule ``name`` over ``optimizer`` for a run that steps it ``length`` times, with its
    ``options`` (and ``warmup=W``: a linear warm-up over the first W steps in front); a
    :data:`RUN_LENGTH` argument not given is the length after the warm-up."""
    options = dict(options or {})
    check_options("schedule", name, options)
    warmup = options.pop("warmup", 0)
    factory = LR_SCHEDULES[name]
    taken = _schedule_parameters(factory)
    unknown = set(options) - set(taken)
    if unknown:
        raise options_error("schedule", name, factory, unknown, skip=2)
    check_option_types("schedule", name, getattr(factory, "torch_class", factory), options)
    span = max(length - warmup, 1)
    filled = {key: span for key in run_length_options(factory, options)}
    missing = [key for key, p in taken.items() if p.default is p.empty and key not in {**options, **filled}]
    if missing:
        raise ValueError(
            f"schedule {name!r} needs the option(s) {missing}, which the run does not give: "
            f"--schedule-option {missing[0]}=VALUE"
        )
    try:
        main = factory(optimizer, span, **filled, **options)
    except (TypeError, ValueError, RuntimeError, IndexError, ZeroDivisionError, OverflowError) as err:
        raise ValueError(f"schedule {name!r} with options {options}: {err}") from None
    if isinstance(main, lr_scheduler.ReduceLROnPlateau):
        if warmup:
            raise ValueError(f"schedule {name!r} takes no warmup: it steps on the metrics rows' bound, not on time")
        if main.mode != "min":
            raise ValueError(
                f"schedule {name!r} is a ReduceLROnPlateau in mode {main.mode!r}; the trainer feeds it the "
                "negative ELBO, which falls as the model improves: build it with mode='min'"
            )
    if not warmup:
        return main
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def schedule_spans_the_run(config: Any) -> bool:
    """Whether the schedule of ``config`` depends on its number of epochs (``cosine``, a torch class
    whose ``T_max`` or ``total_steps`` is the run's length), so that a run resumed to more epochs
    would change its learning rates."""
    factory = LR_SCHEDULES[config.lr_schedule]
    return getattr(factory, "spans_the_run", False) or bool(run_length_options(factory, config.schedule_options))
