r"""Trace arithmetic for importance log-weights, shared by evaluation and the importance-weighted
estimators (as Pyro keeps its ELBOs' shared arithmetic in ``pyro.infer.util``).

For a model p(x, z) and a guide q(z|x) traced with K particles drawn at once in the particle
plate (:func:`particle_plate`, left of the program's own plates), datum i's log-weight is

.. math::

    \log w_{ik} = \log p(x_i, z_{ik}) - \log q(z_{ik} \mid x_i)
                 = \sum_{s} \big(\log p_s - \log q_s\big),
    \qquad z_{ik} \sim q(z \mid x_i),

over the sample sites s in the data plate, each site's *unscaled* (masked) log density summed
over the datum's inner plates (pixels, a second latent layer): :func:`per_datum`, and over the
sites of a trace: :func:`sum_per_datum`.
A minibatch's scale N/M (the data plate's ``total_size``) multiplies a bound of the weights, never
the weights themselves, since :math:`\log \frac1K \sum_k w_k` is not linear in :math:`\log w`.

A site outside the data plate (a latent shared by all data) has no per-datum weight: it is
refused by name where a per-datum weight is needed, and :func:`per_particle` gives its log
density per particle where the estimate is joint over the data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import config_enumerate
from pyro.infer.inspect import get_dependencies
from pyro.poutine import Trace
from pyro.poutine.indep_messenger import CondIndepStackFrame
from pyro.poutine.runtime import Message
from pyro.poutine.util import site_is_subsample

#: The name of the particle plate: Pyro's own for vectorized particles (``ELBO(vectorize_particles=True)``).
PARTICLE_PLATE = "num_particles_vectorized"


def particle_plate(num_particles: int, max_plate_nesting: int) -> pyro.plate:
    """The plate of ``num_particles`` particles drawn at once, at ``dim = -1 - max_plate_nesting``:
    left of every plate of the program, so each site's log density has the shape
    ``(num_particles, batch, ...)``."""
    return pyro.plate(PARTICLE_PLATE, num_particles, dim=-1 - max_plate_nesting)


def in_plate(site: Message, plate: str) -> CondIndepStackFrame | None:
    """The vectorized frame of the plate named ``plate`` around ``site``, or ``None``."""
    return next((f for f in site["cond_indep_stack"] if f.vectorized and f.name == plate), None)


def sample_sites(trace: Trace) -> list[tuple[str, Message]]:
    """The ``(name, site)`` pairs of the sample sites of ``trace``, subsample sites left out."""
    return [
        (name, site) for name, site in trace.nodes.items() if site["type"] == "sample" and not site_is_subsample(site)
    ]


def site_distribution(site: Message) -> torch.distributions.Distribution:
    """A sample site's distribution, ``site["fn"]`` (which Pyro's ``Message`` types as any callable)."""
    return cast(torch.distributions.Distribution, site["fn"])


def site_value(site: Message) -> torch.Tensor:
    """A traced sample site's value (Pyro's ``Message`` types it optional, as before the site runs)."""
    return cast(torch.Tensor, site["value"])


def prior_dependencies(program: Callable, args: tuple, kwargs: dict) -> dict[str, dict[str, set]]:
    """Each latent of ``program``'s one run on ``args``, ``kwargs`` and the latents upstream of it
    (itself included): Pyro's ``get_dependencies(...)["prior_dependencies"]``, which Pyro types ``object``."""
    return cast("dict[str, dict[str, set]]", get_dependencies(program, args, kwargs)["prior_dependencies"])


def unscaled_log_prob(site: Message) -> torch.Tensor:
    """A site's log density with its mask applied and without its scale (``trace.compute_log_prob()``
    must have run)."""
    return scale_and_mask(site["unscaled_log_prob"], 1.0, site["mask"])


def _left_padded(log_prob: torch.Tensor, max_plate_nesting: int) -> torch.Tensor:
    """``log_prob`` with leading singleton dimensions up to ``max_plate_nesting + 1`` (particles first)."""
    while log_prob.dim() < max_plate_nesting + 1:
        log_prob = log_prob.unsqueeze(0)
    return log_prob


