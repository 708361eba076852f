"""Checks of user input, made up front so that every bad value is one clear error naming it.

Torch, when handed a negative layer size or an infinite learning rate, fails
late and deep (a size error in ``nn.Linear``, a dump of Pyro's parameters, a
traceback after all training). The functions here refuse such values before
anything runs:

* :func:`check_sizes` and :func:`check_train_config` for the library
  (:class:`~pyro_vae.models.vae.VAE`, ``TrainConfig``);
* :func:`check_model_fits`: a model too big for the machine's memory.

The command line checks its own flags while parsing them (each declares its
bound, :mod:`pyro_vae.cli.args`), and ``--device`` there too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
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


def check_init_std(init_std: float | None) -> None:
    """``None`` (PyTorch's initialisation) or a finite standard deviation > 0."""
    if init_std is not None and not (math.isfinite(init_std) and init_std > 0):
        raise ValueError(f"init_std must be a finite number > 0 (or None), got {init_std}")


def check_train_config(config: Any) -> None:
    """The checks of a ``TrainConfig`` beyond names and counts (which it makes itself)."""
    check_sizes((1,), config.z_dim, config.hidden)
    check_init_std(config.init_std)
    if not math.isfinite(config.lr):
        raise ValueError(f"lr must be a finite number > 0, got {config.lr}")
    if not math.isfinite(config.weight_decay):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {config.weight_decay}")
    if config.num_train is not None and config.num_train < 1:
        raise ValueError(f"num_train must be >= 1, got {config.num_train}")


def parameter_count(x_dim: int, z_dim: int, hidden: Sequence[int]) -> int:
    """Weights and biases of the encoder ``x-hidden-2z`` and decoder ``z-reversed(hidden)-x``."""
    def mlp(sizes: list[int]) -> int:
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))

    return mlp([x_dim, *hidden, 2 * z_dim]) + mlp([z_dim, *reversed(hidden), x_dim])


def device_memory(device: str | torch.device) -> int | None:
    """Bytes of memory on ``device`` (the machine's RAM for the CPU), ``None`` if unknown."""
    device = torch.device(device)
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
