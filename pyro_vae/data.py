"""Data sets: binarized MNIST, FashionMNIST, Frey Face and a synthetic set.

Where data come from:

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

MNIST and FashionMNIST are binarized as in the AEVB/IWAE literature: each
training image is re-binarized with a fresh Bernoulli draw every time it is
used (dynamic binarization); the test set is binarized once, with a fixed seed,
so that every evaluation sees the same binary test images.

Minibatches are dicts of keyword arguments for a model and its guide:
``{"x": x}``, or ``{"x": x, "y": y}`` for a model that asks for labels
(``keys=("x", "y")``). :meth:`Dataset.with_labels` keeps N training labels,
balanced over classes, and marks the others unknown (``y = -1``): the
semi-supervised setting of Kingma et al. (2014). With 100 labels among
50,000 points a plain minibatch of 100 rarely holds a labelled one;
``train_batches(..., labelled_per_batch=M_l)`` makes every minibatch M - M_l
unlabelled points (one pass over them per epoch) plus M_l labelled ones
(cycling through the shuffled labelled points), so the labelled data are seen
every step.

Data sets are registered by name in :data:`DATASETS` (a loader taking the data folder).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import math
import os
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from pyro_vae.files import atomic_write_stream
from pyro_vae.registry import Registry

UNLABELLED = -1  # the label of a training point whose class is not given
ENV_DATA = "PYRO_VAE_DATA"
ENV_CACHE = "PYRO_VAE_CACHE"
TEST_BINARIZATION_SEED = 0
FREY_URL = "https://cs.nyu.edu/~roweis/data/frey_rawface.mat"
FREY_MD5 = "5aeb024d42b8a6091f30e5eb18c8a48d"


class DatasetNotFoundError(FileNotFoundError):
    """A data set is neither on disk nor downloadable."""


class CorruptDataError(ValueError):
    """A data file exists but is damaged or not what it should be."""


class DataCacheError(OSError):
    """The data cache cannot be written (read-only, full, ...)."""


@dataclass
class Dataset:
    """Train and test tensors of shape ``(N, *x_shape)`` with values in [0, 1].

    ``binarize`` marks data to be binarized by Bernoulli draws (dynamically for
    the training set); ``likelihood`` is the decoder the data set calls for;
    ``image_shape`` is ``(channels, height, width)`` for plotting.
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None
    test_labels: torch.Tensor | None
    image_shape: tuple[int, int, int]
    likelihood: str
    binarize: bool = False

    def __post_init__(self) -> None:
        if self.binarize:
            generator = torch.Generator().manual_seed(TEST_BINARIZATION_SEED)
            self.test = torch.bernoulli(self.test, generator=generator)

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def num_classes(self) -> int | None:
        """Number of classes of the labels (``None`` without labels)."""
        labels = self.test_labels if self.test_labels is not None else self.train_labels
        return None if labels is None else int(labels.max()) + 1

    def _labels(self, labels: torch.Tensor | None, keys: Sequence[str]) -> torch.Tensor | None:
        if "y" not in keys:
            return None
        if labels is None:
            raise ValueError(f"the data set {self.name!r} has no labels, and the model asks for y")
        return labels

    def train_batches(
        self, batch_size: int, generator: torch.Generator, device: str | torch.device = "cpu",
        keys: Sequence[str] = ("x",), shard: tuple[int, int] = (0, 1), labelled_per_batch: int = 0,
    ) -> Batches:
        """Shuffled training minibatches (short last batch dropped), binarized afresh;
        ``keys`` names the entries of each batch (``"x"``, ``"y"``). With ``shard=(r, W)``
        each batch is process r's part of the global one (see :class:`Batches`). With
        ``labelled_per_batch`` > 0, each batch is that many labelled points plus
        unlabelled ones (:class:`MixedBatches`; one process only)."""
        labels = self._labels(self.train_labels, keys)
        if labelled_per_batch:
            if labels is None:
                raise ValueError("labelled_per_batch needs a model of labelled data (keys with 'y')")
            if shard[1] > 1:
                raise ValueError("labelled_per_batch is not supported on several processes yet")
            return MixedBatches(self.train, batch_size, labelled_per_batch, labels, device, generator, self.binarize)
        return Batches(self.train, batch_size, device, generator=generator, binarize=self.binarize,
                       labels=labels, shard=shard)

    def test_batches(
        self, batch_size: int, device: str | torch.device = "cpu", keys: Sequence[str] = ("x",),
        num: int | None = None, shard: tuple[int, int] = (0, 1),
    ) -> Batches:
        """Test minibatches in a fixed order (the first ``num`` test points if given);
        with ``shard=(r, W)`` only the points r, r + W, r + 2W, ... of them."""
        labels = self._labels(self.test_labels, keys)
        rank, world = shard
        test = self.test[:num][rank::world]
        return Batches(test, batch_size, device, labels=None if labels is None else labels[:num][rank::world])

    def with_labels(self, num_labels: int, seed: int = 0) -> Dataset:
        """The same data with only ``num_labels`` training labels kept, the same number
        per class (chosen with ``seed``); the others become ``UNLABELLED`` (-1)."""
        if self.train_labels is None:
            raise ValueError(f"the data set {self.name!r} has no labels")
        classes = self.num_classes
        if num_labels < classes or num_labels % classes:
            raise ValueError(f"num_labels must be a positive multiple of the {classes} classes, got {num_labels}")
        generator = torch.Generator().manual_seed(seed)
        keep = []
        for c in range(classes):
            members = (self.train_labels == c).nonzero().squeeze(-1)
            if len(members) < num_labels // classes:
                raise ValueError(f"class {c} has only {len(members)} training points")
            keep.append(members[torch.randperm(len(members), generator=generator)[: num_labels // classes]])
        labels = torch.full_like(self.train_labels, UNLABELLED)
        index = torch.cat(keep)
        labels[index] = self.train_labels[index]
        return replace(self, train_labels=labels)  # re-binarizing the binary test set changes nothing


class Batches:
    """Iterates over minibatches of an in-memory tensor, each a dict ``{"x": ...}``
    (plus ``"y"`` when ``labels`` are given).

    With a ``generator`` the order is shuffled each pass and the short last
    batch is dropped (so every SVI step sees the same plate size); with
    ``binarize`` every batch is a fresh Bernoulli draw from the grey levels.

    ``shard=(r, W)`` makes this process r of W (:mod:`pyro_vae.training.distributed`):
    every process draws the same permutation and binarization from the same
    generator, so the global batch of ``batch_size`` points is the one-process
    run's, and yields its rows r, r + W, r + 2W, ... (``batch_size / W`` of them, the
    assignment ``DistributedSampler`` makes), on ``device`` only those.
    """

    def __init__(
        self,
        data: torch.Tensor,
        batch_size: int,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
        binarize: bool = False,
        labels: torch.Tensor | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        rank, world = shard
        if not 0 <= rank < world:
            raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}")
        if generator is not None and batch_size % world:
            raise ValueError(
                f"batch_size={batch_size} is not divisible by the {world} processes: each takes "
                "batch_size / processes points of the global minibatch"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if generator is not None and batch_size > len(data):
            raise ValueError(f"batch_size={batch_size} exceeds the {len(data)} training points")
        self.data, self.batch_size, self.device = data, batch_size, device
        self.generator, self.binarize, self.labels = generator, binarize, labels
        self.shard = slice(rank, None, world)

    def __len__(self) -> int:
        if self.generator is None:
            return math.ceil(len(self.data) / self.batch_size)
        return len(self.data) // self.batch_size

    def indices(self) -> Iterator[slice | torch.Tensor]:
        """The rows of each batch, in order."""
        order = None if self.generator is None else torch.randperm(len(self.data), generator=self.generator)
        for i in range(len(self)):
            index = slice(i * self.batch_size, (i + 1) * self.batch_size)
            yield index if order is None else order[index]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for index in self.indices():
            x = self.data[index]
            if self.binarize:  # the whole global batch: the generator advances as on one process
                x = torch.bernoulli(x, generator=self.generator)
            batch = {"x": x} if self.labels is None else {"x": x, "y": self.labels[index]}
            if self.generator is not None:
                batch = {key: value[self.shard] for key, value in batch.items()}
            yield {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}


class MixedBatches(Batches):
    """Semi-supervised minibatches: ``batch_size - labelled_per_batch`` unlabelled points
    (label ``UNLABELLED``; one shuffled pass over them per epoch, short last batch
    dropped) and ``labelled_per_batch`` labelled ones, drawn by cycling through
    reshuffled passes over the labelled points, so every step sees labels.

    Each batch is one data plate scaled by N/M: the labelled points weigh
    ``(M_l / M) / (N_l / N)`` times their share of the full-data bound (a
    reweighting of J towards the labelled data, common in M2 implementations).
    """

    def __init__(self, data: torch.Tensor, batch_size: int, labelled_per_batch: int, labels: torch.Tensor,
                 device: str | torch.device = "cpu", generator: torch.Generator | None = None,
                 binarize: bool = False) -> None:
        super().__init__(data, batch_size, device, generator, binarize, labels)
        if generator is None:
            raise ValueError("MixedBatches are training batches: pass a generator")
        if not 0 < labelled_per_batch < batch_size:
            raise ValueError(f"labelled_per_batch must lie in [1, batch_size={batch_size}), got {labelled_per_batch}")
        self.labelled = (labels != UNLABELLED).nonzero().squeeze(-1)
        self.unlabelled = (labels == UNLABELLED).nonzero().squeeze(-1)
        self.num_labelled, self.num_unlabelled = labelled_per_batch, batch_size - labelled_per_batch
        if len(self.labelled) == 0:
            raise ValueError("labelled_per_batch needs labelled training points (set num_labels)")
        if len(self.unlabelled) < self.num_unlabelled:
            raise ValueError(f"only {len(self.unlabelled)} unlabelled points for {self.num_unlabelled} per batch")

    def __len__(self) -> int:
        return len(self.unlabelled) // self.num_unlabelled

    def indices(self) -> Iterator[torch.Tensor]:
        steps = len(self)
        unlabelled = self.unlabelled[torch.randperm(len(self.unlabelled), generator=self.generator)]
        passes = math.ceil(steps * self.num_labelled / len(self.labelled))
        labelled = torch.cat([
            self.labelled[torch.randperm(len(self.labelled), generator=self.generator)] for _ in range(passes)
        ])
        for i in range(steps):
            yield torch.cat([
                unlabelled[i * self.num_unlabelled: (i + 1) * self.num_unlabelled],
                labelled[i * self.num_labelled: (i + 1) * self.num_labelled],
            ])


def data_dir(path: str | os.PathLike | None = None) -> Path | None:
    """The folder given, else ``$PYRO_VAE_DATA``, else ``None`` (download)."""
    path = path or os.environ.get(ENV_DATA)
    return Path(path) if path else None


def cache_dir() -> Path:
    """Writable folder for unpacked and downloaded data."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "pyro_vae")


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def _cache_error(err: OSError, cache: Path) -> DataCacheError:
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DataCacheError(
            f"the data cache {cache} is not writable ({err.strerror}: {err.filename}); "
            f"set ${ENV_CACHE} to a writable folder"
        )
    return DataCacheError(f"cannot write the data cache {cache}: {err.strerror or err} ({err.filename})")


def prepare_raw_files(cls: type, root: Path | None, cache: Path) -> None:
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
    source = None if root is None else root / folder / "raw"
    if root is not None:
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
            actual = _md5(source / name)
            if actual != md5:
                raise CorruptDataError(
                    f"{source / name} is corrupt: its md5 is {actual}, torchvision's is {md5}; replace the file"
                )
    try:
        for name, md5 in resources:
            gz, unpacked = raw / name, raw / name.removesuffix(".gz")
            if not (gz.is_file() and _md5(gz) == md5):
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
        raise _cache_error(err, cache) from None


def _torchvision_images(name: str, root: Path | None) -> Dataset:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[name]
    folder = cls.__name__
    cache = cache_dir()
    prepare_raw_files(cls, root, cache)
    try:
        splits = [cls(str(cache), train=train, download=True) for train in (True, False)]
    except Exception as err:  # torchvision raises URLError, RuntimeError, ...
        if root is not None:  # prepare_raw_files verified root and the cache
            raise DatasetNotFoundError(f"{folder} could not be read from the cache {cache / folder / 'raw'}: {err}") from None
        expected = ", ".join(f for f, _ in cls.resources)
        raise DatasetNotFoundError(
            f"{cls.__name__} is not on disk and could not be downloaded ({err}). "
            f"Expected the files {expected} in {cache / folder / 'raw'}; point --data-dir or ${ENV_DATA} "
            f"at a folder holding {folder}/raw/."
        ) from None
    (train, test) = splits
    return Dataset(
        name=name,
        train=train.data.reshape(len(train.data), -1).float() / 255.0,
        test=test.data.reshape(len(test.data), -1).float() / 255.0,
        train_labels=train.targets.clone(),
        test_labels=test.targets.clone(),
        image_shape=(1, 28, 28),
        likelihood="bernoulli",
        binarize=True,
    )


def load_frey_face(root: Path | None = None, num_test: int = 200, seed: int = 0) -> Dataset:
    """Frey Face: 1965 grey 28x20 frames scaled to [0, 1]; a fixed random test split."""
    from torchvision.datasets.utils import download_url

    if root is not None:  # a given folder is used, never silently replaced by the cache
        path = root / "frey" / "frey_rawface.mat"
        if not path.is_file():
            raise DatasetNotFoundError(
                f"Frey Face is not on disk: the data folder {root} (--data-dir or ${ENV_DATA}) lacks {path} "
                "(MATLAB variable 'ff', uint8, 560 x 1965); add it, or drop --data-dir to download"
            )
    else:
        path = cache_dir() / "frey" / "frey_rawface.mat"
        try:  # checks the md5 of a cached copy and downloads again when it is wrong
            download_url(FREY_URL, str(path.parent), path.name, FREY_MD5)
        except Exception as err:
            raise DatasetNotFoundError(
                f"Frey Face is not on disk and could not be downloaded ({err}). "
                f"Expected the file {path} (MATLAB variable 'ff', uint8, 560 x 1965)."
            ) from None
    faces = torch.from_numpy(read_frey_mat(path).T.copy()).float() / 255.0
    if len(faces) <= num_test:
        raise CorruptDataError(f"{path} holds {len(faces)} faces, too few for {num_test} test faces and a training set")
    order = torch.randperm(len(faces), generator=torch.Generator().manual_seed(seed))
    return Dataset(
        name="frey",
        train=faces[order[num_test:]],
        test=faces[order[:num_test]],
        train_labels=None,
        test_labels=None,
        image_shape=(1, 28, 20),
        likelihood="gaussian",
    )


def read_frey_mat(path: Path):
    """The 560 x N uint8 array ``ff`` of a Frey Face ``.mat`` file, or :class:`CorruptDataError`
    naming the file and what is wrong (not a MATLAB file, no ``ff``, wrong shape or type)."""
    import numpy as np
    import scipy.io

    try:
        contents = scipy.io.loadmat(path)
    except OSError as err:
        if err.filename is None:  # scipy's "could not read bytes": a truncated file, not a missing one
            raise CorruptDataError(f"{path} is truncated or unreadable ({err})") from None
        raise
    except Exception as err:  # MatReadError, ValueError, TypeError, ... from a damaged file
        raise CorruptDataError(f"{path} is not a readable MATLAB file ({type(err).__name__}: {err})") from None
    if "ff" not in contents:
        names = sorted(k for k in contents if not k.startswith("__"))
        raise CorruptDataError(f"{path} has no variable 'ff' (it holds {names}); expected the Frey Face file")
    faces = contents["ff"]
    if not isinstance(faces, np.ndarray) or faces.ndim != 2 or faces.shape[0] != 560 or faces.shape[1] < 2:
        shape = getattr(faces, "shape", None)
        raise CorruptDataError(f"{path}: variable 'ff' has shape {shape}; expected 560 x N images of 28 x 20 pixels")
    if not np.issubdtype(faces.dtype, np.number):
        raise CorruptDataError(f"{path}: variable 'ff' has type {faces.dtype}; expected uint8 pixels")
    return faces


def make_synthetic(num_train: int = 2000, num_test: int = 500, seed: int = 0) -> Dataset:
    """Binary 8x8 images from a fixed random non-linear decoder of a 2-D latent.

    ``z ~ N(0, I_2)``, ``x ~ Bernoulli(sigmoid(W2 tanh(W1 z)))``; labels are the
    quadrant of z. Deterministic given ``seed``; needs no files.
    """
    g = torch.Generator().manual_seed(seed)
    w1 = 2.0 * torch.randn(2, 16, generator=g)
    w2 = 2.0 * torch.randn(16, 64, generator=g)
    z = torch.randn(num_train + num_test, 2, generator=g)
    probs = torch.sigmoid(torch.tanh(z @ w1) @ w2)
    x = torch.bernoulli(probs, generator=g)
    labels = (z[:, 0] > 0).long() * 2 + (z[:, 1] > 0).long()
    return Dataset(
        name="synthetic",
        train=x[:num_train],
        test=x[num_train:],
        train_labels=labels[:num_train],
        test_labels=labels[num_train:],
        image_shape=(1, 8, 8),
        likelihood="bernoulli",
    )


DATASETS: Registry[Callable[[Path | None], Dataset]] = Registry("dataset")
DATASETS.register("mnist", lambda root: _torchvision_images("mnist", root),
                  help="binarized MNIST (dynamic binarization), Bernoulli decoder")
DATASETS.register("fashion-mnist", lambda root: _torchvision_images("fashion-mnist", root),
                  help="binarized Fashion-MNIST, Bernoulli decoder")
DATASETS.register("frey", load_frey_face, help="Frey Face, 1965 faces of 28x20, Gaussian decoder")
DATASETS.register("synthetic", lambda root: make_synthetic(),
                  help="8x8 binary images of a 2-D latent, no files needed")


def load_dataset(name: str, data_dir_: str | os.PathLike | None = None) -> Dataset:
    """Load the registered data set ``name`` (see the module docstring for where files come from)."""
    return DATASETS[name](data_dir(data_dir_))
