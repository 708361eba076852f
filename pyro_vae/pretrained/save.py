"""Writing pretrained entries: :func:`save_pretrained` (a user's program, into a folder of its
own) and :func:`export_pretrained` (a run folder's checkpoint, as ``NAME.pt`` and ``NAME.json``).

Each entry is a weights file (:mod:`~pyro_vae.pretrained.weights`: float32, at most
:data:`~pyro_vae.pretrained.weights.MAX_BYTES`) and its record
(:mod:`~pyro_vae.pretrained.record`): the config, the data description, the learning curve,
the versions that wrote it and the weights' SHA-256 and size. Both are written atomically,
the weights first, so that a record never vouches for weights that are not there.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from pyro.nn import PyroModule

from pyro_vae.data import Dataset, load_dataset
from pyro_vae.files import atomic_write_bytes, atomic_write_json
from pyro_vae.models import MODELS
from pyro_vae.pretrained.program import rebuild_program
from pyro_vae.pretrained.record import (
    FOLDER,
    FOLDER_RECORD,
    DataDescription,
    PretrainedError,
    check_vector_model,
    versions,
)
from pyro_vae.pretrained.weights import encode_weights, float32_state, sha256
from pyro_vae.training import Run
from pyro_vae.training.checkpoint import load_checkpoint
from pyro_vae.training.config import TrainConfig
from pyro_vae.training.folder import CHECKPOINT
from pyro_vae.training.report import read_report

#: What a pretrained entry's name may be: lower-case letters, digits, ``.``, ``_`` and ``-``.
NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def write_entry(record_path: Path, weights: bytes, record: dict[str, Any]) -> Path:
    """Write ``weights`` beside ``record_path`` (``.pt``) and ``record`` with their SHA-256 and
    size to ``record_path``; returns ``record_path``."""
    atomic_write_bytes(record_path.with_suffix(".pt"), weights)
    return atomic_write_json(record_path, {**record, "bytes": len(weights), "sha256": sha256(weights)})


def describe_data(config: TrainConfig, data: Dataset | DataDescription | None, data_dir: str | os.PathLike | None):
    """The :class:`DataDescription` of ``data``; ``None``: of the data set ``config.dataset``,
    loaded from ``data_dir`` (or ``$PYRO_VAE_DATA``) to describe it."""
    if isinstance(data, DataDescription):
        return data
    return DataDescription.of(data if data is not None else load_dataset(config.dataset, data_dir))


def registered_name(program: PyroModule) -> str:
    """The name under which the class of ``program`` is registered in ``MODELS``, or one
    :class:`PretrainedError` saying how to register it."""
    for name in MODELS:
        if MODELS[name] is type(program):
            return name
    raise PretrainedError(
        f"the program's class {type(program).__name__} is not registered, so load_pretrained could not rebuild "
        "it; register it (@register_model('NAME')) or pass config=TrainConfig(model='NAME', ...)"
    )


def save_pretrained(
    program: PyroModule | Run,
    folder: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    data: Dataset | DataDescription | None = None,
    description: str = "",
    data_dir: str | os.PathLike | None = None,
) -> Path:
    """Save ``program`` into ``folder`` so that :func:`~pyro_vae.pretrained.load_pretrained`
    rebuilds it without its data: ``pretrained.pt`` (its weights in float32) and
    ``pretrained.json`` (how it was made: ``config``, the ``data`` description, ``description``,
    the learning curve ``metrics``, the ``versions`` of torch, Pyro and pyro_vae, the weights'
    ``sha256`` and ``bytes``). Returns ``folder``.

    ``program`` is a registered model (a ``PyroModule``) or a :class:`~pyro_vae.training.Run`,
    whose program, config, data set and learning curve are the defaults of the others.
    ``config``: the config the program was built with (default: its registered class's name and
    :class:`~pyro_vae.training.config.TrainConfig`'s defaults); ``data``: a
    :class:`~pyro_vae.data.Dataset` or a :class:`DataDescription` (default: the config's data
    set, loaded from ``data_dir`` to describe it). Before anything is written the program is
    rebuilt from the config and data description and must take the weights (same class, keys
    and shapes): what would not load is refused here, in one line.

    >>> import tempfile
    >>> import torch
    >>> from pyro_vae import VAE, TrainConfig
    >>> from pyro_vae.pretrained import DataDescription, load_pretrained, save_pretrained
    >>> vae = VAE((64,), z_dim=2, hidden=(16,))  # the synthetic data set's 8 x 8 binary images
    >>> config = TrainConfig(dataset="synthetic", z_dim=2, hidden=(16,))
    >>> data = DataDescription(x_shape=(64,), num_classes=4, likelihood="bernoulli", image_shape=(1, 8, 8))
    >>> folder = save_pretrained(vae, tempfile.mkdtemp(), config, data=data)
    >>> sorted(p.name for p in folder.iterdir())
    ['pretrained.json', 'pretrained.pt']
    >>> loaded = load_pretrained(folder)
    >>> all(torch.equal(p, q) for p, q in zip(vae.state_dict().values(), loaded.state_dict().values()))
    True
    """
    metrics: list[dict] = []
    if isinstance(program, Run):
        config = program.config if config is None else config
        data = program.dataset if data is None else data
        program, metrics = program.program, program.metrics
    if config is None:
        config = TrainConfig(model=registered_name(program))
    check_vector_model(config, "save_pretrained")
    described = describe_data(config, data, data_dir)
    state = float32_state(program.state_dict())
    weights = encode_weights(state, f"the program {type(program).__name__}")
    try:  # the weights as load_pretrained will read them, into the program it will build
        rebuilt = rebuild_program(config, described, state, "the program")
    except PretrainedError as err:
        raise PretrainedError(
            f"save_pretrained: {err}; pass the config the program was built with (config=TrainConfig(...))"
        ) from None
    if type(rebuilt) is not type(program):
        raise PretrainedError(
            f"save_pretrained: config.model={config.model!r} builds a {type(rebuilt).__name__}, not the program's "
            f"{type(program).__name__}; pass the config the program was built with"
        )
    record = {
        "description": description,
        "config": dataclasses.asdict(config),
        "data": described.to_dict(),
        "metrics": metrics,
        "versions": versions(),
    }
    folder = Path(folder)
    write_entry(folder / FOLDER_RECORD, weights, record)
    return folder


def export_pretrained(
    run_dir: str | Path,
    name: str,
    command: str,
    description: str,
    folder: str | Path = FOLDER,
    checkpoint: str | Path | None = None,
    data_dir: str | Path | None = None,
) -> Path:
    """Make the entry ``name`` in ``folder`` (this package's by default) from the run in ``run_dir``: its checkpoint's model
    weights in float32 as ``NAME.pt`` and ``NAME.json`` recording the config, the data
    description (of the config's data set, loaded from ``data_dir``), ``command`` (the one that
    trained the run), ``description``, the learning curve, the evaluation reports of the
    checkpoint's epoch (``eval-epochEEEE-k*-n*.json``) and the versions that wrote it. Refused
    when the weights exceed :data:`~pyro_vae.pretrained.weights.MAX_BYTES`. ``checkpoint``: a
    checkpoint file of the run other than its last (``RUN/checkpoint.pt``), e.g. one kept by
    ``--keep-every`` or a finished long run's ``final.pt`` (``longruns/README.md``). Returns the
    record's path; an entry in this package's folder is registered when :mod:`pyro_vae.pretrained`
    is next imported (or by :func:`~pyro_vae.pretrained.register_pretrained`)."""
    if not NAME.fullmatch(name):
        raise PretrainedError(f"a pretrained name is lower-case letters, digits, '.', '_' and '-', got {name!r}")
    run_dir, folder = Path(run_dir), Path(folder)
    state = load_checkpoint(run_dir / CHECKPOINT if checkpoint is None else Path(checkpoint))
    weights = encode_weights(state["model"], str(run_dir))
    config = TrainConfig.from_dict(state["config"])
    check_vector_model(config, run_dir)
    reports = {p.stem: read_report(p) for p in sorted(run_dir.glob(f"eval-epoch{state['epoch']:04d}-k*-n*.json"))}
    record = {
        "description": description,
        "command": command,
        "exported_with": f"export_pretrained({str(run_dir)!r}, {name!r}, command={command!r}, "
        f"description={description!r}" + ("" if checkpoint is None else f", checkpoint={str(checkpoint)!r}") + ")",
        "epoch": state["epoch"],
        "reports": reports,
        "config": dataclasses.asdict(config),
        "data": describe_data(config, None, data_dir).to_dict(),
        "metrics": state["metrics"],
        "versions": versions(),
    }
    return write_entry(folder / f"{name}.json", weights, record)
