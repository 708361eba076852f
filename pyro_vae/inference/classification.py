"""The test error of a program that classifies (M2's q(y|x))."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from pyro.nn import PyroModule

from pyro_vae.models.program import member


def classifies(program: torch.nn.Module) -> bool:
    """Whether ``program`` has a classifier to score: a ``classify(x)`` method (M2's q(y|x))
    and labels ``y`` among its data keys."""
    return member(program, "classify") is not None and "y" in member(program, "data_keys")


@torch.no_grad()
def classification_error(
    program: PyroModule,
    batches: Iterable[dict[str, torch.Tensor]],
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """The fraction of data whose label ``y`` differs from ``program.classify(x)`` (M2's q(y|x)).

    ``reduce`` sums the counts over processes (each evaluating its shard), as in :func:`~pyro_vae.inference.evaluate.evaluate`.
    """
    wrong = count = 0
    was_training = program.training
    program.eval()
    try:
        for batch in batches:
            wrong += int((program.classify(batch["x"]) != batch["y"]).sum())
            count += len(batch["y"])
    finally:
        program.train(was_training)
    if reduce is not None:
        wrong, count = (int(v) for v in reduce(torch.tensor([wrong, count], dtype=torch.float64)).tolist())
    if count == 0:
        raise ValueError("classification_error() got no data")
    return wrong / count
