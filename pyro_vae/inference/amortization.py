r"""The amortization gap (Cremer et al. 2018): the encoder's ELBO against the ELBO of a Gaussian
q(z) optimized for each datum alone.

An encoder q(z|x) gives every datum its variational distribution from one network, so its ELBO
:math:`\mathcal L[q(z \mid x)]` is at most that of the best q of its family for that datum. With
:math:`q^*_x = \mathcal N(m, \operatorname{diag} s^2)` the fully factorized Gaussian found for x alone,

.. math::

    \log p(x) - \mathcal L[q(z \mid x)]
    = \underbrace{\log p(x) - \mathcal L[q^*_x]}_{\text{approximation gap}}
    + \underbrace{\mathcal L[q^*_x] - \mathcal L[q(z \mid x)]}_{\text{amortization gap}}.

:func:`amortization_gap` starts :math:`q^*_x` at the encoder's mean and standard deviation of each
latent (their moments over draws where the guide has no mean, e.g. a flow), then takes Adam steps on
the reparameterized ELBO :math:`\mathbb E_{\epsilon}[\log p(x, m + s \epsilon)] + \sum_j \log s_j`
(the Gaussian's entropy, up to a constant), for every datum of the batch at once. Both ELBOs are
then estimated with the same number of draws. The latents and their refusals are those of
annealed importance sampling (:class:`~pyro_vae.inference.ais.AnnealingPath`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyro.poutine as poutine
import torch

from pyro_vae.inference.ais import AnnealingPath
from pyro_vae.inference.evaluate import importance_bounds
from pyro_vae.inference.log_weights import particle_plate, sample_sites, site_distribution
from pyro_vae.validation import COUNT, POSITIVE, check_arguments


@dataclass(frozen=True)
class AmortizationGap:
    """Per-datum ELBOs, each ``(batch,)``: ``encoder_elbo`` of the guide q(z|x), ``optimized_elbo``
    of the Gaussian optimized for each datum, and ``log_px`` the importance-sampled estimate
    with the guide as proposal (with as many draws)."""

    encoder_elbo: torch.Tensor
    optimized_elbo: torch.Tensor
    log_px: torch.Tensor

    @property
    def gap(self) -> torch.Tensor:
        """The amortization gap ``optimized_elbo - encoder_elbo`` per datum."""
        return self.optimized_elbo - self.encoder_elbo


def _encoder_moments(path: AnnealingPath, num_draws: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The guide's mean and standard deviation of the latents, each ``(1, batch, D)``; moments of
    ``num_draws`` draws where its distributions have none (a flow)."""
    with torch.no_grad(), particle_plate(1, path.mpn):
        trace = poutine.trace(path.guide).get_trace(path.x, **path.kwargs)
    sites = dict(sample_sites(trace))
    fns = {name: site_distribution(sites[name]) for name in path.layout.names}
    try:
        loc = path.layout.flatten({name: fn.mean for name, fn in fns.items()})
        scale = path.layout.flatten({name: fn.stddev for name, fn in fns.items()})
    except NotImplementedError:
        draws = path.draw(num_draws)
        loc, scale = draws.mean(0, keepdim=True), draws.std(0, keepdim=True)
    return loc, scale


def amortization_gap(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_steps: int = 500,
    lr: float = 0.01,
    num_particles: int = 16,
    num_samples: int = 1000,
    chunk_size: int = 500,
    *,
    max_plate_nesting: int = 1,
    data_plate_name: str = "data",
    **kwargs,
) -> AmortizationGap:
    """The encoder's ELBO and that of a Gaussian optimized per datum for ``num_steps`` Adam steps of
    learning rate ``lr``, each on ``num_particles`` reparameterized draws; both ELBOs (and the
    importance-sampled log p(x)) are then estimated with ``num_samples`` draws, ``chunk_size`` at a
    time. ``kwargs`` (e.g. labels ``y``) go to model and guide."""
    check_arguments(
        amortization_gap, x=x, num_steps=num_steps, lr=lr, num_particles=num_particles, num_samples=num_samples
    )
    COUNT.check(num_steps=num_steps, num_particles=num_particles, num_samples=num_samples, chunk_size=chunk_size)
    POSITIVE.check(lr=lr)
    path = AnnealingPath(model, guide, x, kwargs, "guide", max_plate_nesting, data_plate_name)
    loc, scale = _encoder_moments(path, num_samples)
    loc, log_scale = loc.clone().requires_grad_(True), scale.log().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([loc, log_scale], lr=lr)
    for _ in range(num_steps):
        z = loc + log_scale.exp() * torch.randn(num_particles, *loc.shape[1:], dtype=loc.dtype, device=loc.device)
        elbo = path.log_joint(z).mean(0) + log_scale.sum(-1)
        loc.grad, log_scale.grad = torch.autograd.grad(-elbo.sum(), [loc, log_scale])
        optimizer.step()
    with torch.no_grad():
        q = torch.distributions.Normal(loc[0], log_scale[0].exp())
        total = torch.zeros(x.shape[0], dtype=loc.dtype, device=loc.device)
        for start in range(0, num_samples, chunk_size):
            z = q.sample((min(chunk_size, num_samples - start),))
            total += (path.log_joint(z) - q.log_prob(z).sum(-1)).sum(0)
        encoder = importance_bounds(
            model, guide, x, num_samples, chunk_size, max_plate_nesting, data_plate_name=data_plate_name, **kwargs
        )
    return AmortizationGap(encoder["elbo"], total / num_samples, encoder["log_px"])
