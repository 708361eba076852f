"""A pretrained program rebuilt without its data set: the registered model its config describes,
shaped by the record's :class:`~pyro_vae.pretrained.record.DataDescription`, with the weights
of its file."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from pyro.nn import PyroModule

from pyro_vae.pretrained.record import DataDescription, PretrainedError
from pyro_vae.training.build import build_program_for
from pyro_vae.training.checkpoint import CheckpointError, load_module_state
from pyro_vae.training.config import TrainConfig
from pyro_vae.validation import check_device


def rebuild_program(
    config: TrainConfig,
    data: DataDescription,
    state: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    device: str = "cpu",
) -> PyroModule:
    """The program ``config`` describes for ``data``, holding the weights ``state`` (from the file
    ``path``, named in errors), on ``device``, in eval mode. No data set is read (a model option
    naming a run folder reads that run's). Torch's RNG is restored afterwards: building draws the
    initial weights, which ``state`` replaces, and the caller's random stream stays as it was.
    A state that does not fit the program (keys, shapes, non-finite values) is one
    :class:`~pyro_vae.pretrained.record.PretrainedError`."""
    check_device(device)
    with torch.random.fork_rng():
        try:
            program = build_program_for(config, data.spec, data.likelihood, device=device)
        except ValueError as err:
            raise PretrainedError(f"{path}: its config builds no program: {err}") from None
    try:
        load_module_state(program, state, "model", path)
    except CheckpointError as err:
        raise PretrainedError(str(err)) from None
    return program.to(device).eval()
