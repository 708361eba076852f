"""Evaluation: ELBO, the K-sample IWAE bound, and importance-sampled log p(x).

For a model p(x, z) and guide q(z|x), the importance weights are
``log w_k = log p(x, z_k) - log q(z_k|x)`` with ``z_k ~ q(z|x)``. Then

* ``mean_k log w_k`` is an unbiased estimate of the ELBO,
* ``log (1/K) sum_k w_k`` is the K-sample IWAE bound (Burda et al. 2016), whose
  expectation increases to log p(x) as K grows; with K = 5000 it is the
  importance-sampled estimate of the marginal likelihood reported in papers.

This works on any Pyro model/guide pair whose per-datum sites lie in the data
plate (``data_plate``, at ``dim=-1``) inside at most ``max_plate_nesting``
plates. A datum's weight sums the log densities of *every* site inside the
data plate, summed over the datum's inner plates (pixels, a second latent
layer); a site outside the data plate (a latent shared by all data) has no
per-datum weight and is refused with an error naming it.

**Discrete latents** the guide can enumerate (``has_enumerate_support``) are
summed out exactly: with y enumerated and z_k^y ~ q(z|x, y),

* ``log w_k = log sum_y p(x, y, z_k^y) / q(z_k^y|x, y)``, an unbiased estimate of
  p(x) for each k, gives the IWAE bound and log p(x) as above;
* the ELBO is ``sum_y q(y|x) [log p(x, y, z^y) - log q(z^y|x, y) - log q(y|x)]``,
  averaged over the K draws, exactly the objective ``TraceEnum_ELBO`` trains.

Discrete latents without enumeration support are sampled like continuous ones.
The K samples are drawn in a vectorized particle plate, in chunks so that
memory stays bounded, and combined in log space.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import config_enumerate
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import site_is_subsample

from pyro_vae.inference.algorithms import ParamScope
from pyro_vae.validation import check_arguments, check_pass_fits


def _per_datum(
    site: dict, max_plate_nesting: int, data_plate: str, log_prob: torch.Tensor | None = None
) -> torch.Tensor:
    """A site's log density per (enumerated value, particle, datum): summed over inner plates.

    ``log_prob`` replaces the site's own (scaled and masked) ``site["log_prob"]``,
    e.g. with the unscaled one."""
    frames = {f.name: f for f in site["cond_indep_stack"] if f.vectorized}
    frame = frames.get(data_plate)
    if frame is None:
        raise ValueError(
            f"site {site['name']!r} lies outside the data plate {data_plate!r}: a variable shared by all "
            "data has no per-datum importance weight, so log p(x) per datum is undefined for this program"
        )
    if frame.dim != -1:
        raise ValueError(f"the data plate {data_plate!r} must be at dim=-1, found dim={frame.dim}")
    log_prob = site["log_prob"] if log_prob is None else log_prob
    while log_prob.dim() < max_plate_nesting + 1:
        log_prob = log_prob.unsqueeze(0)
    inner = tuple(range(-max_plate_nesting, -1))
    return log_prob.sum(dim=inner) if inner else log_prob


def _log_weights(
    model: Callable, guide: Callable, x: torch.Tensor, num_samples: int,
    max_plate_nesting: int, data_plate: str, kwargs: dict,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log w, elbo)``, each ``(num_samples, batch)``: the per-particle importance
    weight with enumerated latents summed out, and the per-particle ELBO term."""
    enum_guide = poutine.enum(
        config_enumerate(guide, "parallel", expand=False), first_available_dim=-2 - max_plate_nesting
    )
    with torch.no_grad(), pyro.plate("_particles", num_samples, dim=-1 - max_plate_nesting):
        guide_trace = poutine.trace(enum_guide).get_trace(x, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, **kwargs)
    log_w = torch.zeros(num_samples, x.shape[0], device=x.device)
    log_qy = torch.zeros(1, x.shape[0], device=x.device)  # log q of the enumerated latents
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            term = _per_datum(site, max_plate_nesting, data_plate)
            if sign < 0 and site["infer"].get("enumerate") == "parallel":
                log_qy = log_qy + term
            else:
                log_w = log_w + sign * term
    log_w, log_qy = torch.broadcast_tensors(log_w, log_qy)
    log_w = log_w.reshape(-1, num_samples, x.shape[0])
    log_qy = log_qy.reshape(-1, num_samples, x.shape[0])
    elbo = (log_qy.exp() * (log_w - log_qy)).sum(0)
    return torch.logsumexp(log_w, dim=0), elbo


