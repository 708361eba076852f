"""Per-source loaders (torchvision's MNIST and FashionMNIST, Frey Face, a synthetic set)
and the :data:`DATASETS` registry: a loader by name, taking the data folder.

torchvision is imported inside the loaders that read its data sets, so that the
registry (and the command line built from it) loads without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from pyro_vae.data.cache import (
    ENV_DATA,
    CorruptDataError,
    DatasetNotFoundError,
    cache_dir,
    data_dir,
    one_line,
    prepare_raw_files,
)
from pyro_vae.data.dataset import Dataset
from pyro_vae.registry import Registry

#: Where Frey Face is downloaded from without a data folder (Roweis' page).
FREY_URL = "https://cs.nyu.edu/~roweis/data/frey_rawface.mat"
#: The md5 of ``frey_rawface.mat``, checked before the file is used.
FREY_MD5 = "5aeb024d42b8a6091f30e5eb18c8a48d"


def _torchvision_images(name: str, root: Path | None, binarize: bool = True) -> Dataset:
    """MNIST or Fashion-MNIST scaled to [0, 1]: binarized (``binarize``, a Bernoulli draw per use
    of a training image, one fixed draw of the test set) or grey levels."""
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[name]
    folder = cls.__name__
    cache = cache_dir()
    prepare_raw_files(cls, root, cache)
    try:
        splits = [cls(str(cache), train=train, download=True) for train in (True, False)]
    except Exception as err:  # torchvision raises URLError, RuntimeError, ...
        if root is not None:  # prepare_raw_files verified root and the cache
            raise DatasetNotFoundError(
                f"{folder} could not be read from the cache {cache / folder / 'raw'}: {one_line(err)}"
            ) from None
        expected = ", ".join(f for f, _ in cls.resources)
        raise DatasetNotFoundError(
            f"{cls.__name__} is not on disk and could not be downloaded ({one_line(err)}). "
            f"Expected the files {expected} in {cache / folder / 'raw'}; point --data-dir or ${ENV_DATA} "
            f"at a folder holding {folder}/raw/."
        ) from None
    (train, test) = splits
    return Dataset(
        name=name if binarize else f"{name}-grey",
        train=train.data.reshape(len(train.data), -1).float() / 255.0,
        test=test.data.reshape(len(test.data), -1).float() / 255.0,
        train_labels=train.targets.clone(),
        test_labels=test.targets.clone(),
        image_shape=(1, 28, 28),
        likelihood="bernoulli",
        binarize=binarize,
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
                f"Frey Face is not on disk and could not be downloaded ({one_line(err)}). "
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


#: The data sets by name (``--dataset``): functions of the data folder (or ``None``) returning a :class:`Dataset`.
DATASETS: Registry[Callable[[Path | None], Dataset]] = Registry("dataset")
DATASETS.register(
    "mnist",
    lambda root: _torchvision_images("mnist", root),
    help="binarized MNIST (dynamic binarization), Bernoulli decoder",
)
DATASETS.register(
    "fashion-mnist",
    lambda root: _torchvision_images("fashion-mnist", root),
    help="binarized Fashion-MNIST, Bernoulli decoder",
)
DATASETS.register(
    "mnist-grey",
    lambda root: _torchvision_images("mnist", root, binarize=False),
    help="grey-level MNIST (train and test images not binarized), Bernoulli decoder (the cross-entropy)",
)
DATASETS.register(
    "fashion-mnist-grey",
    lambda root: _torchvision_images("fashion-mnist", root, binarize=False),
    help="grey-level Fashion-MNIST (not binarized), Bernoulli decoder (the cross-entropy)",
)
DATASETS.register("frey", load_frey_face, help="Frey Face, 1965 faces of 28x20, Gaussian decoder")
DATASETS.register("synthetic", lambda root: make_synthetic(), help="8x8 binary images of a 2-D latent, no files needed")


def load_dataset(name: str, data_dir_: str | os.PathLike | None = None) -> Dataset:
    """Load the registered data set ``name`` (see the module docstring for where files come from)."""
    return DATASETS[name](data_dir(data_dir_))
