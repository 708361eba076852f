"""Pretrained models by name: ``load_pretrained("mnist-vae-z20")`` and ``pyro-vae evaluate pretrained:NAME``.

Each entry is two files in this package folder:

* ``NAME.pt``: the model's ``state_dict`` in float32 (at most :data:`MAX_BYTES`), nothing else;
* ``NAME.json``: the run's config, the command that trained it, the command that exported it,
  its learning curve (``metrics``), its measured numbers (the run's evaluation reports), and the
  SHA-256 and size of ``NAME.pt``.

Loading checks the file against its record before reading it (size, SHA-256: any damaged or
replaced byte), reads it with ``torch.load(..., weights_only=True)``, and checks its keys,
shapes and dtypes against the model the config builds; each failure is one
:class:`PretrainedError` naming the file and the problem. :func:`export_pretrained` makes an
entry from a run folder, so an entry is remade by rerunning the two recorded commands.

A model option that names a trained program (the stacked M1 + M2's ``m1``) may name an entry as
``pretrained:NAME``: this module registers the scheme ``pretrained`` in
:data:`~pyro_vae.training.build.PROGRAM_SOURCES`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pyro_vae.files import atomic_write_bytes, atomic_write_json
from pyro_vae.registry import Registry
from pyro_vae.training.build import PROGRAM_SOURCES
from pyro_vae.training.checkpoint import CheckpointError, load_checkpoint, load_module_state
from pyro_vae.training.config import TrainConfig
from pyro_vae.training.loop import CHECKPOINT, Run, build_run, load_run
from pyro_vae.training.report import read_report

__all__ = [
    "FOLDER",
    "MAX_BYTES",
    "PRETRAINED",
    "PREFIX",
    "PretrainedError",
    "export_pretrained",
    "load_pretrained",
    "register_pretrained",
    "report_dir",
    "resolve_run",
]

#: The folder of the shipped entries (``NAME.pt`` and ``NAME.json``): this package's.
FOLDER = Path(__file__).parent
#: The largest weights file an entry may have, in bytes (5 MiB).
MAX_BYTES = 5 * 1024 * 1024
#: How an evaluate target names a pretrained entry: ``pretrained:NAME``.
PREFIX = "pretrained:"
FORMAT = "pyro_vae.pretrained/1"
NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


class PretrainedError(ValueError):
    """A pretrained entry is unknown, missing, damaged, too large or does not fit its config."""


#: The pretrained entries by name: the path of each one's record ``NAME.json``.
PRETRAINED: Registry[Path] = Registry("pretrained model")


def register_pretrained(record: str | Path) -> Path:
    """Register the entry whose record is ``record`` (``NAME.json``, its weights ``NAME.pt`` beside
    it) under ``NAME``; a damaged record is registered too, and refused when loaded."""
    record = Path(record)
    try:
        description = _read_record(record).get("description", "")
    except PretrainedError as err:
        description = str(err)
    return PRETRAINED.register(record.stem, record, help=str(description), replace=True)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: The entries every record holds: what each must be, as a test and in words for the message.
RECORD_ENTRIES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "config": (lambda v: isinstance(v, dict), "a dict of TrainConfig fields"),
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


def _read_record(path: Path) -> dict[str, Any]:
    """The record ``path`` with its entries (:data:`RECORD_ENTRIES`) checked, or :class:`PretrainedError`."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PretrainedError(f"pretrained record {path} is unreadable: {err}") from None
    if not isinstance(record, dict):
        raise PretrainedError(f"pretrained record {path} must be a JSON object, got a {type(record).__name__}")
    missing = [k for k in RECORD_ENTRIES if k not in record]
    if missing:
        raise PretrainedError(f"pretrained record {path} lacks the entries {missing}")
    for key, (valid, expected) in RECORD_ENTRIES.items():
        if not valid(record[key]):
            raise PretrainedError(
                f"pretrained record {path}: the entry {key} must be {expected}, got {record[key]!r:.80}"
            )
    return record


