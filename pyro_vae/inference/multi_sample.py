"""Multi-sample score-function estimators for discrete latents: VIMCO (Mnih & Rezende 2016) and
REINFORCE with the leave-one-out baseline (Kool et al. 2019), as Pyro ELBOs.

For datum i of a minibatch of M out of N, K particles (z_i1, ..., z_iK) ~ q(z|x_i) are drawn at
once (:func:`~pyro_vae.inference.log_weights.particle_plate`), with log-weights
``f_ik = log p(x_i, z_ik) - log q(z_ik|x_i)`` (:mod:`pyro_vae.inference.log_weights`). Each
estimator has an objective per datum L_i(f_i1..f_iK) and a learning signal per particle s_ik;
its gradient is that of the surrogate

    (N/M) sum_i [ L_i + sum_k stop(s_ik) log q_s(z_ik|x_i) ],

where log q_s sums the guide's sites that are *not* reparameterized (their score terms; a
reparameterized site gets its pathwise gradient through L_i). The model's parameters get the
pathwise gradient of L_i.

``vimco``: L_i = log (1/K) sum_k w_ik, the K-sample bound, and
s_ik = L_i - log (1/K) (sum_{j != k} w_ij + w^_{i,-k}), with w^_{i,-k} = exp(mean_{j != k} f_ij)
(the geometric mean of the other weights in place of w_ik): the leave-one-out baseline of each
particle's contribution. An unbiased estimate of the gradient of E[L_K].

``score-loo``: L_i = (1/K) sum_k f_ik, the ELBO, and s_ik = (f_ik - mean_{j != k} f_ij) / K: each
particle's cost minus the mean of the others (independent of z_ik, so unbiased).

Both need K >= 2 (``num_particles``) and a per-datum weight: a latent outside the data plate is
refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from pyro.infer.enum import get_importance_trace

from pyro_vae.inference.estimators import Estimator, register_estimator
from pyro_vae.inference.log_weights import (
    particle_plate,
    per_datum,
    sample_sites,
    site_distribution,
    sum_per_datum,
)
from pyro_vae.inference.surrogate import SurrogateELBO
from pyro_vae.models.program import Program, member


class MultiSampleScore(SurrogateELBO):
    """The shared machinery of the module docstring; subclasses define :meth:`objective` and :meth:`signal`."""

    #: what the loss bounds, for :class:`~pyro_vae.inference.estimators.Estimator`
    bound = "elbo"
    name = "multi-sample score function"

    def __init__(self, num_particles: int, max_plate_nesting: int, data_plate_name: str) -> None:
        if num_particles < 2:
            raise ValueError(f"{self.name} needs K >= 2 particles (--num-particles), got {num_particles}")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.data_plate_name = data_plate_name

    def objective(self, log_w: torch.Tensor) -> torch.Tensor:
        """L_i per datum from the log-weights ``(K, M)``: ``(M,)``."""
        raise NotImplementedError

    def signal(self, log_w: torch.Tensor) -> torch.Tensor:
        """The learning signal s_ik of each particle's score, ``(K, M)``, from detached log-weights."""
        raise NotImplementedError

    def _terms(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """``(log w (K, M), log q of the non-reparameterized sites (K, M), scale)``."""
        particles = particle_plate(self.num_particles, self.max_plate_nesting)
        model_trace, guide_trace = get_importance_trace(
            "flat", self.max_plate_nesting + 1, particles(model), particles(guide), args, kwargs
        )
        needed_by = f"the {self.name} estimator"
        log_p, scale = sum_per_datum(model_trace, self.max_plate_nesting, self.data_plate_name, needed_by)
        log_q, _ = sum_per_datum(guide_trace, self.max_plate_nesting, self.data_plate_name, needed_by)
        log_q_score = sum(
            (
                per_datum(site, self.max_plate_nesting, self.data_plate_name, needed_by)
                for _, site in sample_sites(guide_trace)
                if not site["is_observed"] and not site_distribution(site).has_rsample
            ),
            torch.zeros(()),
        )
        shape = (
            self.num_particles,
            torch.broadcast_shapes(torch.as_tensor(log_p).shape, torch.as_tensor(log_q).shape)[-1],
        )
        return (log_p - log_q).expand(shape), torch.as_tensor(log_q_score).expand(shape), scale

    def _surrogate(self, log_w: torch.Tensor, log_q_score: torch.Tensor, scale) -> tuple[torch.Tensor, float]:
        objective = self.objective(log_w)
        signal = self.signal(log_w.detach())
        scale = torch.as_tensor(scale, dtype=log_w.dtype, device=log_w.device)
        surrogate = (scale * (objective + (signal * log_q_score).sum(0))).sum()
        return -surrogate, -(scale * objective).sum().item()


def leave_one_out_mean(log_w: torch.Tensor) -> torch.Tensor:
    """``mean_{j != k} f_j`` for each k, over the particle dimension 0 of ``log_w``."""
    k = log_w.shape[0]
    return (log_w.sum(0, keepdim=True) - log_w) / (k - 1)


class VIMCO(MultiSampleScore):
    """VIMCO: the K-sample bound with leave-one-out baselines (Mnih & Rezende 2016)."""

    bound = "iwae"
    name = "vimco"

    def objective(self, log_w: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])

    def signal(self, log_w: torch.Tensor) -> torch.Tensor:
        k = log_w.shape[0]
        # log (1/K)(sum_{j != k} w_j + w^_{-k}): replace f_k by the mean of the others, one k at a time
        replaced = log_w.unsqueeze(0).expand(k, *log_w.shape).clone()
        index = torch.arange(k, device=log_w.device)
        replaced[index, index] = leave_one_out_mean(log_w)
        return self.objective(log_w).unsqueeze(0) - (torch.logsumexp(replaced, 1) - math.log(k))


class LeaveOneOut(MultiSampleScore):
    """REINFORCE of the ELBO with K samples and the leave-one-out baseline (Kool et al. 2019)."""

    name = "score-loo"

    def objective(self, log_w: torch.Tensor) -> torch.Tensor:
        return log_w.mean(0)

    def signal(self, log_w: torch.Tensor) -> torch.Tensor:
        return (log_w - leave_one_out_mean(log_w)) / log_w.shape[0]


def _register(name: str, elbo_class: type[MultiSampleScore], help: str) -> None:
    def build(program: Program, num_particles: int = 2) -> Estimator:
        elbo = elbo_class(num_particles, program.max_plate_nesting, member(program, "data_plate_name"))
        return Estimator(name, elbo, program.guide, objective=elbo_class.bound)

    register_estimator(name, build, help=help)


_register("vimco", VIMCO, "K-sample bound, score function with leave-one-out baselines (Mnih & Rezende 2016); K >= 2")
_register(
    "score-loo",
    LeaveOneOut,
    "ELBO, score function with K samples and the leave-one-out baseline (Kool et al. 2019); K >= 2",
)
