"""What the command line prints for a user's error or a Ctrl-C: one line, never a traceback."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyro_vae.data import DatasetNotFoundError
from pyro_vae.training import TrainingDiverged
from pyro_vae.training.callbacks import CallbackError
from pyro_vae.training.checkpoint import CheckpointError
from pyro_vae.training.distributed import resume_command
from pyro_vae.training.run_dir import RunDirBusyError, describe_os_error

# OSError covers FileExistsError, DatasetNotFoundError and a failed write (read-only folder, full disk);
# CallbackError a failing callback (--tensorboard), the epoch saved.
USER_ERRORS = (
    ValueError,
    TypeError,
    CheckpointError,
    DatasetNotFoundError,
    TrainingDiverged,
    OSError,
    RunDirBusyError,
    CallbackError,
)


def describe_error(err: BaseException) -> str:
    """The one line the CLI prints for a user error: an ``OSError`` names the file and
    the errno in words (``cannot write X: no space left on device (ENOSPC)``)."""
    if isinstance(err, OSError):
        return describe_os_error(err)
    lines = str(err).strip().splitlines()  # Pyro appends a dump of the trace's shapes: the first line says it
    return lines[0] if lines else type(err).__name__


def interrupted_message(command: str, run_dir: Path | None) -> str:
    """What Ctrl-C (or SIGTERM) prints: for ``train``, how to resume (or that there is nothing to resume yet)."""
    if command != "train" or run_dir is None:
        return "interrupted"
    if (Path(run_dir) / "checkpoint.pt").is_file():
        return f"interrupted; resume with {resume_command(run_dir)}"
    return f"interrupted before the first epoch finished; {run_dir} holds no checkpoint to resume"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread where Ctrl-C raises ``KeyboardInterrupt``: the run
    unwinds the same way (its lock released, its last checkpoint intact); exit status 143."""

    exit_status = 128 + signal.SIGTERM


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """In the block (main thread only), SIGTERM raises :class:`Terminated` instead of ending
    the process silently; the previous handler is restored after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