def _config(path: Path, record: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` of the record ``path``, or :class:`PretrainedError` naming what is wrong."""
    try:
        return TrainConfig.from_dict(record["config"])
    except (TypeError, ValueError) as err:  # each one line, naming the field
        raise PretrainedError(f"pretrained record {path}: its config is not valid: {err}") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _weights(path: Path, record: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, checked against ``record`` (size, SHA-256, format, float32)."""
    if not path.is_file():
        raise PretrainedError(f"pretrained weights {path} are missing")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise PretrainedError(f"pretrained weights {path} are {size} bytes, over the limit of {MAX_BYTES}")
    data = path.read_bytes()
    if size != record["bytes"] or _sha256(data) != record["sha256"]:
        raise PretrainedError(
            f"pretrained weights {path} are damaged: {size} bytes with SHA-256 {_sha256(data)[:12]}..., "
            f"the record says {record['bytes']} bytes, {record['sha256'][:12]}...; restore the file or re-export it"
        )
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError) as err:
        raise PretrainedError(f"pretrained weights {path} are unreadable: {err}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("model"), dict):
        raise PretrainedError(f"{path} is not a pyro_vae pretrained weights file (expected format {FORMAT!r})")
    wrong = [
        k
        for k, v in state["model"].items()
        if not torch.is_tensor(v) or (v.is_floating_point() and v.dtype != torch.float32)
    ]
    if wrong:
        raise PretrainedError(f"pretrained weights {path}: {wrong[:3]} are not float32 tensors")
    return state["model"]


def load_pretrained(name: str, data_dir: str | Path | None = None, device: str = "cpu") -> Run:
    """The run of the pretrained entry ``name``: its program with the shipped weights, its data
    set (``data_dir`` or ``$PYRO_VAE_DATA``), estimator and learning curve, as
    :func:`~pyro_vae.training.loop.load_run` gives for a run folder. An unknown name is a
    :class:`PretrainedError` listing the known ones."""
    try:
        record_path = PRETRAINED[name]
    except ValueError as err:
        raise PretrainedError(str(err)) from None
    record = _read_record(record_path)
    path = record_path.with_suffix(".pt")
    state = _weights(path, record)
    run = build_run(_config(record_path, record), data_dir, device)
    try:
        load_module_state(run.vae, state, "model", path)
    except CheckpointError as err:
        raise PretrainedError(str(err)) from None
    run.metrics = record["metrics"]
    return run


def _pretrained_program(name: str, data_dir: str | Path | None, device: str) -> torch.nn.Module:
    """The program of the pretrained entry ``name`` (:func:`load_pretrained`)."""
    return load_pretrained(name, data_dir, device).vae


PROGRAM_SOURCES.register(
    "pretrained", _pretrained_program, help="pretrained:NAME, a shipped entry of pyro_vae.pretrained"
)


def resolve_run(
    target: str | Path, data_dir: str | Path | None = None, device: str = "cpu", checkpoint: str | Path | None = None
) -> Run:
    """The run an evaluate target names: ``pretrained:NAME`` (:func:`load_pretrained`) or a run
    folder (:func:`~pyro_vae.training.loop.load_run`, from ``checkpoint`` if given)."""
    target = str(target)
    if target.startswith(PREFIX):
        if checkpoint is not None:
            raise ValueError(f"--checkpoint names a run folder's checkpoint; {target} has none")
        return load_pretrained(target[len(PREFIX) :], data_dir, device)
    return load_run(target, data_dir, device, checkpoint)


def report_dir(target: str | Path) -> Path:
    """Where the evaluation reports of an evaluate target go: the run folder itself, or for
    ``pretrained:NAME`` ``runs/pretrained/NAME`` (the package folder stays as shipped)."""
    target = str(target)
    if target.startswith(PREFIX):
        return Path("runs") / "pretrained" / target[len(PREFIX) :]
    return Path(target)


def export_pretrained(
    run_dir: str | Path,
    name: str,
    command: str,
    description: str,
    folder: str | Path = FOLDER,
    checkpoint: str | Path | None = None,
) -> Path:
    """Make the entry ``name`` in ``folder`` (this package's by default) from the run in ``run_dir``:
    its checkpoint's model weights in float32 as ``NAME.pt`` and ``NAME.json`` recording the config,
    ``command`` (the one that trained the run), ``description``, the learning curve and the
    evaluation reports of the checkpoint's epoch (``eval-epochEEEE-k*-n*.json``). Refused when the
    weights exceed :data:`MAX_BYTES`. ``checkpoint``: a checkpoint file of the run other than its
    last (``RUN/checkpoint.pt``), e.g. one kept by ``--keep-every`` or a finished long run's
    ``final.pt`` (``longruns/README.md``). Returns the record's path; an entry in this package's
    folder is registered when :mod:`pyro_vae.pretrained` is next imported (or by
    :func:`register_pretrained`)."""
    if not NAME.fullmatch(name):
        raise PretrainedError(f"a pretrained name is lower-case letters, digits, '.', '_' and '-', got {name!r}")
    run_dir, folder = Path(run_dir), Path(folder)
    state = load_checkpoint(run_dir / CHECKPOINT if checkpoint is None else Path(checkpoint))
    model = {k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()}
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "model": model}, buffer)
    data = buffer.getvalue()
    if len(data) > MAX_BYTES:
        raise PretrainedError(
            f"the weights of {run_dir} are {len(data)} bytes in float32, over the limit of {MAX_BYTES}"
        )
    reports = {p.stem: read_report(p) for p in sorted(run_dir.glob(f"eval-epoch{state['epoch']:04d}-k*-n*.json"))}
    record = {
        "description": description,
        "command": command,
        "exported_with": f"export_pretrained({str(run_dir)!r}, {name!r}, command={command!r}, "
        f"description={description!r}" + ("" if checkpoint is None else f", checkpoint={str(checkpoint)!r}") + ")",
        "epoch": state["epoch"],
        "reports": reports,
        "config": dataclasses.asdict(TrainConfig.from_dict(state["config"])),
        "metrics": state["metrics"],
        "torch": torch.__version__,
        "bytes": len(data),
        "sha256": _sha256(data),
    }
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / f"{name}.pt", data)
    return atomic_write_json(folder / f"{name}.json", record)


for _record in sorted(FOLDER.glob("*.json")):
    register_pretrained(_record)
