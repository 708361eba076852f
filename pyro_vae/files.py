"""Atomic file writes: a file is replaced whole or not at all.

Each write goes to a hidden temporary ``.NAME.<random>.tmp`` in the target's
folder, is ``fsync`` ed and moved into place with ``os.replace``; on any failure
the temporary file is removed and the previous file stays intact. Errors from
the operating system are re-raised as ``OSError`` naming the target, so a
caller can print one line such as ``.../checkpoint.pt: no space left on device``.
Used for checkpoints, run-folder files (:func:`write_csv` for metrics and tables) and the data cache.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def file_mode() -> int:
    """``0o666`` less the umask: the mode ``open()`` would give a new file (``mkstemp`` gives 0600)."""
    try:
        with open("/proc/self/status") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = 0o022
    return 0o666 & ~umask


def named_os_error(err: OSError, path: Path) -> OSError:
    """``err`` with ``path`` as its file name (a failed ``write`` or ``fsync`` names none)."""
    if err.filename is None and err.errno is not None:
        return type(err)(err.errno, err.strerror or os.strerror(err.errno), str(path))
    return err


def atomic_write_stream(path: str | os.PathLike, source: io.BufferedIOBase) -> Path:
    """Copy the binary file object ``source`` (``open(..., "rb")``, ``gzip.open``, ``BytesIO``) to ``path`` atomically (see the module docstring)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise named_os_error(err, path) from None
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(source, f, 1 << 20)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise named_os_error(err, path) from None
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write_stream(path, io.BytesIO(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, value: Any) -> Path:
    """Write ``value`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def atomic_copy(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Copy ``source`` to ``target`` atomically (a kill leaves the old ``target`` or none, never half)."""
    with open(source, "rb") as f:
        return atomic_write_stream(target, f)


def write_csv(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write ``rows`` as CSV, columns the union of their keys in first-seen order,
    atomically (a temporary file, then a rename); creates the folder."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, text.getvalue())
