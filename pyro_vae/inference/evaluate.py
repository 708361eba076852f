"""Evaluation: ELBO, the K-sample IWAE bound, and importance-sampled log p(x).

For a model p(x, z) and guide q(z|x), the importance weights are
``log w_k = log p(x, z_k) - log q(z_k|x)`` with ``z_k ~ q(z|x)``. Then

* ``mean_k log w_k`` is an unbiased estimate of the ELBO,
* ``log (1/K) sum_k w_k`` is the K-sample IWAE bound (Burda et al. 2016), whose
  expectation increases to log p(x) as K grows; with K = 5000 it is the
  importance-sampled estimate of the marginal likelihood reported in papers.

Everything works on any Pyro model/guide pair whose sample sites live inside
at most ``max_plate_nesting`` plates, the data plate at ``dim=-1``: the K samples are drawn in a vectorized
particle plate, in chunks so that memory stays bounded, and combined in log space.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample


def log_importance_weights(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int,
    max_plate_nesting: int = 1,
) -> torch.Tensor:
    """``log p(x, z_k) - log q(z_k|x)`` for ``num_samples`` draws, shape ``(num_samples, batch)``."""
    with torch.no_grad(), pyro.plate("_particles", num_samples, dim=-1 - max_plate_nesting):
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    log_w = torch.zeros(num_samples, x.shape[0], device=x.device)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site):
                log_w = log_w + sign * _per_datum(site["log_prob"])
    return log_w


def _per_datum(log_prob: torch.Tensor) -> torch.Tensor:
    # Shape (particles, *other plates, data) -> (particles, data); a site outside
    # the data plate has size 1 there and broadcasts.
    if log_prob.dim() > 2:
        log_prob = log_prob.sum(dim=tuple(range(1, log_prob.dim() - 1)))
    return log_prob


def importance_bounds(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int,
    chunk_size: int = 500,
    max_plate_nesting: int = 1,
) -> dict[str, torch.Tensor]:
    """Per-datum ``elbo`` and ``log_px`` (log-mean-exp of ``num_samples`` weights).

    The weights are drawn ``chunk_size`` at a time; only per-chunk
    log-sum-exps are kept, so memory does not grow with ``num_samples``.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    lse_chunks, sum_log_w = [], torch.zeros(x.shape[0], device=x.device)
    for start in range(0, num_samples, chunk_size):
        k = min(chunk_size, num_samples - start)
        log_w = log_importance_weights(model, guide, x, k, max_plate_nesting)
        lse_chunks.append(torch.logsumexp(log_w, dim=0))
        sum_log_w += log_w.sum(0)
    log_px = torch.logsumexp(torch.stack(lse_chunks), dim=0) - math.log(num_samples)
    return {"elbo": sum_log_w / num_samples, "log_px": log_px}


def evaluate(
    vae: torch.nn.Module,
    batches: Iterable[torch.Tensor],
    num_samples: int = 5000,
    chunk_size: int = 500,
) -> dict[str, float]:
    """Mean per-datum ELBO and log p(x) estimate (nats) over ``batches`` of data.

    ``elbo`` averages the same ``num_samples`` weights, so it is the ELBO with
    ``num_samples`` Monte Carlo samples; ``log_px`` is the IWAE bound with
    K = ``num_samples``.
    """
    totals = {"elbo": 0.0, "log_px": 0.0}
    count = 0
    was_training = vae.training
    vae.eval()
    try:
        for x in batches:
            bounds = importance_bounds(
                vae.model, vae.guide, x, num_samples, chunk_size, vae.max_plate_nesting
            )
            for key in totals:
                totals[key] += bounds[key].sum().item()
            count += x.shape[0]
    finally:
        vae.train(was_training)
    if count == 0:
        raise ValueError("evaluate() got no data")
    return {key: value / count for key, value in totals.items()}
