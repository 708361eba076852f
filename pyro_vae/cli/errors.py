"""What the command line prints for an error or a Ctrl-C (one line, never a traceback), and
the exit status it ends with.

:data:`EXIT_STATUS` declares the status of each error the command line reports: 2 for a
usage error (a bad flag or value: argparse's own errors, and the ``ValueError`` or
``TypeError`` of a check, such as ``TrainConfig``'s), 1 for a failure at run time (a missing
checkpoint or run folder, a corrupt checkpoint or data file, a data set not found, a file that
cannot be read or written, a diverged run, a busy run folder, a failing callback). An error
takes the status of the first of its classes (along its method resolution order) in the
table, so ``CorruptDataError``, a ``ValueError``, is a failure at run time. Ctrl-C ends with
130 and SIGTERM with 143 (128 + the signal), as a shell reports a process the signal ended.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyro_vae.data import CorruptDataError
from pyro_vae.training import TrainingDiverged
from pyro_vae.training.callbacks import CallbackError
from pyro_vae.training.checkpoint import CheckpointError
from pyro_vae.training.distributed import resume_command
from pyro_vae.training.run_dir import RunDirBusyError, describe_os_error

#: Exit status of a usage error: a bad command line (argparse's errors included).
USAGE = 2
#: Exit status of a failure at run time.
FAILURE = 1

#: The exit status of each error the command line reports in one line; an error takes the
#: status of the first of its classes found here (``type(err).__mro__``).
EXIT_STATUS: dict[type[BaseException], int] = {
    ValueError: USAGE,
    TypeError: USAGE,
    CorruptDataError: FAILURE,  # a ValueError: a damaged file, not a bad flag
    OSError: FAILURE,  # DatasetNotFoundError, FileExistsError, a failed write (read-only folder, full disk)
    CheckpointError: FAILURE,  # missing, truncated or of another run
    TrainingDiverged: FAILURE,
    RunDirBusyError: FAILURE,
    CallbackError: FAILURE,  # a failing callback (--tensorboard), the epoch saved
}

#: The errors the command line reports in one line (the others are bugs: a traceback).
USER_ERRORS = tuple(EXIT_STATUS)


def exit_status(err: BaseException) -> int:
    """The exit status of a reported error: that of the first of its classes in :data:`EXIT_STATUS`."""
    return next(EXIT_STATUS[cls] for cls in type(err).__mro__ if cls in EXIT_STATUS)


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
