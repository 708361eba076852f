"""The joint estimate for a program with latents shared by all data.

A site outside the data plate (a latent b shared by all data, found by :func:`global_sites`
from one trace without any particle dimension) has no per-datum weight, so log p(x_i) alone is
not defined: p(x_i) and p(x_j) share b. What is defined is the joint log p(x_1, ..., x_n) of
the n data, importance-sampled with the global latents drawn jointly: K draws b_k ~ q(b) (the
guide's global sites, run on the first batch) and, given b_k, one z_ik ~ q(z|x_i, b_k) per
datum give the unbiased estimate of p(x_1..x_n)

    p^ = (1/K) sum_k  p(b_k) / q(b_k)  prod_i  p(x_i, z_ik | b_k) / q(z_ik | x_i, b_k),

reported per datum, ``log p^ / n`` (a stochastic lower bound on log p(x_1..x_n) / n that
tightens as K grows), with the ELBO of the whole data, ``mean_k log w_k / n`` (the global KL
counted once, spread over the n data). The n data must be scored under the same b_k, so they are
held in memory and the estimate is not sharded over processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro.poutine as poutine
import torch

from pyro_vae.inference.log_weights import in_plate, log_weights, particle_plate, sample_sites, site_value
from pyro_vae.validation import check_pass_fits


def global_sites(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    max_plate_nesting: int = 1,
    *,
    data_plate_name: str = "data",
    **kwargs,
) -> list[str]:
    """The sample sites of ``guide`` and ``model`` (replayed against it) that lie outside the
    data plate: latents shared by all data (and any observation of them). Found from one trace
    of each on ``x``, without any particle dimension, so that a program written without
    broadcasting over extra leading dimensions is still classified. ``ValueError`` if no site
    lies in the data plate (a plate of another name: set the program's ``data_plate_name``).
    Torch's RNG is restored afterwards, so the caller's random numbers do not change."""
    cuda = [x.device] if x.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=cuda):
        guide_trace = poutine.trace(guide).get_trace(x, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, **kwargs)
    names, inside = [], False
    for trace in (guide_trace, model_trace):
        for name, site in sample_sites(trace):
            if in_plate(site, data_plate_name) is not None:
                inside = True
            elif name not in names:
                names.append(name)
    if not inside:
        raise ValueError(
            f"no sample site of the program lies in a plate named {data_plate_name!r}; name its data plate so, "
            "or set the program's data_plate_name to the plate's name"
        )
    return names


def joint_bounds(
    model: Callable,
    guide: Callable,
    batches: Sequence[dict[str, torch.Tensor]],
    num_samples: int,
    sites: Sequence[str],
    chunk_size: int = 500,
    max_plate_nesting: int = 1,
    *,
    data_plate_name: str = "data",
) -> tuple[float, float]:
    """``(elbo, log p^ / n)`` per datum of all the data in ``batches`` (dicts of model
    arguments, ``x`` first) for a program with the global latents ``sites`` (see the module
    docstring): K = ``num_samples`` joint draws b_k ~ q(b), each scoring every datum.

    The global draws come ``chunk_size`` at a time from the guide run on the first batch; for
    each chunk every batch is scored with the global sites conditioned on the draws, and only
    the chunk's K sums over the data are kept."""
    count = sum(batch["x"].shape[0] for batch in batches)
    totals = []
    for start in range(0, num_samples, chunk_size):
        k = min(chunk_size, num_samples - start)
        first = dict(batches[0])
        x = first.pop("x")
        with torch.no_grad(), particle_plate(k, max_plate_nesting):
            trace = poutine.trace(guide).get_trace(x, **first)
        values = {
            name: site_value(trace.nodes[name])
            for name in sites
            if name in trace and not trace.nodes[name]["is_observed"]
        }
        log_w_data = elbo_data = torch.zeros(k, device=x.device)
        for i, batch in enumerate(batches):
            kwargs = dict(batch)
            x = kwargs.pop("x")
            check_pass_fits(x.shape[0], k, x[0].numel(), x.device)
            log_w, elbo, log_w_global = log_weights(
                model, guide, x, k, max_plate_nesting, data_plate_name, kwargs, global_values=values
            )
            if i == 0:  # the global sites' weight, from the first batch (a global prior does not see the data)
                log_w_data, elbo_data = log_w_data + log_w_global, elbo_data + log_w_global
            log_w_data, elbo_data = log_w_data + log_w.sum(-1), elbo_data + elbo.sum(-1)
        totals.append((log_w_data, elbo_data))
    log_w, elbo = (torch.cat(parts) for parts in zip(*totals))
    return elbo.mean().item() / count, (torch.logsumexp(log_w, 0) - math.log(num_samples)).item() / count
