"""The verified file cache: where data files come from and how cached copies are checked.

* ``data_dir`` (the CLI's ``--data-dir``), else the environment variable
  ``PYRO_VAE_DATA``, names a folder in torchvision's layout
  (``MNIST/raw/*.gz``, ``FashionMNIST/raw/*.gz``) plus ``frey/frey_rawface.mat``.
  It may be read-only: the raw files are copied into a writable cache
  (``PYRO_VAE_CACHE``, default ``~/.cache/pyro_vae``) where torchvision reads
  them without the network. A given folder is always used: if it lacks the
  files, or holds one whose md5 is not torchvision's, that is an error, even
  when the cache is full.
* Otherwise torchvision downloads into the cache.

The cache is verified on every load, since one bad copy (a full disk, an
interrupted first run) would otherwise break every later run: each ``.gz`` must
match torchvision's md5, and each unpacked file the size and CRC-32 its ``.gz``
records. A bad or missing copy is replaced from the given folder (or
downloaded again) through a temporary file and ``os.replace``, so a kill never
leaves a half-written file under the real name.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import hashlib
import json
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar, Protocol

from pyro_vae.files import atomic_write_json, atomic_write_stream

#: The environment variable naming the folder of real data sets (``--data-dir`` wins over it).
ENV_DATA = "PYRO_VAE_DATA"
#: The environment variable naming the writable cache (default ``~/.cache/pyro_vae``).
ENV_CACHE = "PYRO_VAE_CACHE"


class DatasetNotFoundError(FileNotFoundError):
    """A data set is neither on disk nor downloadable."""


class CorruptDataError(ValueError):
    """A data file exists but is damaged or not what it should be."""


class DataCacheError(OSError):
    """The data cache cannot be written (read-only, full, ...)."""


def one_line(err: BaseException) -> str:
    """``Type: message`` of ``err`` on one line (torchvision's download errors span five)."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def data_dir(path: str | os.PathLike | None = None) -> Path | None:
    """The folder given, else ``$PYRO_VAE_DATA``, else ``None`` (download)."""
    path = path or os.environ.get(ENV_DATA)
    return Path(path) if path else None


def cache_dir() -> Path:
    """Writable folder for unpacked and downloaded data."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "pyro_vae")


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(files: Sequence[Path], **facts: str) -> dict:
    """What :func:`record_checksums` writes for ``files``: ``facts`` (what the files are) and
    each file's md5 by name (``None`` for a file that is not there)."""
    return {**facts, "md5": {f.name: file_md5(f) if f.is_file() else None for f in files}}


def record_checksums(record: Path, files: Sequence[Path], **facts: str) -> None:
    """Write ``record`` (atomically): the md5 of each of ``files`` and ``facts``, once the files
    are complete, so that :func:`checksums_match` can tell later that they are still the same."""
    atomic_write_json(record, checksums(files, **facts))


def checksums_match(record: Path, files: Sequence[Path], **facts: str) -> bool:
    """Whether ``record`` holds ``facts`` and the md5 every one of ``files`` has now (all present):
    ``False`` for a missing or unreadable record, a file changed, damaged or replaced since."""
    try:
        recorded = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    now = checksums(files, **facts)
    return None not in now["md5"].values() and recorded == now


@contextlib.contextmanager
def cache_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder/.lock`` inside (``flock``: the kernel drops it when the
    process dies), so that one process at a time rebuilds what ``folder`` holds; another waits,
    then finds it rebuilt. An ``OSError`` (a cache that cannot be written) is the caller's to name."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _unpacked_matches(gz: Path, unpacked: Path) -> bool:
    """Whether ``unpacked`` has the size (mod 2^32) and CRC-32 that the trailer of ``gz`` records."""
    if not unpacked.is_file():
        return False
    with open(gz, "rb") as f:
        f.seek(-8, os.SEEK_END)
        crc, size = struct.unpack("<II", f.read(8))
    if unpacked.stat().st_size % 2**32 != size:
        return False
    value = 0
    with open(unpacked, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            value = zlib.crc32(block, value)
    return value == crc


def cache_error(err: OSError, cache: Path) -> DataCacheError:
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DataCacheError(
            f"the data cache {cache} is not writable ({err.strerror}: {err.filename}); "
            f"set ${ENV_CACHE} to a writable folder"
        )
    return DataCacheError(f"cannot write the data cache {cache}: {err.strerror or err} ({err.filename})")


class RawFiles(Protocol):
    """A torchvision data set class as the cache reads it: ``resources``, its raw files as
    ``(file name or URL, md5)`` pairs (``datasets.MNIST``, ``datasets.FashionMNIST``)."""

    resources: ClassVar[Sequence[tuple[str, str]]]


def prepare_raw_files(cls: type[RawFiles], root: Path | None, cache: Path) -> None:
    """Make ``cache/<cls>/raw`` hold verified copies of ``cls.resources`` (torchvision's
    file names and md5s) and their unpacked files, from ``root`` when it is given.

    ``root`` given: it must hold every file with the right md5
    (:class:`DatasetNotFoundError` / :class:`CorruptDataError` otherwise); bad or
    missing cached copies are replaced from it. ``root`` ``None``: a bad cached copy
    is removed so that torchvision downloads it again. A cache that cannot be
    written raises :class:`DataCacheError`.
    """
    folder = cls.__name__
    resources = list(cls.resources)
    expected = ", ".join(name for name, _ in resources)
    raw = cache / folder / "raw"
    source = None
    if root is not None:
        source = root / folder / "raw"
        if not root.is_dir():
            raise DatasetNotFoundError(
                f"{folder} is not on disk: the data folder {root} (--data-dir or ${ENV_DATA}) does not exist; "
                f"expected the files {expected} in {source}"
            )
        missing = [name for name, _ in resources if not (source / name).is_file()]
        if missing:
            raise DatasetNotFoundError(
                f"{folder} is not on disk: {source} lacks {', '.join(missing)}; expected the files {expected} "
                f"there (torchvision's layout {folder}/raw/), or drop --data-dir / ${ENV_DATA} to download"
            )
        for name, md5 in resources:
            actual = file_md5(source / name)
            if actual != md5:
                raise CorruptDataError(
                    f"{source / name} is corrupt: its md5 is {actual}, torchvision's is {md5}; replace the file"
                )
    try:
        for name, md5 in resources:
            gz, unpacked = raw / name, raw / name.removesuffix(".gz")
            if not (gz.is_file() and file_md5(gz) == md5):
                unpacked.unlink(missing_ok=True)
                if source is None:
                    gz.unlink(missing_ok=True)  # torchvision downloads it again
                    continue
                raw.mkdir(parents=True, exist_ok=True)
                with open(source / name, "rb") as f:
                    atomic_write_stream(gz, f)
            if not _unpacked_matches(gz, unpacked):
                with gzip.open(gz, "rb") as f:
                    atomic_write_stream(unpacked, f)
    except OSError as err:
        if isinstance(err, DataCacheError) or err.filename is None or not str(err.filename).startswith(str(cache)):
            raise
        raise cache_error(err, cache) from None
