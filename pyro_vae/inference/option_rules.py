"""What the options of torch optimizers and schedules must be, checked before any work.

Each option given (``--optimizer-option momentum=0.9``, ``--schedule-option T_max=50``) is checked
twice, each failure one line naming the option, its value and what it must be:

* against the type torch's constructor annotates for it (:func:`check_option_types`: ``T_max``
  an int, ``betas`` a pair of numbers), so that a value of the wrong kind never reaches torch's
  arithmetic;
* against its rule in :data:`OPTION_RULES`, by the option's name, for every optimizer and
  schedule that takes it (:func:`check_options`): what makes sense (``momentum`` in [0, 1), a
  decay's ``gamma`` in (0, 1]), and what the trainer keeps for itself (``maximize``, torch's
  kernel choices ``fused``, ``foreach``, ..., a schedule's ``last_epoch``).

Counts of schedule steps (``step_size``, ``T_max``, ``warmup``, ...) count epochs, or optimizer
steps with ``schedule_interval="step"``.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pyro_vae.registry import Registry
from pyro_vae.validation import ArgumentTypeError, check_value


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


_STEPS = "epochs, or optimizer steps with schedule_interval='step'"


def _count(low: int, what: str = _STEPS) -> OptionRule:
    """An int >= ``low`` (``what`` it counts)."""
    return OptionRule(f"an int >= {low} ({what})", lambda value: _is_int(value) and value >= low)


def _below_one(value: float) -> bool:
    return 0 <= value < 1


def _one_of(*choices: str) -> OptionRule:
    return OptionRule(" or ".join(map(repr, choices)), lambda value: value in choices)


_SWITCH = OptionRule("True or False", lambda value: isinstance(value, bool))
_THE_LIBRARYS = OptionRule(
    "left out (the library picks torch's kernel itself: the fused one where torch has it)", lambda value: False
)
_POSITIVE = _finite("> 0", lambda value: value > 0)
_NON_NEGATIVE = _finite(">= 0", lambda value: value >= 0)

#: The rule of each option of torch's optimizers and schedules, by the option's name; an option
#: without one (a user's optimizer's own) is left to its type (:func:`check_option_types`) and torch.
OPTION_RULES: Registry[OptionRule] = Registry("option rule")
for _name, _rule in {
    # optimizers
    "betas": OptionRule(
        "a pair (beta1, beta2) of numbers in [0, 1)",
        lambda value: (
            isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(b) and _below_one(b) for b in value)
        ),
    ),
    "eps": _finite("> 0 (it keeps a denominator or a decay off zero)", lambda value: value > 0),
    "momentum": _finite("in [0, 1)", _below_one),
    "dampening": _finite("in [0, 1]", lambda value: 0 <= value <= 1),
    "alpha": _finite("in [0, 1) (the smoothing of RMSprop's mean square)", _below_one),
    "lr_decay": _NON_NEGATIVE,
    "initial_accumulator_value": _NON_NEGATIVE,
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
    # schedules
    "step_size": _count(1),
    "gamma": _finite("in (0, 1] (a decay's factor)", lambda value: 0 < value <= 1),
    "eta_min": _finite(">= 0 (the cosine's floor)", lambda value: value >= 0),
    "warmup": _count(0),
    "T_max": _count(1),
    "T_0": _count(1),
    "T_mult": _count(1, "a factor"),
    "total_steps": _count(1),
    "total_iters": _count(1),
    "epochs": _count(1, "epochs"),
    "steps_per_epoch": _count(1, "optimizer steps"),
    "milestones": OptionRule(
        f"a list of increasing ints >= 1 ({_STEPS})",
        lambda value: (
            isinstance(value, (list, tuple))
            and all(_is_int(m) and m >= 1 for m in value)
            and list(value) == sorted(set(value))
        ),
    ),
    "max_lr": _POSITIVE,
    "base_lr": _POSITIVE,
    "div_factor": _POSITIVE,
    "final_div_factor": _POSITIVE,
    "pct_start": _finite("in (0, 1)", lambda value: 0 < value < 1),
    "start_factor": _finite("in (0, 1]", lambda value: 0 < value <= 1),
    "end_factor": _finite("in [0, 1]", lambda value: 0 <= value <= 1),
    "factor": _finite("in (0, 1) (the factor on the learning rate)", lambda value: 0 < value < 1),
    "power": _NON_NEGATIVE,
    "patience": _count(0, "metrics rows"),
    "cooldown": _count(0, "metrics rows"),
    "threshold": _NON_NEGATIVE,
    "threshold_mode": _one_of("rel", "abs"),
    "min_lr": _NON_NEGATIVE,
    "scale_fn": OptionRule("left out (a function cannot be saved with the run's config)", lambda value: False),
    "last_epoch": OptionRule("left out (the trainer keeps the schedule's place, and resumes it)", lambda value: False),
}.items():
    OPTION_RULES.register(_name.lower(), _rule, help=_rule.means)


def check_options(kind: str, name: str, options: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first of ``options`` (of the ``kind`` ``name``: ``"optimizer"``
    ``"adam"``) that breaks its rule in :data:`OPTION_RULES`."""
    for key, value in options.items():
        rule = OPTION_RULES[key.lower()] if isinstance(key, str) and key.lower() in OPTION_RULES else None
        if rule is not None and not rule.accepts(value):
            raise ValueError(f"{kind} {name!r} with options {dict(options)}: {key} must be {rule.means}, got {value!r}")


# Names that torch's annotations use but its modules import for type checkers only.
_ANNOTATION_NAMES = {"Callable": abc.Callable, "Iterable": abc.Iterable, "Sequence": abc.Sequence}


def _constructor(fn: Callable) -> Callable:
    """``fn``'s ``__init__`` where ``fn`` is a class (whose annotations type its options), else ``fn``."""
    if isinstance(fn, type):
        cls: type[object] = fn  # a class, not an instance of one (mypy reads isinstance(fn, type) as the latter)
        return cls.__init__
    return fn


def check_option_types(kind: str, name: str, fn: Callable, options: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first of ``options`` whose value is not of the type that
    ``fn`` (a torch class or a factory) annotates for it; options it does not annotate pass."""
    try:
        hints = typing.get_type_hints(_constructor(fn), localns=_ANNOTATION_NAMES)
    except NameError:  # an annotation naming what no namespace here holds: torch checks the value itself
        hints = {}
    for key, value in options.items():
        if key in hints:
            try:
                check_value(key, value, hints[key])
            except (ArgumentTypeError, ValueError) as err:
                raise ValueError(f"{kind} {name!r} with options {dict(options)}: {err}") from None


def options_error(kind: str, name: str, fn: Callable, options: set, skip: int) -> ValueError:
    """The error of ``options`` that ``fn`` (the ``kind`` ``name``) does not take, naming those it
    takes (its arguments after the first ``skip``, less those the trainer gives itself)."""
    accepted = [
        p for p in list(inspect.signature(fn).parameters)[skip:] if p not in ("params", "lr", "weight_decay", "kwargs")
    ]
    return ValueError(f"{kind} {name!r} does not take the option(s) {sorted(options)}; it takes {accepted}")
