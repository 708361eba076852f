"""What the tests share (imported as ``from support import ...``; ``tests/`` is on the path of
every test module, since the root ``conftest.py`` lives there).

* :data:`SMALL`: the settings of a small, fast training run on the synthetic data set;
* :func:`draws_mean_and_se`: the mean of gradient draws of an estimator and its standard
  error, per parameter group, for unbiasedness checks within statistical tolerance;
* :func:`small_sbn`, :func:`exact_sbn_bound`, :func:`exact_sbn_gradient`,
  :func:`estimator_gradient_draws`: a sigmoid belief network (one layer or more) small enough to
  sum over every binary latent, its exact bounds and their gradients, and an estimator's mean
  gradient on it (the discrete estimators' checks).
"""

from __future__ import annotations

import itertools
import math

import pyro.poutine as poutine
import torch

from pyro_vae.inference import make_estimator
from pyro_vae.inference.log_weights import particle_plate
from pyro_vae.inference.variance import draw_gradients
from pyro_vae.models.sbn import SigmoidBeliefVAE

SMALL = dict(dataset="synthetic", z_dim=2, hidden=(16,), batch_size=100, lr=1e-2)


def draws_mean_and_se(
    program, name: str, x: torch.Tensor, num_draws: int, num_particles: int = 1, **kwargs
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per parameter group of :func:`~pyro_vae.inference.variance.draw_gradients` (``"guide"``,
    ``"model"``): the mean gradient of ``num_draws`` draws of estimator ``name`` and its standard
    error sqrt(var / r), the variance unbiased over the r draws."""
    draws = draw_gradients(program, make_estimator(name, program, num_particles), x, num_draws, **kwargs)
    r, out = draws.num_draws, {}
    for group in draws.sums:
        mean = draws.sums[group] / r
        var = (draws.sq_sums[group] - r * mean**2).clamp_min(0) / (r - 1)
        out[group] = mean, (var / r).sqrt()
    return out


#: Two binary data of three pixels, for :func:`small_sbn`.
SBN_DATA = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def small_sbn(layers: int = 1) -> SigmoidBeliefVAE:
    """A sigmoid belief network 3 -> 2 binary units (in each of ``layers`` layers) -> 3 with every parameter
    drawn from N(0, 1), float64."""
    torch.manual_seed(0)
    sbn = SigmoidBeliefVAE(3, z_dim=2, hidden=(), layers=layers).double()
    with torch.no_grad():
        for p in sbn.parameters():
            p.normal_(0.0, 1.0)
    return sbn


def exact_sbn_bound(sbn: SigmoidBeliefVAE, num_particles: int = 1, x: torch.Tensor | None = None) -> torch.Tensor:
    """E_q[log (1/K) sum_k w_k] summed over the data (:data:`SBN_DATA` by default), K = ``num_particles``
    (K = 1: the ELBO), by enumerating the C values of every layer's units together and every K-tuple of
    them; differentiable in the parameters."""
    x = SBN_DATA if x is None else x
    sites, units = sbn.names(), sbn.z_dim
    values = torch.tensor(list(itertools.product([0.0, 1.0], repeat=units * len(sites))), dtype=x.dtype)
    c = len(values)
    every = {
        name: values[:, i * units : (i + 1) * units].unsqueeze(1).expand(c, len(x), units)
        for i, name in enumerate(sites)
    }
    with particle_plate(c, sbn.max_plate_nesting):
        log_q, log_p = (
            sum(site["fn"].log_prob(site["value"]) for site in trace.nodes.values() if site["type"] == "sample")
            for trace in (poutine.trace(poutine.condition(p, every)).get_trace(x) for p in (sbn.guide, sbn.model))
        )
    tuples = torch.cartesian_prod(*[torch.arange(c)] * num_particles).reshape(-1, num_particles)
    log_w = (log_p - log_q)[tuples]
    return (log_q[tuples].sum(1).exp() * (torch.logsumexp(log_w, 1) - math.log(num_particles))).sum()


def exact_sbn_gradient(
    sbn: SigmoidBeliefVAE, bound: str, num_particles: int = 1, x: torch.Tensor | None = None
) -> torch.Tensor:
    """The gradient of :func:`exact_sbn_bound`, flattened: of the ``num_particles``-sample bound
    (``bound="iwae"``) or of the ELBO (``bound="elbo"``)."""
    return _flat_grad(sbn, exact_sbn_bound(sbn, num_particles if bound == "iwae" else 1, x))


def _flat_grad(sbn: SigmoidBeliefVAE, objective: torch.Tensor) -> torch.Tensor:
    return torch.cat([g.flatten() for g in torch.autograd.grad(objective, list(sbn.parameters()))])


def estimator_gradient_draws(
    sbn: SigmoidBeliefVAE, estimator, copies: int, rounds: int, x: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of ``copies * rounds`` draws of ``estimator``'s gradient of the objective (not the
    loss) on ``x`` (:data:`SBN_DATA`), and its standard error. Each datum is repeated ``copies``
    times in one batch (its draws are independent per copy); the error comes from ``rounds``
    such batches."""
    x = (SBN_DATA if x is None else x).repeat(copies, 1)
    means = []
    for _ in range(rounds):
        sbn.zero_grad()
        estimator.elbo.loss_and_grads(sbn.model, estimator.guide, x)
        means.append(-torch.cat([p.grad.flatten() for p in sbn.parameters()]) / copies)
    means = torch.stack(means)
    return means.mean(0), means.std(0) / math.sqrt(rounds)
