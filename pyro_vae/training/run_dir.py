"""Run-folder mechanics: one trainer per folder, atomic files, leftovers cleaned, snapshots checked.

A run folder (``--run-dir``) holds ``config.json``, ``metrics.csv``, ``checkpoint.pt``
and, with ``--keep-every``, ``checkpoints/epoch-NNNN.pt``. What this module guarantees:

* **One trainer at a time.** :func:`lock_run_dir` takes an exclusive
  ``fcntl.flock`` on ``RUN_DIR/.lock``; a second trainer gets
  :class:`RunDirBusyError` at once instead of mixing its files into the first
  run's. The kernel drops the lock when the process dies (even by ``kill -9``),
  so a crashed run never leaves a stale lock behind.
* **Whole files or the old ones.** Every file is written by :mod:`pyro_vae.files`
  (a temporary name in the same folder, ``fsync``, ``os.replace``); a crash
  leaves the previous file intact and at worst a hidden ``.NAME.*.tmp`` file,
  which :func:`clean_stale_temp_files` removes on the next start.
* **Snapshots are checked on resume.** :func:`repair_snapshots` verifies every
  ``checkpoints/epoch-NNNN.pt``; the one of the checkpoint's own epoch (the
  copy a kill interrupted) is rebuilt from ``checkpoint.pt``, others that are
  damaged are reported with a :class:`RunDirWarning`.

Errors from the operating system are re-raised as ``OSError`` naming the file
that could not be written, so the CLI can print one line such as
``.../checkpoint.pt: no space left on device``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pyro_vae.files import atomic_copy, named_os_error

LOCK = ".lock"
SNAPSHOTS = "checkpoints"
# Temporary files the trainer writes: hidden ".NAME.<random>.tmp" from the atomic writes of
# pyro_vae.files (checkpoint.py, folder.py, and the snapshot copies here), and "metrics.tmp"
# from older versions of write_csv. Not those of
# `pyro-vae evaluate`, which may be writing into the folder without the lock.
_TEMP_FILE = re.compile(r"^\.(checkpoint\.pt|config\.json|metrics\.csv|epoch-\d+\.pt)\..+\.tmp$|^metrics\.tmp$")
_WRITE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG}


class RunDirBusyError(RuntimeError):
    """Another process is training in the same run folder."""


class RunDirWarning(UserWarning):
    """Something in a run folder is damaged and cannot be repaired automatically."""


def _holder_pid(fd: int, attempts: int = 20) -> str:
    """The pid the lock's holder writes into the lock file; it writes it just after taking
    the lock, so a racing reader waits for it a moment (up to ~1 s) before saying "unknown"."""
    for _ in range(attempts):
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if holder:
            return holder
        time.sleep(0.05)
    return "unknown"


@contextmanager
def lock_run_dir(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on ``run_dir`` (created if needed) for the ``with`` block.

    Raises :class:`RunDirBusyError` naming the holder's pid if another process
    holds it. A folder this call created and that holds nothing but the lock
    file when the block ends (the run failed before writing anything) is removed.
    """
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise named_os_error(err, run_dir) from None
    path = run_dir / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise named_os_error(err, path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_pid(fd)
            os.close(fd)
            raise RunDirBusyError(
                f"run folder {run_dir} is in use by another training (pid {holder}); "
                "wait for it to finish, or use another --run-dir"
            ) from None
        try:  # the holder before us may have removed the file: lock the one that is there
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield run_dir
    finally:
        if created and [p.name for p in run_dir.iterdir()] == [LOCK]:
            path.unlink(missing_ok=True)
            run_dir.rmdir()
        os.close(fd)


def clean_stale_temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Remove temporary files that killed or failed writes left in ``run_dir`` and its snapshots.

    Call it only while holding :func:`lock_run_dir`: then no other trainer is writing
    there. Returns the paths removed.
    """
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / SNAPSHOTS):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if _TEMP_FILE.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def snapshot_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    """Where ``--keep-every`` keeps the checkpoint of ``epoch``: ``RUN_DIR/checkpoints/epoch-NNNN.pt``."""
    return Path(run_dir) / SNAPSHOTS / f"epoch-{epoch:04d}.pt"


def repair_snapshots(
    run_dir: str | os.PathLike,
    checkpoint: str | os.PathLike,
    epoch: int,
    keep_every: int,
    verify: Callable[[Path], None],
) -> list[Path]:
    """Check every kept snapshot with ``verify`` (raises on a damaged file) and repair what can be.

    The snapshot of ``epoch`` (the epoch of ``checkpoint``) is rebuilt from
    ``checkpoint`` when it is damaged, or missing while ``keep_every`` asks for it:
    a kill between writing the checkpoint and copying it leaves exactly that.
    Damaged snapshots of other epochs cannot be rebuilt; each gets a
    :class:`RunDirWarning`. Returns the snapshots rebuilt.
    """
    current = snapshot_path(run_dir, epoch)
    repaired = []
    folder = Path(run_dir) / SNAPSHOTS
    for path in sorted(folder.glob("epoch-*.pt")) if folder.is_dir() else []:
        try:
            verify(path)
        except Exception as err:  # noqa: BLE001 - any failure to verify means damaged
            if path == current:
                atomic_copy(checkpoint, current)
                repaired.append(current)
            else:
                warnings.warn(
                    f"kept snapshot {path} is damaged and cannot be rebuilt (the run is past that epoch): {err}",
                    RunDirWarning,
                    stacklevel=2,
                )
    if keep_every and epoch and epoch % keep_every == 0 and not current.exists():
        atomic_copy(checkpoint, current)
        repaired.append(current)
    return repaired


def describe_os_error(err: OSError) -> str:
    """One line for an ``OSError``: the file, what went wrong in words, and the errno name.

    ``OSError(ENOSPC, ..., "/runs/a/checkpoint.pt")`` becomes
    ``"cannot write /runs/a/checkpoint.pt: no space left on device (ENOSPC)"``.
    Errors built from one message (this package's own) keep their message.
    """
    if err.strerror is None or err.errno is None:
        return str(err)
    name = errno.errorcode.get(err.errno, str(err.errno))
    what = err.strerror[0].lower() + err.strerror[1:]
    if err.filename is None:
        return f"{what} ({name})"
    verb = "write" if err.errno in _WRITE_ERRORS else "access"
    return f"cannot {verb} {err.filename}: {what} ({name})"
