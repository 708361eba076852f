"""The record of a pretrained entry (``NAME.json``, or ``pretrained.json`` in a folder made by
:func:`~pyro_vae.pretrained.save.save_pretrained`): its entries checked, its config, and the
data description a program is rebuilt from without a data set.

Every record holds the entries of :data:`RECORD_ENTRIES`: the run's ``config`` (a dict of
:class:`~pyro_vae.training.config.TrainConfig` fields), ``data`` (a
:class:`DataDescription`: one datum's shape, the number of classes, the data set's
likelihood and image shape), the learning curve ``metrics`` and the SHA-256 and size of the
weights file beside it. Each problem is one :class:`PretrainedError` naming the record.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyro
import torch

from pyro_vae.data import Dataset
from pyro_vae.models import MODELS, DataSpec
from pyro_vae.models.likelihoods import LIKELIHOODS
from pyro_vae.training.config import TrainConfig
from pyro_vae.training.kinds import run_kind

#: The folder of the shipped entries (``NAME.pt`` and ``NAME.json``): this package's.
FOLDER = Path(__file__).parent
#: The record's file name in a folder made by :func:`~pyro_vae.pretrained.save.save_pretrained`
#: (its weights are ``pretrained.pt`` beside it).
FOLDER_RECORD = "pretrained.json"


class PretrainedError(ValueError):
    """A pretrained entry is unknown, missing, damaged, too large or does not fit its config."""


@dataclass(frozen=True)
class DataDescription:
    """What a program needs to know of its data to be rebuilt without it: one datum's shape
    ``x_shape``, the number of classes of its labels ``num_classes`` (``None``: no labels), the
    decoder the data set calls for ``likelihood`` (a registered likelihood's name) and
    ``image_shape``, ``(channels, height, width)`` holding one datum, for pictures."""

    x_shape: tuple[int, ...]
    num_classes: int | None
    likelihood: str
    image_shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        sizes = {"x_shape": self.x_shape, "image_shape": self.image_shape}
        for key, shape in sizes.items():
            if not isinstance(shape, list | tuple) or not shape or not all(_is_count(n) and n > 0 for n in shape):
                raise ValueError(f"{key} must be a list of sizes >= 1, got {shape!r:.80}")
            object.__setattr__(self, key, tuple(shape))
        if len(self.image_shape) != 3 or math.prod(self.image_shape) != math.prod(self.x_shape):
            raise ValueError(
                f"image_shape must be (channels, height, width) holding one datum of x_shape {self.x_shape}, "
                f"got {self.image_shape}"
            )
        if self.num_classes is not None and not (_is_count(self.num_classes) and self.num_classes > 0):
            raise ValueError(f"num_classes must be an int >= 1 or null, got {self.num_classes!r:.80}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS.names()}, got {self.likelihood!r:.80}")

    @classmethod
    def of(cls, dataset: Dataset) -> DataDescription:
        """The description of ``dataset``."""
        return cls(dataset.x_shape, dataset.num_classes, dataset.likelihood, dataset.image_shape)

    @classmethod
    def from_dict(cls, entries: Mapping[str, Any]) -> DataDescription:
        """The description of a record's ``data`` entry; ``ValueError`` names what is wrong."""
        if not isinstance(entries, Mapping) or set(entries) != set(cls.__dataclass_fields__):
            raise ValueError(f"it must hold exactly {sorted(cls.__dataclass_fields__)}, got {entries!r:.80}")
        return cls(**entries)

    @property
    def spec(self) -> DataSpec:
        """What the model is built for (:class:`~pyro_vae.models.DataSpec`)."""
        return DataSpec(self.x_shape, self.num_classes)

    def to_dict(self) -> dict[str, Any]:
        """The record's ``data`` entry (shapes as lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: The entries every record holds: what each must be, as a test and in words for the message.
RECORD_ENTRIES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "config": (lambda v: isinstance(v, dict), "a dict of TrainConfig fields"),
    "data": (
        lambda v: isinstance(v, dict),
        "a dict describing the data (x_shape, num_classes, likelihood, image_shape)",
    ),
    "sha256": (
        lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None,
        "the SHA-256 of the weights file, 64 hex digits",
    ),
    "bytes": (_is_count, "the size of the weights file, an int >= 0"),
    "metrics": (
        lambda v: isinstance(v, list) and all(isinstance(row, dict) for row in v),
        "the learning curve, a list of metrics rows (dicts)",
    ),
}


def read_record(path: Path) -> dict[str, Any]:
    """The record ``path`` with its entries (:data:`RECORD_ENTRIES`) checked, or :class:`PretrainedError`."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PretrainedError(f"pretrained record {path} is unreadable: {err}") from None
    if not isinstance(record, dict):
        raise PretrainedError(f"pretrained record {path} must be a JSON object, got a {type(record).__name__}")
    missing = [k for k in RECORD_ENTRIES if k not in record]
    if missing:
        raise PretrainedError(
            f"pretrained record {path} lacks the entries {missing}; write it again with export_pretrained "
            "or save_pretrained"
        )
    for key, (valid, expected) in RECORD_ENTRIES.items():
        if not valid(record[key]):
            raise PretrainedError(
                f"pretrained record {path}: the entry {key} must be {expected}, got {record[key]!r:.80}"
            )
    return record


def record_config(path: Path, record: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` of the record ``path``, or :class:`PretrainedError` naming what is
    wrong: a model that is not registered here, an invalid field, a model of graphs."""
    model = record["config"].get("model", TrainConfig.model)
    if model not in MODELS:
        raise PretrainedError(
            f"pretrained record {path} holds a program of the model {model!r:.80}, which is not registered here; "
            f"import the module that registers it first (register_model). Registered: {MODELS.names()}"
        )
    try:
        config = TrainConfig.from_dict(record["config"])
    except (TypeError, ValueError) as err:  # each one line, naming the field
        raise PretrainedError(f"pretrained record {path}: its config is not valid: {err}") from None
    check_vector_model(config, path)
    return config


def check_vector_model(config: TrainConfig, where: object) -> None:
    """Refuse a model whose kind of run cannot be a pretrained entry (its ``refuses["pretrained"]``:
    a graph model is rebuilt with its graph)."""
    reason = run_kind(config).refuses.get("pretrained")
    if reason:
        raise PretrainedError(f"{where}: the model {config.model!r}: {reason}")


def record_data(path: Path, record: dict[str, Any]) -> DataDescription:
    """The :class:`DataDescription` of the record ``path``, or :class:`PretrainedError`."""
    try:
        return DataDescription.from_dict(record["data"])
    except (TypeError, ValueError) as err:
        raise PretrainedError(f"pretrained record {path}: its data entry is not valid: {err}") from None


def versions() -> dict[str, str]:
    """The versions of torch, Pyro and pyro_vae that wrote a record."""
    try:
        own = importlib.metadata.version("pyro-vae")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        own = "unknown"
    return {"torch": torch.__version__, "pyro": pyro.__version__, "pyro_vae": own}
