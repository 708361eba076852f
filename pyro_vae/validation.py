"""Checks of user input, made up front so that every bad value is one clear error naming it.

Torch, when handed a negative layer size or an infinite learning rate, fails
late and deep (a size error in ``nn.Linear``, a dump of Pyro's parameters, a
traceback after all training). The functions here refuse such values before
anything runs:

* :func:`check_sizes` and :func:`check_train_config` for the library
  (:class:`~pyro_vae.models.vae.VAE`, ``TrainConfig``);
* :func:`check_model_fits`: a model too big for the machine's memory;
* :func:`check_fields`, :func:`check_arguments`: values against their annotations
  (ints are ints, counts >= 1), for dataclasses and public functions;
* :func:`check_fits` and its uses: sizes whose memory the machine does not have.

The command line checks its own flags while parsing them (each declares its
bound, :mod:`pyro_vae.cli.args`), and ``--device`` there too.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections import abc
from collections.abc import Callable, Sequence
from typing import Any

import torch


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_sizes(x_shape: Sequence[int], z_dim: int, hidden: Sequence[int]) -> None:
    """Raise ``ValueError`` unless every data dimension, ``z_dim`` and hidden size is an integer >= 1."""
    if not all(_is_int(d) and d >= 1 for d in x_shape) or len(x_shape) == 0:
        raise ValueError(f"x_shape must be positive integers, got {tuple(x_shape)}")
    if not _is_int(z_dim) or z_dim < 1:
        raise ValueError(f"z_dim must be an integer >= 1, got {z_dim!r}")
    if not all(_is_int(h) and h >= 1 for h in hidden):
        raise ValueError(f"hidden layer sizes must be integers >= 1, got {tuple(hidden)}")


MAX_INIT_STD = 1.0


def check_init_std(init_std: float | None) -> None:
    """``None`` (PyTorch's initialisation) or a finite standard deviation > 0."""
    if init_std is not None and not (math.isfinite(init_std) and init_std > 0):
        raise ValueError(f"init_std must be a finite number > 0 (or None), got {init_std}")
    if init_std is not None and init_std > MAX_INIT_STD:
        raise ValueError(
            f"init_std={init_std} is above {MAX_INIT_STD}: weights that large saturate every unit and overflow "
            "the encoder's scale exp(log sigma^2 / 2) at the first step (the paper: 0.01)"
        )


def check_step_size(lr: float, weight_decay: float = 0.0) -> None:
    """A learning rate lr, finite and > 0, and a weight decay, finite and >= 0."""
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")


def check_train_config(config: Any) -> None:
    """The checks of a ``TrainConfig`` beyond names and counts (which it makes itself)."""
    check_sizes((1,), config.z_dim, config.hidden)
    check_init_std(config.init_std)
    check_seed(config.seed)
    if config.num_labels is not None and config.num_labels < 1:
        raise ValueError(f"num_labels must be >= 1, got {config.num_labels}")
    check_step_size(config.lr, config.weight_decay)
    if config.num_train is not None and config.num_train < 1:
        raise ValueError(f"num_train must be >= 1, got {config.num_train}")


def mlp_weight_count(sizes: Sequence[int]) -> int:
    """Weights and biases of an MLP with layer sizes ``sizes`` (input, hidden..., output)."""
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def parameter_count(x_dim: int, z_dim: int, hidden: Sequence[int]) -> int:
    """Weights and biases of the encoder ``x-hidden-2z`` and decoder ``z-reversed(hidden)-x``."""
    return mlp_weight_count([x_dim, *hidden, 2 * z_dim]) + mlp_weight_count([z_dim, *reversed(hidden), x_dim])


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


def check_model_fits(config: Any, x_shape: Sequence[int], device: str | torch.device = "cpu") -> None:
    """Refuse a model whose training state cannot fit in ``device``'s memory.

    Counts four float tensors per weight (the weight, its gradient and two
    optimizer moments) plus the hidden activations of one minibatch: a lower
    bound, so a model refused here could never have trained.
    """
    check_metrics_fit(config.epochs, device)
    memory = device_memory(device)
    if memory is None:
        return
    x_dim = math.prod(x_shape)
    hidden = tuple(config.hidden)
    size = torch.tensor([], dtype=torch.get_default_dtype()).element_size()
    params = parameter_count(x_dim, config.z_dim, hidden)
    rows = config.batch_size * config.num_particles
    activations = rows * (2 * sum(hidden) + 2 * x_dim + 3 * config.z_dim)
    need = size * (4 * params + activations)
    if need > memory:
        sizes = "-".join(map(str, (x_dim, *hidden, config.z_dim)))
        raise ValueError(
            f"the model {sizes} (--hidden {' '.join(map(str, hidden))} --z-dim {config.z_dim}, "
            f"{params:,} weights, batch {config.batch_size}) needs at least {need / 2**30:,.1f} GiB to train, "
            f"more than the {memory / 2**30:,.1f} GiB of memory of {device}; choose smaller sizes"
        )


# --- types at the API boundary: one checker for annotated values ----------------------
_COUNT = re.compile(r"^num_|_size$|_dim$|_samples$")  # int parameters named so are counts >= 1


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
        return _is_int(value)
    if annotation is float:
        return (_is_int(value) or isinstance(value, float)) and not isinstance(value, bool)
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
    """Raise :class:`ArgumentTypeError` naming ``name`` unless ``value`` has the annotated type,
    and ``ValueError`` unless an int named like a count (``num_*``, ``*_size``, ``*_dim``,
    ``*_samples``) is >= 1. Other ranges are the caller's to check."""
    if not _matches(value, annotation):
        raise ArgumentTypeError(f"{name} must be {_describe(annotation)}, got {value!r:.80} ({type(value).__name__})")
    if _is_int(value) and _COUNT.search(name) and value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def check_fields(obj: Any) -> None:
    """:func:`check_value` for every field of the dataclass instance ``obj``, against its annotation."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        check_value(f.name, getattr(obj, f.name), hints[f.name])


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


def check_seed(seed: int) -> None:
    """A seed torch takes, with room for the per-process streams ``seed + rank * 2**32``."""
    if not -(2**62) <= seed < 2**62:
        raise ValueError(f"seed must lie in [-2**62, 2**62), got {seed}")


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
