"""A user's data from a file or a folder (``pyro-vae train --data FILE``), converted by
:func:`pyro_vae.data.as_dataset`:

* ``.npz``: arrays named as the keys of a dict of data: ``train`` (or ``x``), and optionally
  ``test``, ``train_labels`` (or ``y``, ``labels``), ``test_labels``;
* ``.npy``: one array, the data ``(N, *x_shape)``;
* ``.pt``: a tensor, or a dict of tensors with those keys (read with ``weights_only=True``);
* a folder of images (PNG, JPEG, ...; all one size): greyscale images make one channel, and
  three channels once any image is in colour; a folder of class subfolders (as torchvision's
  ``ImageFolder``) labels each image by its subfolder, classes numbered in name order.

8-bit values (``uint8`` arrays, image pixels) are divided by 255.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyro_vae.data.dataset import Dataset
from pyro_vae.data.user import as_dataset

#: The file names of images a folder is read for.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def read_data(path: str | Path, **options: Any) -> Dataset:
    """The data in the file or folder ``path`` (see the module docstring) as a :class:`Dataset`;
    ``options`` go to :func:`~pyro_vae.data.as_dataset` (``binarize``, ``test_fraction``, ...)."""
    path = Path(path)
    if path.is_dir():
        return as_dataset(read_image_folder(path), **options)
    if not path.is_file():
        raise FileNotFoundError(f"no data file or folder at {path}")
    readers: dict[str, Callable[[Path], Any]] = {".npz": _read_npz, ".npy": np.load, ".pt": _read_pt}
    if path.suffix not in readers:
        raise ValueError(f"{path}: data files are .npz, .npy or .pt (or a folder of images), got {path.suffix!r}")
    try:
        contents = readers[path.suffix](path)
    except (OSError, ValueError, RuntimeError, EOFError) as err:
        raise ValueError(f"{path} is not a readable {path.suffix} file: {str(err).splitlines()[0]}") from None
    try:
        return as_dataset(contents, **options)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def _read_pt(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def read_image_folder(folder: Path) -> dict[str, torch.Tensor]:
    """``{"train": uint8 images (N, C, H, W)}``, with ``"train_labels"`` where ``folder`` holds
    class subfolders; images in sorted order, one error naming an image of another size."""
    from PIL import Image

    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    groups = [(c, _images(c)) for c in classes] if classes else [(folder, _images(folder))]
    files = [(label, f) for label, (_, found) in enumerate(groups) for f in found]
    if not files:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}), in it or in subfolders")
    images = []
    for _, f in files:
        with Image.open(f) as image:
            images.append(np.asarray(image.convert("L" if image.mode in ("1", "L", "LA") else "RGB")))
    size = images[0].shape[:2]
    for (_, f), pixels in zip(files, images):
        if pixels.shape[:2] != size:
            raise ValueError(
                f"{f} is {pixels.shape[1]}x{pixels.shape[0]} and {files[0][1]} is {size[1]}x{size[0]}; "
                "the images of a folder must be one size"
            )
    colour = any(image.ndim == 3 for image in images)
    stacked = np.stack([np.repeat(i[..., None], 3, -1) if colour and i.ndim == 2 else i for i in images])
    x = torch.from_numpy(stacked.reshape(len(images), *size, -1)).permute(0, 3, 1, 2).contiguous()
    found = {"train": x}
    if classes:
        found["train_labels"] = torch.tensor([label for label, _ in files])
    return found


def _images(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
