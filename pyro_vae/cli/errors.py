"""What the command line prints for a user's error or a Ctrl-C: one line, never a traceback."""

from __future__ import annotations

from pathlib import Path

from pyro_vae.data import DatasetNotFoundError
from pyro_vae.training.checkpoint import CheckpointError
from pyro_vae.training import TrainingDiverged
from pyro_vae.training.run_dir import RunDirBusyError, describe_os_error

# OSError covers FileExistsError, DatasetNotFoundError and a failed write (read-only folder, full disk).
USER_ERRORS = (ValueError, TypeError, CheckpointError, DatasetNotFoundError, TrainingDiverged, OSError, RunDirBusyError)


def describe_error(err: BaseException) -> str:
    """The one line the CLI prints for a user error: an ``OSError`` names the file and
    the errno in words (``cannot write X: no space left on device (ENOSPC)``)."""
    if isinstance(err, OSError):
        return describe_os_error(err)
    return str(err)


def interrupted_message(command: str, run_dir: Path | None) -> str:
    """What Ctrl-C prints: for ``train``, how to resume (or that there is nothing to resume yet)."""
    if command != "train" or run_dir is None:
        return "interrupted"
    if (Path(run_dir) / "checkpoint.pt").is_file():
        return f"interrupted; resume with pyro-vae train --run-dir {run_dir} --resume"
    return f"interrupted before the first epoch finished; {run_dir} holds no checkpoint to resume"
