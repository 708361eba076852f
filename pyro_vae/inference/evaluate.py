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
layer).

**Global latents.** A site outside the data plate (a latent b shared by all data,
found by :func:`global_sites` from one trace without any particle dimension) has no
per-datum weight, so log p(x_i) alone is not defined: p(x_i) and p(x_j) share b. What is
defined, and what :func:`evaluate` then reports, is the joint log p(x_1, ..., x_n) of the
n test data, importance-sampled with the global latents drawn jointly: K draws
b_k ~ q(b) (the guide's global sites, run on the first batch) and, given b_k, one
z_ik ~ q(z|x_i, b_k) per datum give the unbiased estimate of p(x_1..x_n)

    p^ = (1/K) sum_k  p(b_k) / q(b_k)  prod_i  p(x_i, z_ik | b_k) / q(z_ik | x_i, b_k),

reported as ``log_p_data = log p^ / n`` (nats per datum, a stochastic lower bound on
log p(x_1..x_n) / n that tightens as K grows), and the ELBO of the whole test set,
``elbo = mean_k log w_k / n`` (the global KL counted once, spread over the n data). The
n data must be scored under the same b_k, so the test set is held in memory and the
estimate is not sharded over processes.

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

import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import config_enumerate
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import site_is_subsample

from pyro_vae.inference.algorithms import ParamScope
from pyro_vae.validation import check_arguments, check_pass_fits


def _in_plate(site: dict, plate: str):
    """The vectorized frame of the plate named ``plate`` around ``site``, or ``None``."""
    return next((f for f in site["cond_indep_stack"] if f.vectorized and f.name == plate), None)


def _per_datum(
    site: dict, max_plate_nesting: int, data_plate: str, log_prob: torch.Tensor | None = None,
    needed_by: str = "log p(x) per datum",
) -> torch.Tensor:
    """A site's log density per (enumerated value, particle, datum): summed over inner plates.

    ``log_prob`` replaces the site's own (scaled and masked) ``site["log_prob"]``,
    e.g. with the unscaled one; ``needed_by`` names what needs the per-datum weight."""
    frame = _in_plate(site, data_plate)
    if frame is None:
        raise ValueError(
            f"site {site['name']!r} lies outside the data plate {data_plate!r}: a variable shared by all "
            f"data has no per-datum importance weight, which {needed_by} needs"
        )
    if frame.dim != -1:
        raise ValueError(f"the data plate {data_plate!r} must be at dim=-1, found dim={frame.dim}")
    log_prob = site["log_prob"] if log_prob is None else log_prob
    while log_prob.dim() < max_plate_nesting + 1:
        log_prob = log_prob.unsqueeze(0)
    inner = tuple(range(-max_plate_nesting, -1))
    return log_prob.sum(dim=inner) if inner else log_prob


def _per_particle(site: dict, max_plate_nesting: int) -> torch.Tensor:
    """A global site's log density per particle, ``(num_samples or 1,)``: summed over its other plates."""
    log_prob = site["log_prob"]
    while log_prob.dim() < max_plate_nesting + 1:
        log_prob = log_prob.unsqueeze(0)
    if log_prob.dim() > max_plate_nesting + 1:
        raise ValueError(f"the global site {site['name']!r} depends on an enumerated latent of the data plate")
    return log_prob.reshape(log_prob.shape[0], -1).sum(-1)


def _log_weights(
    model: Callable, guide: Callable, x: torch.Tensor, num_samples: int,
    max_plate_nesting: int, data_plate: str, kwargs: dict, global_values: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log w, elbo, log w_global)``: the per-particle importance weight with enumerated latents
    summed out and the per-particle ELBO term, each ``(num_samples, batch)``; and, for a program with
    global latents (``global_values``: their values per particle, conditioned in model and guide),
    log p - log q of the sites outside the data plate per particle, ``(num_samples,)``."""
    if global_values is not None:
        model, guide = poutine.condition(model, global_values), poutine.condition(guide, global_values)
    enum_guide = poutine.enum(
        config_enumerate(guide, "parallel", expand=False), first_available_dim=-2 - max_plate_nesting
    )
    with torch.no_grad(), pyro.plate("_particles", num_samples, dim=-1 - max_plate_nesting):
        guide_trace = poutine.trace(enum_guide).get_trace(x, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, **kwargs)
    log_w = torch.zeros(num_samples, x.shape[0], device=x.device)
    log_w_global = torch.zeros(num_samples, device=x.device)
    log_qy = torch.zeros(1, x.shape[0], device=x.device)  # log q of the enumerated latents
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if global_values is not None and _in_plate(site, data_plate) is None:
                log_w_global = log_w_global + sign * _per_particle(site, max_plate_nesting)
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
    return torch.logsumexp(log_w, dim=0), elbo, log_w_global


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
        log_w, elbo, _ = _log_weights(model, guide, x, k, max_plate_nesting, data_plate, kwargs)
        lse_chunks.append(torch.logsumexp(log_w, dim=0))
        sum_elbo += elbo.sum(0)
    log_px = torch.logsumexp(torch.stack(lse_chunks), dim=0) - math.log(num_samples)
    return {"elbo": sum_elbo / num_samples, "log_px": log_px}


def global_sites(
    model: Callable, guide: Callable, x: torch.Tensor, max_plate_nesting: int = 1, *, data_plate: str = "data",
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
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if _in_plate(site, data_plate) is not None:
                inside = True
            elif name not in names:
                names.append(name)
    if not inside:
        raise ValueError(
            f"no sample site of the program lies in a plate named {data_plate!r}; name its data plate so, "
            "or set the program's data_plate_name to the plate's name"
        )
    return names


@contextmanager
def _vectorized(num_samples: int, max_plate_nesting: int) -> Iterator[None]:
    """Turn a shape error of a pass with ``num_samples`` particles into one that says why (the
    program ran on one sample, see :func:`global_sites`) and how to write it."""
    try:
        yield
    except (RuntimeError, ValueError) as error:
        if "out of memory" in str(error) or not re.search(r"shape|size|dimension", str(error), re.IGNORECASE):
            raise
        raise ValueError(
            f"the program runs on one sample but not on {num_samples} drawn at once in a plate at "
            f"dim={-1 - max_plate_nesting}, left of its own plates ({str(error).splitlines()[0]}); write it so that its tensors "
            "broadcast over extra leading dimensions (e.g. decoder(z) + b, not b.expand(len(x), -1))"
        ) from error


def joint_bounds(
    model: Callable,
    guide: Callable,
    batches: Sequence[dict[str, torch.Tensor]],
    num_samples: int,
    sites: Sequence[str],
    chunk_size: int = 500,
    max_plate_nesting: int = 1,
    *,
    data_plate: str = "data",
) -> dict[str, float]:
    """``elbo`` and ``log_p_data`` per datum of all the data in ``batches`` (dicts of model
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
        with torch.no_grad(), pyro.plate("_particles", k, dim=-1 - max_plate_nesting):
            trace = poutine.trace(guide).get_trace(x, **first)
        values = {name: trace.nodes[name]["value"] for name in sites
                  if name in trace and not trace.nodes[name]["is_observed"]}
        log_w_data = elbo_data = torch.zeros(k, device=x.device)
        for i, batch in enumerate(batches):
            kwargs = dict(batch)
            x = kwargs.pop("x")
            check_pass_fits(x.shape[0], k, x[0].numel(), x.device)
            log_w, elbo, log_w_global = _log_weights(
                model, guide, x, k, max_plate_nesting, data_plate, kwargs, global_values=values
            )
            if i == 0:  # the global sites' weight, from the first batch (a global prior does not see the data)
                log_w_data, elbo_data = log_w_data + log_w_global, elbo_data + log_w_global
            log_w_data, elbo_data = log_w_data + log_w.sum(-1), elbo_data + elbo.sum(-1)
        totals.append((log_w_data, elbo_data))
    log_w, elbo = (torch.cat(parts) for parts in zip(*totals))
    return {
        "elbo": elbo.mean().item() / count,
        "log_p_data": (torch.logsumexp(log_w, 0) - math.log(num_samples)).item() / count,
    }


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

    A program with latents outside the data plate (:func:`global_sites`, looked for on the first
    batch) gets :func:`joint_bounds` instead: ``elbo`` and ``log_p_data``, the joint
    log p(x_1, ..., x_n) / n with its global latents sampled jointly (no ``log_px``: it is
    not defined per datum). It is evaluated on one process (``reduce`` must be ``None``).
    """
    check_arguments(evaluate, program=program, num_samples=num_samples, chunk_size=chunk_size)
    mpn, plate = program.max_plate_nesting, getattr(program, "data_plate_name", "data")
    totals = {"elbo": 0.0, "log_px": 0.0}
    count = 0
    was_training = program.training
    program.eval()
    try:
        with ParamScope(program.parameters()):
            data = (_as_dict(i, batch) for i, batch in enumerate(batches))
            first = next(data, None)  # None: no data (an empty shard: the sums below are then zero)
            sites = [] if first is None else global_sites(
                program.model, program.guide, first["x"], mpn, data_plate=plate,
                **{key: value for key, value in first.items() if key != "x"},
            )
            if sites:
                if reduce is not None:
                    raise ValueError(f"a program with global latents {sites} is evaluated on one process, not sharded")
                with _vectorized(num_samples, mpn):
                    return joint_bounds(program.model, program.guide, [first, *data], num_samples, sites, chunk_size,
                                        mpn, data_plate=plate)
            for i, batch in enumerate(itertools.chain([first] if first else [], data)):
                x = batch.pop("x")
                # Pyro's validation checks the first batch (as training checks its first step)
                with pyro.validation_enabled(is_validation_enabled() and i == 0), _vectorized(num_samples, mpn):
                    bounds = importance_bounds(program.model, program.guide, x, num_samples, chunk_size, mpn,
                                               data_plate=plate, **batch)
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


def _as_dict(i: int, batch: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Batch ``i`` as a new dict of the model's arguments, ``x`` first."""
    if not (torch.is_tensor(batch) or isinstance(batch, dict) and "x" in batch):
        raise TypeError(f"evaluate: batch {i} must be a tensor x or a dict with x, got {batch!r:.80}")
    return dict(batch) if isinstance(batch, dict) else {"x": batch}


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
