"""Minibatches: dicts of keyword arguments for a model and its guide.

``{"x": x}``, or ``{"x": x, "y": y}`` for a model that asks for labels.
:class:`MixedBatches` are the semi-supervised setting of Kingma et al. (2014):
with 100 labels among 50,000 points a plain minibatch of 100 rarely holds a
labelled one, so every minibatch is M - M_l unlabelled points (one pass over
them per epoch) plus M_l labelled ones (cycling through the shuffled labelled
points), and the labelled data are seen every step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

#: The label of a training point whose class is not given (``--num-labels``).
UNLABELLED = -1  # the label of a training point whose class is not given


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

    def __init__(
        self,
        data: torch.Tensor,
        batch_size: int,
        labelled_per_batch: int,
        labels: torch.Tensor,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
        binarize: bool = False,
    ) -> None:
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
        labelled = torch.cat(
            [self.labelled[torch.randperm(len(self.labelled), generator=self.generator)] for _ in range(passes)]
        )
        for i in range(steps):
            yield torch.cat(
                [
                    unlabelled[i * self.num_unlabelled : (i + 1) * self.num_unlabelled],
                    labelled[i * self.num_labelled : (i + 1) * self.num_labelled],
                ]
            )
