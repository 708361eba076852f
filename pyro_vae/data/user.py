"""A user's own data as a :class:`~pyro_vae.data.Dataset`: the one place where tensors, numpy
arrays, dicts of them, torch data sets and ``DataLoader`` s are converted (:func:`as_dataset`),
and the fingerprint a checkpoint records of them (:func:`data_fingerprint`).

What :func:`as_dataset` accepts:

* a tensor or numpy array ``(N, *x_shape)``: the data, unlabelled;
* a dict with the keys of :class:`~pyro_vae.data.Dataset`: ``train`` (required), ``test``,
  ``train_labels``, ``test_labels``, and a held-out ``validation`` set (with its
  ``validation_labels``) the metrics rows then evaluate (``val_elbo``; instead of
  ``validation_fraction``); ``x`` is read as ``train``, ``y`` and ``labels`` as
  ``train_labels`` (the names of an ``.npz`` file, :mod:`pyro_vae.data.reading`);
* a ``torch.utils.data.Dataset`` whose items are tensors, or ``(x, y)`` pairs with integer
  labels (a ``TensorDataset`` of one or two tensors is one), or a ``DataLoader`` (its data set);
* a :class:`~pyro_vae.data.Dataset`, taken as it is.

Values are floats in [0, 1]; 8-bit (``uint8``) data are divided by 255, booleans made 0/1.
Each datum is flattened: ``x_shape`` is ``(D,)`` and ``image_shape`` the datum's own
``(C, H, W)`` (``(H, W)`` is one channel; a flat ``(D,)`` is a square of one channel where D
is a square number, else ``(1, 1, D)``), as the bundled image sets are. Without a test set,
``test_fraction`` of the data (default a tenth), drawn with ``seed``, is held out as one.

:data:`USER_DATASET` (``"user"``) is the name in :data:`~pyro_vae.data.DATASETS` that a config
of such data carries (``TrainConfig(dataset="user")``); loading it by name is refused, since
the data live with the caller.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from pyro_vae.data.dataset import Dataset
from pyro_vae.data.sources import DATASETS

#: The data set name of a run on a user's own data (``train(..., data=...)``, ``pyro-vae train --data FILE``).
USER_DATASET = "user"
#: The held-out part of a user's data that becomes the test set when none is given.
TEST_FRACTION = 0.1
#: The keys of a dict of data (and the arrays of an ``.npz`` file), other names read as them.
KEYS = ("train", "test", "train_labels", "test_labels", "validation", "validation_labels")
ALIASES = {"x": "train", "y": "train_labels", "labels": "train_labels"}


def as_dataset(
    data: Any,
    *,
    name: str = USER_DATASET,
    binarize: bool = False,
    test_fraction: float = TEST_FRACTION,
    seed: int = 0,
    likelihood: str = "bernoulli",
) -> Dataset:
    """``data`` (see the module docstring for the forms) as a :class:`Dataset` named ``name``,
    with its :func:`data_fingerprint`; ``binarize`` draws binary images from the grey levels
    (the training set afresh at each use, the test set once), ``likelihood`` is the decoder the
    data call for (``"bernoulli"``: cross-entropy on [0, 1]; ``"gaussian"``). A shape, dtype or
    range that does not fit is refused in one line naming it."""
    if isinstance(data, Dataset):
        return data if data.fingerprint else _with_fingerprint(data)
    parts = _parts(data)
    train = _values(parts["train"], "train")
    test = None if parts.get("test") is None else _values(parts["test"], "test")
    train_labels, test_labels, validation_labels = (
        _labels(parts.get(key), key) for key in ("train_labels", "test_labels", "validation_labels")
    )
    validation = None if parts.get("validation") is None else _values(parts["validation"], "validation")
    if validation is None and validation_labels is not None:
        raise ValueError("validation_labels were given without validation data; give validation too, or neither")
    if test is None:
        if test_labels is not None:
            raise ValueError("test_labels were given without test data; give test too, or neither")
        train, test, train_labels, test_labels = _split(train, train_labels, test_fraction, seed)
    image_shape = _image_shape(tuple(train.shape[1:]))
    return Dataset(
        name=name,
        train=train.flatten(1),
        test=test.flatten(1),
        train_labels=train_labels,
        test_labels=test_labels,
        image_shape=image_shape,
        likelihood=likelihood,
        binarize=binarize,
        validation=None if validation is None else validation.flatten(1),
        validation_labels=validation_labels,
        fingerprint=data_fingerprint(train.flatten(1), test.flatten(1), *([] if validation is None else [validation])),
    )


def data_fingerprint(train: torch.Tensor, test: torch.Tensor, *more: torch.Tensor) -> str:
    """The SHA-256 (hex) of the training and test tensors (and a given validation set's): each
    one's dtype, shape and bytes."""
    digest = hashlib.sha256()
    for x in (train, test, *more):
        digest.update(f"{x.dtype}{tuple(x.shape)}".encode())
        digest.update(x.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _with_fingerprint(data: Dataset) -> Dataset:
    grey = {split: pair[0] for split, pair in data.grey_sources.items()}  # the images given, before binarization
    return replace(data, fingerprint=data_fingerprint(data.train, grey.get("test", data.test)))


def _parts(data: Any) -> dict[str, Any]:
    """The parts of ``data``: a dict of :data:`KEYS` to arrays (``train`` always)."""
    if isinstance(data, DataLoader):
        data = data.dataset
    if isinstance(data, Mapping):
        parts: dict[str, Any] = {}
        for key, value in data.items():
            known = ALIASES.get(key, key)
            if known not in KEYS:
                raise ValueError(
                    f"unknown entry {key!r} in the data; expected {list(KEYS)} (or x, y, labels for train, "
                    "train_labels)"
                )
            if known in parts:
                raise ValueError(f"the data give {known} twice (as {key!r} and another name); give it once")
            parts[known] = value
        if "train" not in parts:
            raise ValueError(f"the data hold no training data: give an entry 'train' (or 'x'), got {sorted(data)}")
        return parts
    if isinstance(data, TorchDataset) and not torch.is_tensor(data):
        return _items(data)
    return {"train": data}


def _items(data: TorchDataset) -> dict[str, Any]:
    """The stacked items of a map-style torch data set: tensors, or ``(x, y)`` pairs."""
    try:
        items = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"a torch Dataset must have a length and items by index (a map-style data set), got "
            f"{type(data).__name__}; stack its data into a tensor"
        ) from None
    if not items:
        raise ValueError(f"the {type(data).__name__} holds no items; give some training data")
    first = items[0]
    if isinstance(first, (tuple, list)) and len(first) == 2:
        return {"train": torch.stack([_tensor(x, "train") for x, _ in items]), "train_labels": [y for _, y in items]}
    if isinstance(first, (tuple, list)) and len(first) == 1:
        items = [item[0] for item in items]
    return {"train": torch.stack([_tensor(x, "train") for x in items])}


def _tensor(value: Any, what: str) -> torch.Tensor:
    if torch.is_tensor(value):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise TypeError(
        f"{what} must be a tensor or numpy array of shape (N, *x_shape), got a value of type {type(value).__name__}"
    )


def _values(value: Any, what: str) -> torch.Tensor:
    """``value`` as float32 in [0, 1]: uint8 divided by 255, bool as 0/1, floats checked."""
    x = _tensor(value, what)
    if x.dim() < 2 or len(x) == 0:
        raise ValueError(f"{what} must have shape (N, *x_shape) with N >= 1, got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if x.dtype == torch.bool:
        return x.float()
    if not x.is_floating_point():
        raise TypeError(
            f"{what} has dtype {x.dtype}; give floats in [0, 1] or 8-bit (uint8) values, e.g. {what} / 255.0"
        )
    x = x.float()
    low, high = x.min().item(), x.max().item()
    if not (0.0 <= low and high <= 1.0):  # NaN fails too
        raise ValueError(f"{what} has values in [{low:.4g}, {high:.4g}]; they must lie in [0, 1] (scale them)")
    return x


def _labels(value: Any, what: str) -> torch.Tensor | None:
    """Integer labels ``(N,)`` (a list of ints or 0-d tensors is stacked); ``None`` stays."""
    if value is None:
        return None
    if isinstance(value, list):
        value = torch.as_tensor([int(y) for y in value])
    y = _tensor(value, what)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or y.dim() != 1:
        raise ValueError(f"{what} must be integers of shape (N,), one class per datum, got {y.dtype} {tuple(y.shape)}")
    return y.long()


def _split(
    x: torch.Tensor, labels: torch.Tensor | None, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``round(fraction * N)`` data drawn with ``seed`` held out as the test set (the rest keep their order)."""
    count = round(fraction * len(x))
    if not 0 < fraction < 1 or not 1 <= count < len(x):
        raise ValueError(
            f"a test fraction of {fraction} of {len(x)} data leaves {count} for the test set and {len(x) - count} "
            "for training; both need at least one (give more data, another fraction, or a test set)"
        )
    held = torch.zeros(len(x), dtype=torch.bool)
    held[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:count]] = True
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"train_labels hold {len(labels)} labels for {len(x)} training data; give one per datum")
    return x[~held], x[held], None if labels is None else labels[~held], None if labels is None else labels[held]


def _image_shape(x_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(C, H, W)`` of one datum of shape ``x_shape`` (see the module docstring)."""
    if len(x_shape) == 3:
        return x_shape
    if len(x_shape) == 2:
        return (1, *x_shape)
    side = math.isqrt(math.prod(x_shape))
    return (1, side, side) if side * side == math.prod(x_shape) else (1, 1, math.prod(x_shape))


def _refuse_by_name(root: Path | None) -> Dataset:
    """a user's own data: train(config, run_dir, data=...) or pyro-vae train --data FILE"""
    raise ValueError(
        f"the data set {USER_DATASET!r} is a user's own data, which cannot be loaded by name: pass it to "
        "train(config, run_dir, data=...) or load_run(run_dir, data=...) (pyro-vae train --data FILE)"
    )


DATASETS.register(USER_DATASET, _refuse_by_name)
