"""Evaluation: ELBO, the K-sample IWAE bound, and importance-sampled log p(x).

For a model p(x, z) and guide q(z|x), the importance weights are
``log w_k = log p(x, z_k) - log q(z_k|x)`` with ``z_k ~ q(z|x)``
(:mod:`pyro_vae.inference.log_weights`). Then

* ``mean_k log w_k`` is an unbiased estimate of the ELBO,
* ``log (1/K) sum_k w_k`` is the K-sample IWAE bound (Burda et al. 2016), whose
  expectation increases to log p(x) as K grows; with K = 5000 it is the
  importance-sampled estimate of the marginal likelihood reported in papers.

This works on any Pyro model/guide pair whose per-datum sites lie in the data
plate (``data_plate_name``, at ``dim=-1``) inside at most ``max_plate_nesting``
plates. A datum's weight sums the log densities of *every* site inside the
data plate, summed over the datum's inner plates (pixels, a second latent
layer). Discrete latents the guide can enumerate are summed out exactly; those
without enumeration support are sampled like continuous ones. The K samples are
drawn in a vectorized particle plate, in chunks so that memory stays bounded, and
combined in log space.

A program with latents outside the data plate (shared by all data) has no per-datum
log p(x); :func:`evaluate` then gives the joint log p(x_1, ..., x_n) / n of the data
(:mod:`pyro_vae.inference.joint`). Either way the result is one :class:`Evaluation`,
whose ``joint`` field says which the estimate is.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyro
import torch
from pyro.infer.util import is_validation_enabled
from tqdm import tqdm

from pyro_vae.inference.algorithms import ParamScope
from pyro_vae.inference.joint import global_sites, joint_bounds
from pyro_vae.inference.log_weights import log_weights
from pyro_vae.models.program import Program, member
from pyro_vae.validation import COUNT, MemoryRefusal, check_arguments, check_pass_fits


@dataclass(frozen=True)
class Evaluation:
    """The bounds of a program on some data, in nats per datum.

    :param elbo: the mean of the K log-weights (the ELBO, estimated with K samples).
    :param log_px: their log-mean-exp, the K-sample IWAE bound: the importance-sampled estimate
        of the mean log p(x_i) per datum, or with ``joint`` of log p(x_1, ..., x_n) / n.
    :param joint: whether the program has latents shared by all data, so that the estimate is
        of the joint log p(x_1, ..., x_n) / n (log p(x_i) alone is not defined then).
    :param count: the number n of data.
    :param num_samples: K.
    """

    elbo: float
    log_px: float
    joint: bool
    count: int
    num_samples: int

    def __getitem__(self, key: str) -> float:
        """The dict access of pyro_vae 0.1 (``result["log_px"]``, ``result["log_p_data"]``), deprecated."""
        warnings.warn(
            f"evaluate(...)[{key!r}] is deprecated; read the attribute: evaluate(...).{_ATTRIBUTES.get(key, key)}",
            DeprecationWarning,
            stacklevel=2,
        )
        if key not in _ATTRIBUTES:
            raise KeyError(key)
        return getattr(self, _ATTRIBUTES[key])


_ATTRIBUTES = {"elbo": "elbo", "log_px": "log_px", "log_p_data": "log_px"}


def log_importance_weights(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int,
    max_plate_nesting: int = 1,
    *,
    data_plate_name: str = "data",
    **kwargs,
) -> torch.Tensor:
    """``log p(x, z_k) - log q(z_k|x)`` for ``num_samples`` draws, shape ``(num_samples, batch)``
    (enumerated discrete latents summed out); ``kwargs`` go to model and guide."""
    _check_batch(model, guide, x, max_plate_nesting, data_plate_name, kwargs)
    return log_weights(model, guide, x, num_samples, max_plate_nesting, data_plate_name, kwargs)[0]


def importance_bounds(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int,
    chunk_size: int = 500,
    max_plate_nesting: int = 1,
    *,
    data_plate_name: str = "data",
    **kwargs,
) -> dict[str, torch.Tensor]:
    """Per-datum ``elbo`` and ``log_px`` (log-mean-exp of ``num_samples`` weights), each ``(batch,)``.

    The weights are drawn ``chunk_size`` at a time; only per-chunk
    log-sum-exps are kept, so memory does not grow with ``num_samples``; a pass
    of ``len(x)`` data x ``chunk_size`` samples too big for the device's memory is
    refused up front (:func:`~pyro_vae.validation.check_pass_fits`), as is a program with
    latents outside the data plate (it has no per-datum bound: :func:`evaluate` gives its joint one).
    ``kwargs`` (e.g. labels ``y``) go to model and guide.
    """
    check_arguments(
        importance_bounds,
        x=x,
        num_samples=num_samples,
        chunk_size=chunk_size,
        max_plate_nesting=max_plate_nesting,
        data_plate_name=data_plate_name,
    )
    COUNT.check(num_samples=num_samples, chunk_size=chunk_size)
    _check_batch(model, guide, x, max_plate_nesting, data_plate_name, kwargs)
    return _importance_bounds(model, guide, x, num_samples, chunk_size, max_plate_nesting, data_plate_name, kwargs)


def _check_batch(
    model: Callable, guide: Callable, x: torch.Tensor, max_plate_nesting: int, data_plate_name: str, kwargs: dict
) -> None:
    """Refuse a batch with no data and a program with latents outside the data plate, by name."""
    if not torch.is_tensor(x) or x.dim() == 0:
        raise ValueError(f"x must be a tensor with a batch dimension, got {x!r:.80}")
    if x.shape[0] == 0:
        raise ValueError(f"x holds no data: an empty batch of shape {tuple(x.shape)}")
    sites = global_sites(model, guide, x, max_plate_nesting, data_plate_name=data_plate_name, **kwargs)
    if sites:
        raise ValueError(_per_datum_refusal(sites))


def _per_datum_refusal(sites: list[str]) -> str:
    return (
        f"the sites {sites} lie outside the data plate (latents shared by all data), so log p(x) per datum "
        "is not defined; evaluate(program, batches) gives the joint log p(x_1, ..., x_n) / n instead"
    )


def _importance_bounds(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int,
    chunk_size: int,
    max_plate_nesting: int,
    data_plate_name: str,
    kwargs: dict,
) -> dict[str, torch.Tensor]:
    """:func:`importance_bounds` on a batch already checked."""
    check_pass_fits(x.shape[0], min(chunk_size, num_samples), x[0].numel(), x.device)
    lse_chunks, sum_elbo = [], torch.zeros(x.shape[0], device=x.device)
    for start in range(0, num_samples, chunk_size):
        k = min(chunk_size, num_samples - start)
        log_w, elbo, _ = log_weights(model, guide, x, k, max_plate_nesting, data_plate_name, kwargs)
        lse_chunks.append(torch.logsumexp(log_w, dim=0))
        sum_elbo += elbo.sum(0)
    log_px = torch.logsumexp(torch.stack(lse_chunks), dim=0) - math.log(num_samples)
    return {"elbo": sum_elbo / num_samples, "log_px": log_px}


@contextmanager
def _vectorized(num_samples: int, max_plate_nesting: int) -> Iterator[None]:
    """Turn a shape error of a pass with ``num_samples`` particles into one that says why (the
    program ran on one sample, see :func:`global_sites`) and how to write it."""
    try:
        yield
    except MemoryRefusal:
        raise
    except (RuntimeError, ValueError) as error:
        if "out of memory" in str(error) or not re.search(r"shape|size|dimension", str(error), re.IGNORECASE):
            raise
        raise ValueError(
            f"the program runs on one sample but not on {num_samples} drawn at once in a plate at "
            f"dim={-1 - max_plate_nesting}, left of its own plates ({str(error).splitlines()[0]}); write it so that its tensors "
            "broadcast over extra leading dimensions (e.g. decoder(z) + b, not b.expand(len(x), -1))"
        ) from error


def evaluate(
    program: Program,
    batches: Iterable[torch.Tensor | dict[str, torch.Tensor]],
    num_samples: int = 5000,
    chunk_size: int = 500,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    progress: bool = False,
) -> Evaluation:
    """Mean per-datum ELBO and log p(x) estimate (nats) over ``batches`` of data: an :class:`Evaluation`.

    A batch is ``x`` or a dict of the program's data (``{"x": ..., "y": ...}``).
    ``elbo`` averages the same ``num_samples`` weights, so it is the ELBO with
    ``num_samples`` Monte Carlo samples; ``log_px`` is the IWAE bound with
    K = ``num_samples``. ``reduce`` sums the tensor ``(sum elbo, sum log_px, count)``
    over processes when each evaluates its shard of the data (then every
    process gets the means over all shards, see :mod:`pyro_vae.training.distributed`).

    A program with latents outside the data plate (:func:`~pyro_vae.inference.joint.global_sites`,
    looked for on the first batch) gets :func:`~pyro_vae.inference.joint.joint_bounds` instead:
    ``log_px`` is then the joint log p(x_1, ..., x_n) / n with its global latents sampled jointly
    (``joint=True``), evaluated on one process (``reduce`` must be ``None``).

    With ``progress``, a tqdm bar on stderr counts the batches as they are read.
    """
    if not isinstance(program, torch.nn.Module):  # a Program is a module: its parameters, its mode
        raise TypeError(f"program must be a torch.nn.Module with model and guide, got {type(program).__name__}")
    check_arguments(evaluate, num_samples=num_samples, chunk_size=chunk_size)
    COUNT.check(num_samples=num_samples, chunk_size=chunk_size)
    batches = tqdm(batches, desc=f"evaluate, K={num_samples}", unit="batch", disable=not progress, leave=False)
    mpn, data_plate_name = program.max_plate_nesting, member(program, "data_plate_name")
    totals = {"elbo": 0.0, "log_px": 0.0}
    count = 0
    was_training = program.training
    program.eval()
    try:
        with ParamScope(program.parameters()):
            data = (_as_dict(i, batch) for i, batch in enumerate(batches))
            first = next(data, None)  # None: no data (an empty shard: the sums below are then zero)
            sites = (
                []
                if first is None
                else global_sites(
                    program.model,
                    program.guide,
                    first["x"],
                    mpn,
                    data_plate_name=data_plate_name,
                    **{key: value for key, value in first.items() if key != "x"},
                )
            )
            if sites:
                if reduce is not None:
                    raise ValueError(f"a program with global latents {sites} is evaluated on one process, not sharded")
                assert first is not None  # the sites were looked for on it (for the type checker)
                shared = [first, *data]
                with _vectorized(num_samples, mpn):
                    elbo, log_p = joint_bounds(
                        program.model,
                        program.guide,
                        shared,
                        num_samples,
                        sites,
                        chunk_size,
                        mpn,
                        data_plate_name=data_plate_name,
                    )
                return Evaluation(elbo, log_p, True, sum(b["x"].shape[0] for b in shared), num_samples)
            for i, batch in enumerate(itertools.chain([first] if first else [], data)):
                x = batch.pop("x")
                # Pyro's validation checks the first batch (as training checks its first step)
                with pyro.validation_enabled(is_validation_enabled() and i == 0), _vectorized(num_samples, mpn):
                    bounds = _importance_bounds(
                        program.model, program.guide, x, num_samples, chunk_size, mpn, data_plate_name, batch
                    )
                for key in totals:
                    totals[key] += bounds[key].sum().item()
                count += x.shape[0]
    finally:
        program.train(was_training)
    if reduce is not None:
        *sums, count = reduce(torch.tensor([*totals.values(), count], dtype=torch.float64)).tolist()
        totals = dict(zip(totals, sums))
    if count == 0:
        raise ValueError("evaluate() got no data")
    return Evaluation(totals["elbo"] / count, totals["log_px"] / count, False, int(count), num_samples)


def _as_dict(i: int, batch: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Batch ``i`` as a new dict of the model's arguments, ``x`` first."""
    if not (torch.is_tensor(batch) or isinstance(batch, dict) and "x" in batch):
        raise TypeError(f"evaluate: batch {i} must be a tensor x or a dict with x, got {batch!r:.80}")
    return dict(batch) if isinstance(batch, dict) else {"x": batch}
