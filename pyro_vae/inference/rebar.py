r"""REBAR (Tucker et al. 2017) and RELAX (Grathwohl et al. 2018) for one layer of Bernoulli latents, as
Pyro ELBOs.

For datum x_i with a factorized guide q(b|x_i) = prod_j Bernoulli(b_j; theta_j), theta = sigmoid(phi),
and f(b) = log p(x_i, b) - log q(b|x_i), one draw takes uniform u, v ~ U(0, 1)^d and

    z = phi - logit(u)   (logistic, centred at phi),      b = H(z) = 1[u < theta],
    z~ = phi + logit(v')  with v' = v (1 - theta) if b = 0, (1 - theta) + v theta if b = 1,

z~ a draw of z given b, reparameterized through phi. With the relaxation s(z) = sigmoid(z / lambda) at
temperature lambda and the scale eta of the control variate, the estimate of grad_phi E_q[f] is

    g = [f(b) - eta f(s(z~))] grad_phi log q(b|x_i) + eta grad_phi f(s(z)) - eta grad_phi f(s(z~)),

with grad_phi log q(b|x_i) = b - theta. It is unbiased for every fixed eta and lambda: the two
relaxed terms have the same expectation (the first by the pathwise, the second by the conditional
reparameterization; Tucker et al. 2017, eq. 4 onwards). f of a relaxed value s in (0, 1)^d is the
continuous extension of the Bernoulli log densities, sum_j s_j log p_j + (1 - s_j) log(1 - p_j)
(:class:`~pyro_vae.inference.relaxed.SoftBernoulli`), in the model (the decoder also sees s) and in
the guide.

**Which gradient:** as for ARM (:mod:`pyro_vae.inference.antithetic`), log q(.|x_i) enters f with
its logits stopped, f(s) = log p(x_i, s) - log q_{stop(phi)}(s|x_i): the explicit dependence of the
ELBO on phi through -log q contributes E_q[-grad_phi log q(b|x)] = 0 and is dropped, so g is unbiased
for the gradient of the ELBO E_q[f]. The relaxed terms give only the guide's logits a gradient
(``torch.autograd.grad`` with respect to them); the model's parameters get the pathwise gradient of
log p(x_i, b) at the hard draws. With K = ``num_particles`` independent draws per datum, g is their
mean, and the surrogate is AntitheticELBO's,

    (N/M) sum_i [ (1/K) sum_k (log p(x_i, b_ik) - stop(log q(b_ik|x_i))) + sum_j stop(g_ij) phi_ij ],

whose value is the ELBO estimate (the mean of f over the K hard draws).

eta and lambda are fixed options (``--estimator-option eta=1 --estimator-option temperature=0.5``, the paper's default
temperature); REBAR's adaptation of both by minimizing the estimate's variance is not implemented.

``relax`` replaces eta f(s(z)) by c(z) = eta f(s(z)) + r(z) (:class:`RelaxControl`, r an MLP on z; the
same estimate with c in place of eta f(s(.)) is unbiased for any c), and learns eta, lambda and r by
minimizing the variance: each training step also gives them the gradient of sum_j g_ij^2 (through the
estimate, by double backpropagation); they live in the estimator's ``modules`` (checkpointed, stepped
by the run's optimizer).

**Cost:** each draw evaluates f three times (the decoder on 3K codes per datum: b, s(z), s(z~)) and
backpropagates the relaxed ones once more, so a step costs about as much as 3K-particle VIMCO.

**Scope:** as ARM's: exactly one latent site in the guide, a Bernoulli (possibly ``.to_event``) in the
data plate (``sbn`` with ``layers=1``); any other latent is refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import pyro.distributions as dist
import torch
from pyro.infer import ELBO
from pyro.infer.enum import get_importance_trace
from pyro.poutine.runtime import Message
from pyro.poutine.util import site_is_subsample
from torch import nn

from pyro_vae.inference.antithetic import AntitheticELBO, AntitheticPairs, bernoulli_base
from pyro_vae.inference.estimators import Estimator, register_estimator
from pyro_vae.inference.log_weights import particle_plate, sum_per_datum
from pyro_vae.inference.relaxed import Relaxed, SoftBernoulli
from pyro_vae.models.nets import MLP
from pyro_vae.models.program import member


def conditional_logistic(phi: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """z~ = phi + logit(v'): a draw of z = phi + Logistic given H(z) = b from v ~ U(0, 1), with
    v' = v (1 - theta) for b = 0 and (1 - theta) + v theta for b = 1 (theta = sigmoid(phi)),
    written with log-sigmoids so that it stays finite for large ``abs(phi)``; differentiable in phi."""
    log_theta, log_1m_theta = torch.nn.functional.logsigmoid(phi), torch.nn.functional.logsigmoid(-phi)
    theta = log_theta.exp()
    # b = 1: log v' - log(1 - v') with 1 - v' = theta (1 - v)
    one = phi + torch.log1p(-theta * (1 - v)) - log_theta - torch.log1p(-v)
    zero = phi + v.log() + log_1m_theta - torch.log1p(-v * (1 - theta))
    return torch.where(b > 0, one, zero)


class RebarDraws(AntitheticPairs):
    """Handler around a guide traced in a particle plate of 3K: its one latent Bernoulli site (the
    refusals and the draws u, b = 1[u < sigmoid(phi)] are :class:`AntitheticPairs`') takes the values
    ``(b_1..b_K, s(z_1)..s(z_K), s(z~_1)..s(z~_K))`` (module docstring), and the log density of the
    continuous extension with its logits stopped. Keeps ``phi`` ``(K, ...)``, ``b``, ``leaf`` (a
    detached copy of phi requiring grad, through which the relaxed values are computed), ``z``, ``z_tilde``."""

    def __init__(self, num_draws: int, temperature: float | torch.Tensor, estimator: str) -> None:
        super().__init__(num_draws, estimator)
        self.temperature = temperature

    def _pyro_sample(self, msg: Message) -> None:
        if msg["is_observed"] or site_is_subsample(msg):
            return
        super()._pyro_sample(msg)
        self.leaf = self.phi.detach().requires_grad_()
        self.z = self.leaf - torch.logit(self.u)
        self.z_tilde = conditional_logistic(self.leaf, self.b, torch.rand_like(self.u))
        relaxed = [torch.sigmoid(self.z / self.temperature), torch.sigmoid(self.z_tilde / self.temperature)]
        msg["value"] = torch.cat([self.b, *relaxed])
        fn, base = cast(dist.TorchDistribution, msg["fn"]), cast(dist.Bernoulli, bernoulli_base(msg["fn"]))
        event_dim = fn.event_dim  # the base, a Bernoulli (refused otherwise above), has none
        soft = SoftBernoulli(base.logits.detach(), float(torch.as_tensor(self.temperature).detach()))
        msg["fn"] = soft.to_event(event_dim) if event_dim else soft


class RebarELBO(AntitheticELBO):
    """The ELBO with the guide's Bernoulli logits' gradient estimated by REBAR from K draws per datum
    (the module docstring), at the fixed control-variate scale ``eta`` and ``temperature`` lambda.
    Its loss, surrogate and backward are :class:`AntitheticELBO`'s, from its ``_terms``."""

    def __init__(
        self, num_draws: int, max_plate_nesting: int, data_plate: str, eta: float = 1.0, temperature: float = 0.5
    ) -> None:
        if num_draws < 1:
            raise ValueError(f"rebar needs K >= 1 draws (--num-particles), got {num_draws}")
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"rebar's temperature must be a finite number > 0, got {temperature!r}")
        if not (isinstance(eta, (int, float)) and math.isfinite(eta)):
            raise ValueError(f"rebar's eta (the control variate's scale) must be a finite number, got {eta!r}")
        ELBO.__init__(self, num_particles=num_draws, max_plate_nesting=max_plate_nesting)
        self.name, self.data_plate = "rebar", data_plate
        self.eta, self.temperature = float(eta), float(temperature)
        self.estimate: torch.Tensor | None = None

    def relaxation_temperature(self) -> float | torch.Tensor:
        """lambda of s(z) = sigmoid(z / lambda)."""
        return self.temperature

    def tuned_parameters(self) -> list[torch.Tensor]:
        """The control variate's parameters trained to lower the estimate's variance (REBAR's: none)."""
        return []

    def control_variate(self, f_relaxed: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """c(z) = eta f(s(z)), ``(K, M)``, from f at the relaxed values and z ``(K, ..., M, units...)``."""
        return self.eta * f_relaxed

    def _terms(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """``(f (K, M) at the hard draws with log q detached, the guide's surrogate sum_j stop(g_ij) phi_ij
        (M,), scale)``; without autograd (``loss``) the guide's term is zero. Keeps g in ``estimate``, with
        its graph to the control variate's parameters (if it has any)."""
        k, nesting = self.num_particles, self.max_plate_nesting
        temperature = self.relaxation_temperature()
        draws = RebarDraws(k, temperature, self.name)
        particles = particle_plate(3 * k, nesting)
        relaxed_model = Relaxed(lambda: float(torch.as_tensor(temperature).detach()))(model)
        model_trace, guide_trace = get_importance_trace(
            "flat", nesting + 1, particles(relaxed_model), draws(particles(guide)), args, kwargs
        )
        if draws.name is None:
            raise ValueError(f"the guide has no latent site: {self.name} needs one Bernoulli latent")
        needed_by = f"the {self.name} estimator"
        log_p, scale = sum_per_datum(model_trace, nesting, self.data_plate, needed_by)
        log_q, _ = sum_per_datum(guide_trace, nesting, self.data_plate, needed_by)
        f = torch.as_tensor(log_p) - torch.as_tensor(log_q)  # log q: stopped logits, the relaxed values' gradient
        f_hard, f_z, f_tilde = f.split(k)
        phi, m = draws.phi, f.shape[-1]
        if not torch.is_grad_enabled():
            return f_hard, torch.zeros(m, dtype=f.dtype, device=f.device), scale
        # f per (draw, datum) against phi's (draw, inner plates..., datum, units...); the data plate is at dim -1
        c_z, c_tilde = self.control_variate(f_z, draws.z), self.control_variate(f_tilde, draws.z_tilde)
        per_unit = (f_hard.detach() - c_tilde).reshape(k, *[1] * (nesting - 1), m, *[1] * (phi.dim() - nesting - 1))
        tuned = c_tilde.requires_grad and any(p.requires_grad for p in self.tuned_parameters())
        (relaxed,) = torch.autograd.grad((c_z - c_tilde).sum(), draws.leaf, retain_graph=True, create_graph=tuned)
        self.estimate = (per_unit * (draws.b - torch.sigmoid(phi.detach())) + relaxed) / k
        guide_term = (self.estimate.detach() * phi).movedim(nesting, 0).reshape(m, -1).sum(-1)
        return f_hard, guide_term, scale


@register_estimator("rebar")
def rebar(program, num_particles: int = 1, eta: float = 1.0, temperature: float = 0.5) -> Estimator:
    """REBAR (Tucker et al. 2017) for one layer of Bernoulli latents: unbiased, a relaxed control variate
    at fixed eta and temperature; K = num_particles draws, 3K evaluations"""
    elbo = RebarELBO(num_particles, program.max_plate_nesting, member(program, "data_plate_name"), eta, temperature)
    return Estimator("rebar", elbo, program.guide)


class RelaxControl(nn.Module):
    """RELAX's control variate c(z) = eta f(s(z)) + r(z) (Grathwohl et al. 2018): REBAR's with eta, the
    temperature lambda = exp(log_temperature) and a net r (an MLP on the ``units`` values of z, tanh)
    all learned by minimizing the estimate's variance."""

    def __init__(self, units: int, hidden: tuple[int, ...], eta: float, temperature: float) -> None:
        super().__init__()
        self.eta = nn.Parameter(torch.tensor(float(eta)))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.net = MLP(units, hidden, 1, "tanh")

    def forward(self, f_relaxed: torch.Tensor, z: torch.Tensor, nesting: int) -> torch.Tensor:
        """c(z) ``(K, M)`` from f at s(z) ``(K, M)`` and z ``(K, inner plates..., M, units...)``."""
        k, m = f_relaxed.shape
        return self.eta * f_relaxed + self.net(z.movedim(nesting, 1).reshape(k, m, -1)).squeeze(-1)


class RelaxELBO(RebarELBO):
    """RELAX for one layer of Bernoulli latents: REBAR's estimate with the control variate
    :class:`RelaxControl`, unbiased for any of its parameters. Each ``loss_and_grads`` also gives those
    parameters the gradient of sum (g_ij)^2, the variance of the estimate up to the (fixed) squared
    mean, so that the optimizer that steps the estimator's modules minimizes it (the paper's
    single-sample variance gradient)."""

    def __init__(self, num_draws: int, max_plate_nesting: int, data_plate: str, control: RelaxControl) -> None:
        super().__init__(num_draws, max_plate_nesting, data_plate)
        self.name, self.control = "relax", control

    def relaxation_temperature(self) -> torch.Tensor:
        return self.control.log_temperature.exp()

    def tuned_parameters(self) -> list[torch.Tensor]:
        return list(self.control.parameters())

    def control_variate(self, f_relaxed: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.control(f_relaxed, z, self.max_plate_nesting)

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """Backpropagate the variance of the estimate into the control variate, then the surrogate."""
        surrogate, loss = self._surrogate(*self._terms(model, guide, args, kwargs))
        if self.estimate is not None and self.estimate.requires_grad:
            variance = self.estimate.pow(2).sum()
            torch.autograd.backward(variance, inputs=self.tuned_parameters(), retain_graph=True)
        if surrogate.requires_grad:
            surrogate.backward()
        return loss


@register_estimator("relax")
def relax(
    program, num_particles: int = 1, eta: float = 1.0, temperature: float = 0.5, hidden: tuple[int, ...] = (50,)
) -> Estimator:
    """RELAX (Grathwohl et al. 2018) for one layer of Bernoulli latents: REBAR plus a learned net r(z) in the
    control variate, eta, temperature and r trained to minimize the variance; K = num_particles draws"""
    units = member(program, "z_dim")
    if units is None:
        raise ValueError("relax needs a program with one code of known size (z_dim) for its net r(z); use rebar")
    control = RelaxControl(units, tuple(hidden), eta, temperature)
    first = next(iter(program.parameters()), None)
    if first is not None:
        control.to(first)  # the program's dtype and device
    elbo = RelaxELBO(num_particles, program.max_plate_nesting, member(program, "data_plate_name"), control)
    return Estimator("relax", elbo, program.guide, nn.ModuleDict({"control": control}))
