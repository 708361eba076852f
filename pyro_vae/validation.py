"""Checks of user input, made up front so that every bad value is one clear error naming it.

Torch, when handed a negative layer size or an infinite learning rate, fails
late and deep (a size error in ``nn.Linear``, a dump of Pyro's parameters, a
traceback after all training). The functions here refuse such values before
anything runs, and know nothing of the models or configs they serve:

* :class:`Rule`: a range a value must lie in (:data:`COUNT`, :data:`POSITIVE`, :func:`at_least`,
  :func:`one_of`, ...), declared with a dataclass field (:func:`rules`) or checked by name
  (``COUNT.check(chunk_size=chunk_size)``);
* :func:`check_fields`, :func:`check_arguments`: values against their annotations (ints are
  ints), and a dataclass's fields against their declared rules, for dataclasses and public
  functions;
* :func:`check_fits` and its uses: sizes whose memory the machine does not have.

The command line checks its own flags while parsing them (each declares its
bound, :mod:`pyro_vae.cli.args`), and ``--device`` there too.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections import abc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


def is_int(value: Any) -> bool:
    """Whether ``value`` is an int, and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


# --- ranges: a rule per value, declared once -------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """A range a value must lie in beyond its type: ``accepts(value)``, and the same in words,
    ``means``, which follows "NAME must" in the error (``"be >= 1"``, ``"lie in [0, 1)"``).
    ``accepts`` is given values of the annotated type only (:func:`check_fields` checks the
    type first), never ``None``."""

    means: str
    accepts: Callable[[Any], bool]

    def check(self, **values: Any) -> None:
        """Raise ``ValueError`` "NAME must MEANS, got VALUE" for the first of ``values`` (by name)
        that this rule refuses."""
        for name, value in values.items():
            if not self.accepts(value):
                raise ValueError(f"{name} must {self.means}, got {value!r}")


def at_least(low: int) -> Rule:
    """A number >= ``low`` (an int's range: ``at_least(0)``, or :data:`COUNT`)."""
    return Rule(f"be >= {low}", lambda value: value >= low)


def finite(words: str, accepts: Callable[[float], bool]) -> Rule:
    """A finite number for which ``accepts`` holds; ``words`` say where it lies (``"> 0"``)."""
    return Rule(f"be a finite number {words}", lambda value: math.isfinite(value) and accepts(value))


def one_of(choices: Iterable[Any]) -> Rule:
    """One of ``choices``."""
    choices = tuple(choices)
    return Rule(f"be one of {list(choices)}", lambda value: value in choices)


def each(rule: Rule) -> Rule:
    """A sequence whose every value passes ``rule`` (``z_dims must each be >= 1``)."""
    return Rule(f"each {rule.means}", lambda values: all(rule.accepts(value) for value in values))


#: An int >= 1: a size, a count of samples, epochs, ...
COUNT = at_least(1)
#: A finite number > 0 (a learning rate, ...).
POSITIVE = finite("> 0", lambda value: value > 0)
#: A finite number >= 0 (a weight decay, ...).
NON_NEGATIVE = finite(">= 0", lambda value: value >= 0)

#: The key of a dataclass field's metadata under which :func:`rules` stores its rules.
RULES_KEY = "pyro_vae.rules"


def rules(*declared: Rule) -> dict[str, tuple[Rule, ...]]:
    """The metadata of a dataclass field whose values (``None`` aside) must pass each of
    ``declared``, in order: ``z_dim: int = field(default=20, metadata=rules(COUNT))``."""
    return {RULES_KEY: declared}


def declared_rules(cls: type) -> dict[str, tuple[Rule, ...]]:
    """The rules declared with each field of the dataclass ``cls`` (:func:`rules`), by field name;
    ``()`` for a field that declares none."""
    return {f.name: f.metadata.get(RULES_KEY, ()) for f in dataclasses.fields(cls)}


def check_rules(declared: Sequence[Rule], **values: Any) -> None:
    """Each of ``values`` (by name) that is not ``None`` against each rule of ``declared``, in order."""
    for name, value in values.items():
        if value is not None:
            for rule in declared:
                rule.check(**{name: value})


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` this machine has, else one ``ValueError`` naming it
    and the devices expected (torch's own error lists twenty device types)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device: expected cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    return parsed


def device_memory(device: str | torch.device) -> int | None:
    """Bytes of memory on ``device`` (the machine's RAM for the CPU), ``None`` if unknown."""
    device = check_device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "cpu":
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


# --- types at the API boundary: one checker for annotated values ----------------------


def _describe(annotation: Any) -> str:
    """``annotation`` in words: ``an int``, ``a number``, ``a sequence of int``, ``a str or None``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if annotation is type(None):
        return "None"
    if annotation is float:
        return "a number"
    if origin is not None and args and origin in (tuple, list, abc.Sequence):
        return f"a sequence of {getattr(args[0], '__name__', args[0])}"
    cls = origin or annotation
    name = getattr(cls, "__name__", str(cls))
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` is of the type ``annotation`` names (an int is a float, a bool is no number)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if annotation is int:
        return is_int(value)
    if annotation is float:
        return (is_int(value) or isinstance(value, float)) and not isinstance(value, bool)
    if origin in (tuple, list, abc.Sequence):
        if not isinstance(value, (tuple, list)):
            return False
        item = args[0] if args else Any
        return all(_matches(v, item) for v in value)
    if origin in (dict, abc.Mapping):
        return isinstance(value, abc.Mapping) and (not args or all(_matches(k, args[0]) for k in value))
    if origin is abc.Callable or annotation is abc.Callable:
        return callable(value)
    cls = origin or annotation
    return not isinstance(cls, type) or isinstance(value, cls)


class ArgumentTypeError(TypeError, ValueError):
    """A value of the wrong type for an argument (both a ``TypeError`` and, as every
    bad value before it, a ``ValueError``)."""


class InputError(ValueError):
    """Data a program was called with that it cannot take (a wrong shape, values out of range):
    a ``ValueError`` of one line. Pyro re-raises a ``ValueError`` that leaves a traced program
    as a new error of its type with the trace's shapes appended on further lines ("Trace Shapes:"
    and two more, which say nothing when the error comes before any site); this class drops them."""

    def __init__(self, message: object = "") -> None:
        super().__init__(str(message).split("\nTrace Shapes:", 1)[0].rstrip("\n"))


def check_value(name: str, value: Any, annotation: Any) -> None:
    """Raise :class:`ArgumentTypeError` naming ``name`` unless ``value`` has the annotated type.
    A range is a :class:`Rule`, declared apart."""
    if not _matches(value, annotation):
        raise ArgumentTypeError(f"{name} must be {_describe(annotation)}, got {value!r:.80} ({type(value).__name__})")


def check_fields(obj: Any) -> None:
    """Check every field of the dataclass instance ``obj``: its value against the field's
    annotation (:func:`check_value`), then, unless ``None``, against each rule declared with the
    field (:func:`rules`), so that the first bad field raises one error naming it."""
    hints = typing.get_type_hints(type(obj))
    for name, declared in declared_rules(type(obj)).items():
        value = getattr(obj, name)
        check_value(name, value, hints[name])
        check_rules(declared, **{name: value})


def check_arguments(fn: Callable, **values: Any) -> None:
    """:func:`check_value` for each keyword ``values`` of ``fn`` that ``fn`` annotates."""
    try:
        hints = typing.get_type_hints(fn)
    except NameError:  # an annotation naming what its module imports for type checkers only
        hints = {}
    for name, value in values.items():
        if name in hints:
            check_value(name, value, hints[name])


def check_distinct(name: str, values: Sequence[Any], why: str) -> None:
    """Refuse ``values`` (the choices given as ``name``) when one is given more than once;
    ``why`` says what each one makes (a row of a table, ...), for the message."""
    repeated = sorted({value for value in values if list(values).count(value) > 1}, key=str)
    if repeated:
        raise ValueError(f"{name} {repeated} are named more than once; {why}")


# --- memory: nonsense sizes refused with the estimate --------------------------------
# A metrics row (a dict of ~10 floats) in memory and in the checkpoint: a lower bound.
METRICS_ROW_BYTES = 1000


def _float_bytes() -> int:
    return torch.tensor([], dtype=torch.get_default_dtype()).element_size()


class MemoryRefusal(ValueError):
    """Sizes refused because what they ask for cannot fit in the device's memory (:func:`check_fits`)."""


def check_fits(need: int, what: str, device: str | torch.device = "cpu") -> None:
    """Raise :class:`MemoryRefusal` if ``need`` bytes exceed ``device``'s memory; ``what`` names
    what needs them (the sizes that ask for them), for the message."""
    memory = device_memory(device)
    if memory is not None and need > memory:
        raise MemoryRefusal(
            f"{what} needs at least {need / 2**30:,.1f} GiB, more than the {memory / 2**30:,.1f} GiB "
            f"of memory of {device}; choose smaller sizes"
        )


def check_parameters_fit(count: int, what: str, device: str | torch.device = "cpu") -> None:
    """Refuse a module of ``count`` weights that cannot even be allocated (before torch tries)."""
    check_fits(count * _float_bytes(), f"{what} ({count:,} weights)", device)


def check_pass_fits(num_data: int, num_samples: int, datum_numel: int, device: str | torch.device = "cpu") -> None:
    """Refuse an evaluation pass of ``num_data`` data x ``num_samples`` importance samples: each
    (datum, sample) pair holds at least the decoder's output and its log density, 2 x datum size floats."""
    need = 2 * num_data * num_samples * datum_numel * _float_bytes()
    check_fits(
        need,
        f"a pass of {num_data:,} data x {num_samples:,} samples (-k / --chunk-size) of {datum_numel:,} values each",
        device,
    )


def check_metrics_fit(epochs: int, device: str | torch.device = "cpu") -> None:
    """Refuse a run whose metrics rows (one per epoch, kept in memory) cannot fit."""
    check_fits(epochs * METRICS_ROW_BYTES, f"epochs={epochs:,} (one metrics row each)", device)