def log_importance_weights(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int,
    max_plate_nesting: int = 1,
    *,
    data_plate: str = "data",
    **kwargs,
) -> torch.Tensor:
    """``log p(x, z_k) - log q(z_k|x)`` for ``num_samples`` draws, shape ``(num_samples, batch)``
    (enumerated discrete latents summed out); ``kwargs`` go to model and guide."""
    return _log_weights(model, guide, x, num_samples, max_plate_nesting, data_plate, kwargs)[0]


def importance_bounds(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int,
    chunk_size: int = 500,
    max_plate_nesting: int = 1,
    *,
    data_plate: str = "data",
    **kwargs,
) -> dict[str, torch.Tensor]:
    """Per-datum ``elbo`` and ``log_px`` (log-mean-exp of ``num_samples`` weights).

    The weights are drawn ``chunk_size`` at a time; only per-chunk
    log-sum-exps are kept, so memory does not grow with ``num_samples``; a pass
    of ``len(x)`` data x ``chunk_size`` samples too big for the device's memory is
    refused up front (:func:`~pyro_vae.validation.check_pass_fits`).
    ``kwargs`` (e.g. labels ``y``) go to model and guide.
    """
    check_arguments(importance_bounds, x=x, num_samples=num_samples, chunk_size=chunk_size,
                    max_plate_nesting=max_plate_nesting, data_plate=data_plate)
    if x.dim() == 0:
        raise ValueError("x must have a batch dimension, got a scalar tensor")
    check_pass_fits(x.shape[0], min(chunk_size, num_samples), x[0].numel(), x.device)
    lse_chunks, sum_elbo = [], torch.zeros(x.shape[0], device=x.device)
    for start in range(0, num_samples, chunk_size):
        k = min(chunk_size, num_samples - start)
        log_w, elbo = _log_weights(model, guide, x, k, max_plate_nesting, data_plate, kwargs)
        lse_chunks.append(torch.logsumexp(log_w, dim=0))
        sum_elbo += elbo.sum(0)
    log_px = torch.logsumexp(torch.stack(lse_chunks), dim=0) - math.log(num_samples)
    return {"elbo": sum_elbo / num_samples, "log_px": log_px}


def evaluate(
    program: torch.nn.Module,
    batches: Iterable[torch.Tensor | dict[str, torch.Tensor]],
    num_samples: int = 5000,
    chunk_size: int = 500,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Mean per-datum ELBO and log p(x) estimate (nats) over ``batches`` of data.

    A batch is ``x`` or a dict of the program's data (``{"x": ..., "y": ...}``).
    ``elbo`` averages the same ``num_samples`` weights, so it is the ELBO with
    ``num_samples`` Monte Carlo samples; ``log_px`` is the IWAE bound with
    K = ``num_samples``. ``reduce`` sums the tensor ``(sum elbo, sum log_px, count)``
    over processes when each evaluates its shard of the data (then every
    process gets the means over all shards, see :mod:`pyro_vae.training.distributed`).
    """
    check_arguments(evaluate, program=program, num_samples=num_samples, chunk_size=chunk_size)
    totals = {"elbo": 0.0, "log_px": 0.0}
    count = 0
    was_training = program.training
    program.eval()
    try:
        with ParamScope(program.parameters()):
            for i, batch in enumerate(batches):
                if not (torch.is_tensor(batch) or isinstance(batch, dict) and "x" in batch):
                    raise TypeError(f"evaluate: batch {i} must be a tensor x or a dict with x, got {batch!r:.80}")
                batch = dict(batch) if isinstance(batch, dict) else {"x": batch}
                x = batch.pop("x")
                # Pyro's validation checks the first batch (as training checks its first step)
                with pyro.validation_enabled(is_validation_enabled() and i == 0):
                    bounds = importance_bounds(
                        program.model, program.guide, x, num_samples, chunk_size, program.max_plate_nesting,
                        data_plate=getattr(program, "data_plate_name", "data"), **batch,
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
    return {key: value / count for key, value in totals.items()}


def classifies(program: torch.nn.Module) -> bool:
    """Whether ``program`` has a classifier to score: a ``classify(x)`` method (M2's q(y|x))
    and labels ``y`` among its data keys."""
    return hasattr(program, "classify") and "y" in getattr(program, "data_keys", ())


@torch.no_grad()
def classification_error(
    program: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]],
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """The fraction of data whose label ``y`` differs from ``program.classify(x)`` (M2's q(y|x)).

    ``reduce`` sums the counts over processes (each evaluating its shard), as in :func:`evaluate`.
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
