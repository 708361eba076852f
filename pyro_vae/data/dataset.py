"""The :class:`Dataset` type: train and test tensors, labels, and how to batch them.

MNIST and FashionMNIST are binarized as in the AEVB/IWAE literature: each
training image is re-binarized with a fresh Bernoulli draw every time it is
used (dynamic binarization); the test set is binarized once, with a fixed seed,
so that every evaluation sees the same binary test images. ``binarize`` holds for every split:
a copy made with ``binarize=False`` (``dataclasses.replace(data, binarize=False)``) holds the
grey test and validation images it was made from, not their binarized copies.

:meth:`Dataset.with_validation` holds a random part of the training set out as a validation
set (binarized once, with its own fixed seed, like the test set), for choosing hyperparameters
and stopping early without looking at the test set.

:meth:`Dataset.with_labels` keeps N training labels, balanced over classes,
and marks the others unknown (``y = -1``); ``train_batches(...,
labelled_per_batch=M_l)`` then puts M_l labelled points in every minibatch
(:class:`~pyro_vae.data.batches.MixedBatches`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from pyro_vae.data.batches import UNLABELLED, Batches, MixedBatches

#: The seed of the one binarization of the test images (training images are binarized anew at each use).
TEST_BINARIZATION_SEED = 0
#: The seed of the one binarization of the validation images.
VALIDATION_BINARIZATION_SEED = 1


@dataclass
class Dataset:
    """Train and test tensors of shape ``(N, *x_shape)`` with values in [0, 1].

    ``binarize`` marks data to be binarized by Bernoulli draws (dynamically for
    the training set); ``likelihood`` is the decoder the data set calls for;
    ``image_shape`` is ``(channels, height, width)`` for plotting. ``validation`` (and its
    labels) is a held-out part of the training data, or ``None`` (:meth:`with_validation`).
    ``fingerprint`` is the SHA-256 of a user's data (:func:`pyro_vae.data.as_dataset`), which
    checkpoints record so that a resume on other data is refused; ``None`` for a named data set.
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None
    test_labels: torch.Tensor | None
    image_shape: tuple[int, int, int]
    likelihood: str
    binarize: bool = False
    validation: torch.Tensor | None = None
    validation_labels: torch.Tensor | None = None
    fingerprint: str | None = field(default=None, compare=False)
    # split -> (the grey images given, their binarized copy); carried over by dataclasses.replace
    grey_sources: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_dataset(self)
        self.grey_sources = {
            split: pair
            for split, seed in (("test", TEST_BINARIZATION_SEED), ("validation", VALIDATION_BINARIZATION_SEED))
            if (pair := self._evaluation_images(split, seed)) is not None
        }

    def _evaluation_images(self, split: str, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Set ``self.<split>`` to the images evaluation sees: binarized once with ``seed`` if
        ``binarize``, else the grey ones. A split carried over from a copy (its binarized tensor
        itself) is made again from the grey images it came from, the same draws with the same
        seed; other tensors are new grey images. The (grey, binarized) pair, or ``None``."""
        x = getattr(self, split)
        grey, binary = self.grey_sources.get(split, (None, None))
        if x is not binary:
            grey = x
        if grey is not None and self.binarize:
            binary = torch.bernoulli(grey, generator=torch.Generator().manual_seed(seed))
            setattr(self, split, binary)
            return grey, binary
        setattr(self, split, grey)
        return None

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
        self,
        batch_size: int,
        generator: torch.Generator,
        device: str | torch.device = "cpu",
        keys: Sequence[str] = ("x",),
        shard: tuple[int, int] = (0, 1),
        labelled_per_batch: int = 0,
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
        return Batches(
            self.train, batch_size, device, generator=generator, binarize=self.binarize, labels=labels, shard=shard
        )

    def test_batches(
        self,
        batch_size: int,
        device: str | torch.device = "cpu",
        keys: Sequence[str] = ("x",),
        num: int | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> Batches:
        """Test minibatches in a fixed order (the first ``num`` test points if given);
        with ``shard=(r, W)`` only the points r, r + W, r + 2W, ... of them."""
        labels = self._labels(self.test_labels, keys)
        rank, world = shard
        test = self.test[:num][rank::world]
        return Batches(test, batch_size, device, labels=None if labels is None else labels[:num][rank::world])

    def validation_batches(
        self,
        batch_size: int,
        device: str | torch.device = "cpu",
        keys: Sequence[str] = ("x",),
        shard: tuple[int, int] = (0, 1),
    ) -> Batches:
        """Validation minibatches in a fixed order (with ``shard=(r, W)``: the points r, r + W, ...)."""
        if self.validation is None:
            raise ValueError(f"the data set {self.name!r} holds no validation set; make one with with_validation")
        labels = self._labels(self.validation_labels, keys)
        rank, world = shard
        return Batches(
            self.validation[rank::world], batch_size, device, labels=None if labels is None else labels[rank::world]
        )

    def with_validation(self, fraction: float, seed: int = 0) -> Dataset:
        """The same data with ``round(fraction * N)`` training points, drawn at random with
        ``seed``, moved to a validation set (their labels too); the order of the rest is kept."""
        if not 0 < fraction < 1:
            raise ValueError(f"the validation fraction must lie in (0, 1), got {fraction}")
        count = round(fraction * len(self.train))
        if not 1 <= count < len(self.train):
            raise ValueError(
                f"a validation fraction of {fraction} of the {len(self.train)} training points of {self.name!r} "
                f"leaves {count} for validation and {len(self.train) - count} for training; both need at least one"
            )
        held = torch.zeros(len(self.train), dtype=torch.bool)
        held[torch.randperm(len(self.train), generator=torch.Generator().manual_seed(seed))[:count]] = True
        labels = self.train_labels
        return replace(
            self,
            train=self.train[~held],
            train_labels=None if labels is None else labels[~held],
            validation=self.train[held],
            validation_labels=None if labels is None else labels[held],
        )

    def with_labels(self, num_labels: int, seed: int = 0) -> Dataset:
        """The same data with only ``num_labels`` training labels kept, the same number
        per class (chosen with ``seed``); the others become ``UNLABELLED`` (-1)."""
        if self.train_labels is None or (classes := self.num_classes) is None:
            raise ValueError(f"the data set {self.name!r} has no labels")
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


def check_dataset(data: Dataset) -> None:
    """Refuse a :class:`Dataset` whose parts do not fit together, in one line naming the part:
    train and test float tensors ``(N, *x_shape)`` with one ``x_shape`` and at least one datum
    each, one integer label per datum (or none), ``image_shape`` three sizes holding one datum."""
    if not isinstance(data.name, str):
        raise TypeError(f"a Dataset's name must be a str, got {data.name!r:.80}")
    for split in ("train", "test") if data.validation is None else ("train", "test", "validation"):
        _check_split(data, split)
    if data.validation is not None and data.validation.shape[1:] != data.train.shape[1:]:
        raise ValueError(
            f"Dataset {data.name!r}: validation holds data of shape {tuple(data.validation.shape[1:])} and train of "
            f"shape {tuple(data.train.shape[1:])}; both must be (N, *x_shape) with one x_shape"
        )
    if data.train.shape[1:] != data.test.shape[1:]:
        raise ValueError(
            f"Dataset {data.name!r}: train holds data of shape {tuple(data.train.shape[1:])} and test of shape "
            f"{tuple(data.test.shape[1:])}; both must be (N, *x_shape) with one x_shape"
        )
    for split in ("train", "test") if data.validation is None else ("train", "test", "validation"):
        _check_labels(data, split)
    _check_image_shape(data)
    if not isinstance(data.likelihood, str):
        raise TypeError(
            f"Dataset {data.name!r}: likelihood must be a likelihood's name (str), got {data.likelihood!r:.80}"
        )


def _check_split(data: Dataset, split: str) -> None:
    """``data.<split>`` is a float tensor ``(N, *x_shape)`` with N >= 1."""
    x = getattr(data, split)
    if not torch.is_tensor(x):
        raise TypeError(
            f"Dataset {data.name!r}: {split} must be a torch.Tensor of shape (N, *x_shape), got a "
            f"value of type {type(x).__name__}; convert it with torch.as_tensor({split}, dtype=torch.float32)"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"Dataset {data.name!r}: {split} must be a float tensor with values in [0, 1], got dtype {x.dtype}; "
            f"convert it, e.g. {split}.float() / 255 for 8-bit pixels"
        )
    if x.dim() < 2:
        raise ValueError(f"Dataset {data.name!r}: {split} must have shape (N, *x_shape), got {tuple(x.shape)}")
    if len(x) == 0:
        what = "training data" if split == "train" else "test data (evaluation and every metrics row use them)"
        raise ValueError(
            f"Dataset {data.name!r}: the {split} set is empty (shape {tuple(x.shape)}); give it some {what}"
        )


def _check_labels(data: Dataset, split: str) -> None:
    """``data.<split>_labels`` is ``None`` or an integer tensor of one label per datum of ``split``."""
    labels, count = getattr(data, f"{split}_labels"), len(getattr(data, split))
    integer = torch.is_tensor(labels) and not (
        labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool
    )
    if labels is None or (integer and tuple(labels.shape) == (count,)):
        return
    shown = (
        f"a tensor of shape {tuple(labels.shape)}, {labels.dtype}"
        if torch.is_tensor(labels)
        else f"a value of type {type(labels).__name__}"
    )
    raise ValueError(
        f"Dataset {data.name!r}: {split}_labels must be None or an integer tensor of shape ({count},), one label "
        f"per {split} datum, got {shown}"
    )


def _check_image_shape(data: Dataset) -> None:
    """``data.image_shape`` is (channels, height, width) holding exactly one datum's values."""
    shape, values = data.image_shape, math.prod(data.train.shape[1:])
    sizes = (
        isinstance(shape, (tuple, list))
        and len(shape) == 3
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)
    )
    if not sizes or math.prod(shape) != values:
        raise ValueError(
            f"Dataset {data.name!r}: image_shape must be (channels, height, width) holding one datum's "
            f"{values} values (x_shape {tuple(data.train.shape[1:])}), got {shape!r:.80}"
        )
