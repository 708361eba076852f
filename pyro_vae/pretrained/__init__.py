"""Pretrained models: ``load_pretrained("mnist-vae-z50-e3280")`` is the trained program itself,
rebuilt in about a second without reading any data set; ``load_pretrained_run(NAME)`` is its
run with the data set; ``pyro-vae evaluate pretrained:NAME`` evaluates it.

A shipped entry is two files in this package folder (:data:`FOLDER`), registered by name in
:data:`PRETRAINED`: ``NAME.pt``, the model's ``state_dict`` in float32 (at most
:data:`~pyro_vae.pretrained.weights.MAX_BYTES`), nothing else, and ``NAME.json``, its record:
the run's config, the description of its data (one datum's shape, the number of classes, the
likelihood and image shape: what the program is rebuilt from), the command that trained it,
the command that exported it, its learning curve (``metrics``), its measured numbers (the
run's evaluation reports), and the SHA-256 and size of ``NAME.pt``. :func:`export_pretrained`
makes an entry from a run folder, so an entry is remade by rerunning the two recorded commands.
A user's own program is saved into a folder by :func:`save_pretrained` (``pretrained.pt`` and
``pretrained.json``), and :func:`load_pretrained` takes that folder as it takes a name.

Loading checks the weights file against its record before reading it (size, SHA-256: any
damaged or replaced byte), reads it with ``torch.load(..., weights_only=True)``, and checks
its keys, shapes, dtypes and values against the model the config builds; each failure is one
:class:`PretrainedError` naming the file and the problem. The model must be registered
(``MODELS``): a user's model is rebuilt after the module that registers it is imported.

A model option that names a trained program (the stacked M1 + M2's ``m1``) may name an entry as
``pretrained:NAME``: this module registers the scheme ``pretrained`` in
:data:`~pyro_vae.training.build.PROGRAM_SOURCES`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, overload

from pyro.nn import PyroModule

from pyro_vae.pretrained.program import rebuild_program
from pyro_vae.pretrained.record import (
    FOLDER,
    FOLDER_RECORD,
    DataDescription,
    PretrainedError,
    read_record,
    record_config,
    record_data,
)
from pyro_vae.pretrained.save import export_pretrained, save_pretrained
from pyro_vae.pretrained.weights import MAX_BYTES, read_weights
from pyro_vae.registry import Registry
from pyro_vae.training import Run, build_run, load_run
from pyro_vae.training.build import PROGRAM_SOURCES
from pyro_vae.training.checkpoint import CheckpointError, load_module_state

__all__ = [
    "FOLDER",
    "MAX_BYTES",
    "PRETRAINED",
    "PREFIX",
    "DataDescription",
    "PretrainedError",
    "export_pretrained",
    "load_pretrained",
    "load_pretrained_run",
    "pretrained_record",
    "register_pretrained",
    "report_dir",
    "resolve_run",
    "save_pretrained",
]

#: How an evaluate target names a pretrained entry: ``pretrained:NAME`` (or ``pretrained:FOLDER``).
PREFIX = "pretrained:"

#: The pretrained entries by name: the path of each one's record ``NAME.json``.
PRETRAINED: Registry[Path] = Registry("pretrained model")


def register_pretrained(record: str | Path) -> Path:
    """Register the entry whose record is ``record`` (``NAME.json``, its weights ``NAME.pt`` beside
    it) under ``NAME``; a damaged record is registered too, and refused when loaded."""
    record = Path(record)
    try:
        description = read_record(record).get("description", "")
    except PretrainedError as err:
        description = str(err)
    return PRETRAINED.register(record.stem, record, help=str(description), replace=True)


def _record_path(source: str | os.PathLike) -> Path:
    """The record of ``source``: a registered name's, or a folder's ``pretrained.json``."""
    name = os.fspath(source)
    if name in PRETRAINED:
        return PRETRAINED[name]
    folder = Path(name)
    if (folder / FOLDER_RECORD).is_file():
        return folder / FOLDER_RECORD
    if folder.is_dir():
        raise PretrainedError(f"{folder} holds no {FOLDER_RECORD}: it is not a folder written by save_pretrained")
    raise PretrainedError(
        f"unknown pretrained model {name!r}; expected one of {PRETRAINED.names()} or a folder written by save_pretrained"
    )


def pretrained_record(source: str | os.PathLike) -> dict[str, Any]:
    """The record of the entry ``source`` (a shipped name or a folder of :func:`save_pretrained`),
    its entries checked: ``config``, ``data`` (:meth:`DataDescription.from_dict` reads it: e.g.
    the ``image_shape`` of pictures of the program's samples), ``metrics``, ``description``, and
    for a shipped entry the commands and evaluation ``reports``."""
    return read_record(_record_path(source))


def _load(source: str | os.PathLike):
    """The record path, config, data description and checked weights of ``source``."""
    path = _record_path(source)
    record = read_record(path)
    config, data = record_config(path, record), record_data(path, record)
    return path, record, config, data, read_weights(path.with_suffix(".pt"), record)


@overload
def load_pretrained(source: str | os.PathLike, data_dir: None = None, device: str = "cpu") -> PyroModule: ...


@overload
def load_pretrained(source: str | os.PathLike, data_dir: str | os.PathLike, device: str = "cpu") -> Run: ...


def load_pretrained(
    source: str | os.PathLike, data_dir: str | os.PathLike | None = None, device: str = "cpu"
) -> PyroModule | Run:
    """The trained program of the entry ``source``: a registered model (a ``PyroModule``) with the
    entry's weights, in eval mode, on ``device``, rebuilt from its record's config and data
    description without reading any data set. ``source`` is a shipped name (:data:`PRETRAINED`)
    or a folder written by :func:`save_pretrained`. Its run, with the data set, estimator and
    learning curve, is :func:`load_pretrained_run`. An unknown name is a
    :class:`PretrainedError` listing the known ones.

    ``data_dir`` is deprecated: given, the run is returned as before this function returned the
    program (:func:`load_pretrained_run`), with a ``DeprecationWarning``.

    >>> import torch
    >>> from pyro_vae import evaluate, load_pretrained
    >>> vae = load_pretrained("mnist-vae-z20-e10")  # the README's main job: 784-500-20, 10 epochs
    >>> type(vae).__name__, vae.x_shape, vae.training
    ('VAE', (784,), False)
    >>> x = torch.bernoulli(torch.full((4, 784), 0.1), generator=torch.Generator().manual_seed(0))
    >>> evaluate(vae, [x], num_samples=10).log_px < 0  # log p(x) in nats per image
    True
    """
    if data_dir is not None:
        warnings.warn(
            "load_pretrained(NAME, data_dir) returns the program now, not its run; "
            "call load_pretrained_run(NAME, data_dir) for the run",
            DeprecationWarning,
            stacklevel=2,
        )
        return load_pretrained_run(source, data_dir, device)
    path, _, config, data, state = _load(source)
    return rebuild_program(config, data, state, path.with_suffix(".pt"), device)


def load_pretrained_run(
    source: str | os.PathLike, data_dir: str | os.PathLike | None = None, device: str = "cpu"
) -> Run:
    """The run of the entry ``source`` (as for :func:`load_pretrained`): its program with the
    entry's weights, its data set (``data_dir`` or ``$PYRO_VAE_DATA``), estimator and learning
    curve, as :func:`~pyro_vae.training.load_run` gives for a run folder. The data set loaded
    must be the one the record describes (:class:`DataDescription`), else one
    :class:`PretrainedError`."""
    path, record, config, data, state = _load(source)
    run = build_run(config, None if data_dir is None else Path(data_dir), device)
    found = DataDescription.of(run.dataset)
    if found != data:
        raise PretrainedError(
            f"pretrained record {path} describes the data {data}, but the data set {config.dataset!r} loaded now "
            f"is {found}; load it with the data set it was trained on"
        )
    try:
        load_module_state(run.program, state, "model", path.with_suffix(".pt"))
    except CheckpointError as err:
        raise PretrainedError(str(err)) from None
    run.metrics = record["metrics"]
    return run


def _pretrained_program(name: str, data_dir: str | Path | None, device: str) -> PyroModule:
    """The program of the pretrained entry ``name`` (:func:`load_pretrained`: no data set is read)."""
    return load_pretrained(name, device=device)


PROGRAM_SOURCES.register(
    "pretrained",
    _pretrained_program,
    help="pretrained:NAME, a shipped entry of pyro_vae.pretrained (or a folder of save_pretrained)",
)


def resolve_run(
    target: str | Path,
    data_dir: str | Path | None = None,
    device: str = "cpu",
    checkpoint: str | Path | None = None,
    data: object = None,
) -> Run:
    """The run a command's target names: ``pretrained:NAME`` or ``pretrained:FOLDER``
    (:func:`load_pretrained_run`) or a run folder (:func:`~pyro_vae.training.load_run`, from
    ``checkpoint`` if given, on ``data``, the user's own data it was trained on)."""
    target = str(target)
    if target.startswith(PREFIX):
        if checkpoint is not None:
            raise ValueError(f"--checkpoint names a run folder's checkpoint; {target} has none")
        return load_pretrained_run(target[len(PREFIX) :], data_dir, device)
    return load_run(target, data_dir, device, checkpoint, data=data)


def report_dir(target: str | Path) -> Path:
    """Where the reports of a command's target go: the run folder itself; for a shipped entry
    ``pretrained:NAME``, ``runs/pretrained/NAME`` (the package folder stays as shipped); for
    ``pretrained:FOLDER``, the folder."""
    target = str(target)
    if not target.startswith(PREFIX):
        return Path(target)
    name = target[len(PREFIX) :]
    saved = name not in PRETRAINED and (Path(name) / FOLDER_RECORD).is_file()
    return Path(name) if saved else Path("runs") / "pretrained" / name


for _record in sorted(FOLDER.glob("*.json")):
    register_pretrained(_record)