def per_datum(
    site: Message, max_plate_nesting: int, data_plate_name: str, needed_by: str = "log p(x) per datum"
) -> torch.Tensor:
    """A site's unscaled log density per (enumerated value, particle, datum): summed over its
    inner plates. ``needed_by`` names what needs the per-datum weight, for the error a site
    outside the data plate raises."""
    frame = in_plate(site, data_plate_name)
    if frame is None:
        raise ValueError(
            f"site {site['name']!r} lies outside the data plate {data_plate_name!r}: a variable shared by all "
            f"data has no per-datum importance weight, which {needed_by} needs"
        )
    if frame.dim != -1:
        raise ValueError(f"the data plate {data_plate_name!r} must be at dim=-1, found dim={frame.dim}")
    log_prob = _left_padded(unscaled_log_prob(site), max_plate_nesting)
    inner = tuple(range(-max_plate_nesting, -1))
    return log_prob.sum(dim=inner) if inner else log_prob


def per_particle(site: Message, max_plate_nesting: int) -> torch.Tensor:
    """A global site's unscaled log density per particle, ``(num_particles or 1,)``: summed over
    its other plates."""
    log_prob = _left_padded(unscaled_log_prob(site), max_plate_nesting)
    if log_prob.dim() > max_plate_nesting + 1:
        raise ValueError(f"the global site {site['name']!r} depends on an enumerated latent of the data plate")
    return log_prob.reshape(log_prob.shape[0], -1).sum(-1)


def sum_per_datum(
    trace: Trace,
    max_plate_nesting: int,
    data_plate_name: str,
    needed_by: str,
) -> tuple[torch.Tensor, object]:
    """``(sum_s per_datum(s), scale)``: the per-datum log density of all sample sites of
    ``trace``, ``(K or 1, M)`` (a zero of shape ``()`` without sites), and their common scale N/M.
    Sites of one datum with different scales are refused by name: a bound per datum needs one
    scale for all of its terms."""
    total = torch.zeros(())
    scale, first = None, None
    for name, site in sample_sites(trace):
        total = total + per_datum(site, max_plate_nesting, data_plate_name, needed_by)
        if first is None:
            scale, first = site["scale"], name
        elif not torch.equal(torch.as_tensor(site["scale"]), torch.as_tensor(scale)):
            raise ValueError(
                f"sites {first!r} and {name!r} have different scales; {needed_by} needs one scale (N/M) "
                "for all sites of a datum"
            )
    return total, scale


def log_weights(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int,
    max_plate_nesting: int,
    data_plate_name: str,
    kwargs: dict,
    global_values: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log w, elbo, log w_global)`` of ``num_samples`` particles drawn at once, without gradients.

    * ``log w`` ``(num_samples, batch)``: the per-datum log-weight with the discrete latents the
      guide can enumerate (``has_enumerate_support``) summed out exactly: with y enumerated and
      z_k^y ~ q(z|x, y), ``log w_k = log sum_y p(x, y, z_k^y) / q(z_k^y|x, y)``, an unbiased
      estimate of p(x) for each k;
    * ``elbo`` ``(num_samples, batch)``: the per-particle ELBO term
      ``sum_y q(y|x) [log p(x, y, z^y) - log q(z^y|x, y) - log q(y|x)]``, exactly the objective
      ``TraceEnum_ELBO`` trains (``log w`` itself without enumerated latents);
    * ``log w_global`` ``(num_samples,)``: for a program with latents outside the data plate,
      whose values per particle ``global_values`` conditions in model and guide, the log p - log q
      of those sites (zero otherwise)."""
    if global_values is not None:
        model, guide = poutine.condition(model, global_values), poutine.condition(guide, global_values)
    enum_guide = poutine.enum(
        config_enumerate(guide, "parallel", expand=False), first_available_dim=-2 - max_plate_nesting
    )
    with torch.no_grad(), particle_plate(num_samples, max_plate_nesting):
        guide_trace = poutine.trace(enum_guide).get_trace(x, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, **kwargs)
    log_w = torch.zeros(num_samples, x.shape[0], device=x.device)
    log_w_global = torch.zeros(num_samples, device=x.device)
    log_qy = torch.zeros(1, x.shape[0], device=x.device)  # log q of the enumerated latents
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for _, site in sample_sites(trace):
            if global_values is not None and in_plate(site, data_plate_name) is None:
                log_w_global = log_w_global + sign * per_particle(site, max_plate_nesting)
                continue
            term = per_datum(site, max_plate_nesting, data_plate_name)
            if sign < 0 and (site["infer"] or {}).get("enumerate") == "parallel":
                log_qy = log_qy + term
            else:
                log_w = log_w + sign * term
    log_w, log_qy = torch.broadcast_tensors(log_w, log_qy)
    log_w = log_w.reshape(-1, num_samples, x.shape[0])
    log_qy = log_qy.reshape(-1, num_samples, x.shape[0])
    elbo = (log_qy.exp() * (log_w - log_qy)).sum(0)
    return torch.logsumexp(log_w, dim=0), elbo, log_w_global
