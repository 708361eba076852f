"""What the tests share (imported as ``from support import ...``; ``tests/`` is on the path of
every test module, since the root ``conftest.py`` lives there).

* :data:`SMALL`: the settings of a small, fast training run on the synthetic data set;
* :func:`draws_mean_and_se`: the mean of gradient draws of an estimator and its standard
  error, per parameter group, for unbiasedness checks within statistical tolerance;
* :func:`small_sbn`, :func:`exact_sbn_gradient`, :func:`estimator_gradient_draws`: a sigmoid
  belief network small enough to sum over every binary latent, its exact gradients, and an
  estimator's mean gradient on it (the discrete estimators' checks).
"""

from __future__ import annotations

import itertools
import math

import torch

from pyro_vae.inference import make_estimator
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


def small_sbn() -> SigmoidBeliefVAE:
    """A sigmoid belief network 3 -> 2 binary units -> 3 with every parameter drawn from N(0, 1), float64."""
    torch.manual_seed(0)
    sbn = SigmoidBeliefVAE(3, z_dim=2, hidden=()).double()
    with torch.no_grad():
        for p in sbn.parameters():
            p.normal_(0.0, 1.0)
    return sbn


def _log_weights_of_every_z(sbn: SigmoidBeliefVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log q(z|x), log p(x, z) - log q(z|x))`` for the 4 values of z, each ``(4, batch)``."""
    z = torch.tensor(list(itertools.product([0.0, 1.0], repeat=2)), dtype=x.dtype).unsqueeze(1)
    log_q = sbn.posterior(x).log_prob(z)
    return log_q, sbn.prior().log_prob(z) + sbn.decode(z).log_prob(x) - log_q


def exact_sbn_gradient(
    sbn: SigmoidBeliefVAE, bound: str, num_particles: int = 1, x: torch.Tensor | None = None
) -> torch.Tensor:
    """The gradient of E_q[L_i] summed over the data (:data:`SBN_DATA` by default), by enumerating
    every z: of the ``num_particles``-sample bound (``bound="iwae"``) or of the ELBO, flattened."""
    x = SBN_DATA if x is None else x
    log_q, log_w = _log_weights_of_every_z(sbn, x)
    K = num_particles
    if bound == "elbo":
        return _flat_grad(sbn, (log_q.exp() * log_w).sum())
    total = 0.0
    for values in itertools.product(range(4), repeat=K):  # every joint draw of the K particles
        chosen = log_w[list(values)]
        total = total + (log_q[list(values)].sum(0).exp() * (torch.logsumexp(chosen, 0) - math.log(K))).sum()
    return _flat_grad(sbn, total)


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
