"""The weights file of a pretrained entry: a program's ``state_dict`` in float32 under a format
tag, at most :data:`MAX_BYTES`, read back with ``torch.load(..., weights_only=True)`` only after
its size and SHA-256 match its record (any damaged or replaced byte is refused)."""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pyro_vae.pretrained.record import PretrainedError

#: The largest weights file an entry may have, in bytes (5 MiB).
MAX_BYTES = 5 * 1024 * 1024
#: The tag a weights file carries: ``{"format": FORMAT, "model": state_dict}``.
FORMAT = "pyro_vae.pretrained/1"


def sha256(data: bytes) -> str:
    """The SHA-256 of ``data``, in hex."""
    return hashlib.sha256(data).hexdigest()


def float32_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with each floating-point tensor in float32, on the CPU."""
    return {k: (v.float() if v.is_floating_point() else v).detach().cpu() for k, v in state.items()}


def encode_weights(state: Mapping[str, torch.Tensor], what: str) -> bytes:
    """The weights file of the model state ``state`` (made float32), or :class:`PretrainedError`
    when it exceeds :data:`MAX_BYTES` (``what`` names the weights in the message)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "model": float32_state(state)}, buffer)
    data = buffer.getvalue()
    if len(data) > MAX_BYTES:
        raise PretrainedError(f"the weights of {what} are {len(data)} bytes in float32, over the limit of {MAX_BYTES}")
    return data


def read_weights(path: Path, record: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, checked against ``record`` (size, SHA-256, format, float32)."""
    if not path.is_file():
        raise PretrainedError(f"pretrained weights {path} are missing")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise PretrainedError(f"pretrained weights {path} are {size} bytes, over the limit of {MAX_BYTES}")
    data = path.read_bytes()
    if size != record["bytes"] or sha256(data) != record["sha256"]:
        raise PretrainedError(
            f"pretrained weights {path} are damaged: {size} bytes with SHA-256 {sha256(data)[:12]}..., "
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
