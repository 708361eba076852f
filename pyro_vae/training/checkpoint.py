"""Atomic, verified checkpoints of a training run.

A checkpoint is one ``torch.save`` file (a zip archive), serialized in memory
and written to a temporary name in the same folder, then moved into place with
``os.replace`` (:func:`pyro_vae.training.run_dir.atomic_write_bytes`), so a
crash mid-write never leaves a truncated checkpoint behind: the previous one
stays intact, and a full disk is reported as the ``OSError`` it is.

Loading verifies the CRC-32 of every member of the archive before unpickling
(``weights_only=True``): ``torch.load`` does not, so a flipped byte inside a
tensor would otherwise load as a silently wrong weight. Entries the trainer
needs and state dicts that do not fit the model are reported as one
:class:`CheckpointError` line each.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pyro_vae.files import atomic_write_bytes

FORMAT = "pyro_vae.training.checkpoint/1"
REQUIRED_KEYS = ("format", "config", "epoch", "model", "estimator", "optimizer", "rng", "metrics")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, corrupt or not a pyro_vae checkpoint."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` (plus the format tag) to ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is a complete zip archive whose
    members all match their CRC-32 (this catches truncation and flipped bytes)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: {err}") from None
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: the data of {bad!r} fail their CRC check "
            "(flipped or overwritten bytes); use another checkpoint"
        )


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read and verify a checkpoint written by :func:`save_checkpoint`, or raise :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    verify_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: {err}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyro_vae checkpoint (expected format {FORMAT!r})")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the entries {missing}")
    return state


def _names(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_module_state(module: nn.Module, state: Mapping[str, Any], what: str, path: str | os.PathLike) -> None:
    """``module.load_state_dict(state)``, or one :class:`CheckpointError` naming the mismatch.

    ``what`` names the module in the message (``"model"``, ``"estimator"``); a
    checkpoint from another architecture is told apart from a torch size-mismatch traceback.
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint {path}: the {what} state is a {type(state).__name__}, not a state dict")
    expected = module.state_dict()
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} (the model has {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and torch.is_tensor(state[k]) and state[k].shape != v.shape
    ]
    if missing:
        problems.append(f"missing {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected {_names(unexpected)}")
    if shapes:
        problems.append(f"shape of {_names(shapes)}")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not fit the {what} its config describes (another architecture?): "
            + "; ".join(problems)
        )
    restore_state(module.load_state_dict, state, what, path)


def restore_state(load: Callable[[Any], Any], state: Any, what: str, path: str | os.PathLike) -> None:
    """``load(state)``, turning the errors of a state that does not fit into one :class:`CheckpointError`."""
    try:
        load(state)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path}: cannot restore the {what} state: {first}") from None
