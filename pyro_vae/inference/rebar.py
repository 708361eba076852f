r"""REBAR (Tucker et al. 2017) and RELAX (Grathwohl et al. 2018) for Bernoulli latents in one or more
layers, as Pyro ELBOs.

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
log p(x_i, b) at the hard draws.

**Several layers** (``sbn`` with ``layers=2``; :mod:`pyro_vae.inference.layerwise`): layer l's
estimate holds the layers above at the main (hard) chain's draws; f(b) is the main chain's, continued
below by its hard draws, and the control variate c(z_l) = eta f(s(z_l), s_{>l}) continues the relaxed
value below by relaxed draws s_m = sigmoid((phi_m(s_{m-1}) - logit(u_m)) / lambda) with the main
chain's noise u_m: a smooth function of z_l, the same for z_l and z~_l, whose noise is independent
of the layer's, so each layer's g stays unbiased (continuing with hard draws, as the DisARM
authors' RELAX code does, would make c jump with z_l and its pathwise term miss the jumps). log q of
those continued layers keeps its logits' dependence on the relaxed values above (only the layer's own
logits are stopped).

With K = ``num_particles`` independent draws per datum, g is their mean, and the surrogate is

    (N/M) sum_i [ (1/K) sum_k (log p(x_i, b_ik) - stop(log q(b_ik|x_i))) + sum_{l, j} stop(g_lij) phi_lij ],

whose value is the ELBO estimate (the mean of f over the K hard draws).

eta and lambda are options (``--estimator-option eta=1 --estimator-option temperature=0.5``, the paper's default
temperature), fixed by default. With ``tune=True`` (``--estimator-option tune=True``) they are REBAR's online
tuning (Tucker et al. 2017, section 3.3): eta and log lambda become parameters (:class:`RebarControl`) that each
training step moves down the single-sample gradient of the estimate's variance, E[2 g dg/d(eta, lambda)] (the
squared mean does not depend on them since g is unbiased for every eta and lambda), as RELAX does.

``relax`` replaces eta f(s(z)) by c(z) = eta f(s(z)) + r(z) (:class:`RelaxControl`, r an MLP on the
layer's z, one net for every layer; the same estimate with c in place of eta f(s(.)) is unbiased for
any c), and learns eta, lambda and r by minimizing the variance: each training step also gives them
the gradient of sum g^2 over every layer (through the estimate, by double backpropagation). The learned
parameters (tuned REBAR's and RELAX's) live in the estimator's ``modules`` (checkpointed, stepped by the
run's optimizer).

**Cost:** with L layers each draw evaluates f 2L + 1 times (the decoder on K (2L + 1) codes per datum:
b, and s(z_l), s(z~_l) continued below for each layer; 3K for one layer) and backpropagates the
relaxed ones once more, so a one-layer step costs about as much as 3K-particle VIMCO. The guide
runs once more (one chain per datum, without gradients) to find the layers.

**Scope:** as ARM's: every latent site of the guide a Bernoulli (possibly ``.to_event``) in the data
plate; any other latent is refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import pyro.distributions as dist
import torch
from pyro.poutine.runtime import Message
from torch import nn

from pyro_vae.inference.estimators import Estimator, register_estimator
from pyro_vae.inference.layerwise import (
    LayerwiseDraws,
    LayerwiseELBO,
    latent_sites,
    open_uniform,
    per_datum_sum,
    per_unit,
)
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


def check_relaxation(name: str, eta: float, temperature: float) -> None:
    """Refuse, naming the estimator ``name``, an ``eta`` that is not a finite number or a ``temperature``
    that is not a finite number > 0."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"{name}'s temperature must be a finite number > 0, got {temperature!r}")
    if not (isinstance(eta, (int, float)) and math.isfinite(eta)):
        raise ValueError(f"{name}'s eta (the control variate's scale) must be a finite number, got {eta!r}")


class RebarDraws(LayerwiseDraws):
    """The chains of REBAR's estimate per layer (module docstring): group 0 the K main chains of hard
    draws b; groups 2l + 1 and 2l + 2 the chains whose layer l is s(z_l) and s(z~_l), the layers above
    it the main chains' values, those below it relaxed with the main chains' noise. Each site's log
    density becomes the continuous extension's, its logits stopped except in the relaxed chains of
    the layers above. Keeps per layer ``leaf`` (a detached copy of phi requiring grad, through which
    the relaxed values are computed), ``z`` and ``z_tilde``."""

    def __init__(self, sites: list[str], num_draws: int, temperature: float | torch.Tensor, estimator: str) -> None:
        super().__init__(sites, num_draws, estimator)
        self.temperature = temperature
        self.leaf: list[torch.Tensor] = []
        self.z: list[torch.Tensor] = []
        self.z_tilde: list[torch.Tensor] = []

    @staticmethod
    def groups(layers: int) -> int:
        return 2 * layers + 1

    def values(self, layer: int, logits: torch.Tensor, msg: Message) -> torch.Tensor:
        b, u = self.b[layer], self.u[layer]
        self.leaf.append(self.phi[layer].detach().requires_grad_())
        self.z.append(self.leaf[layer] - torch.logit(u))
        self.z_tilde.append(conditional_logistic(self.leaf[layer], b, open_uniform(u)))
        above = logits[1 : 2 * layer + 1]  # the relaxed chains of the layers above, continued through this one
        below = self.groups(len(self.sites)) - 2 * layer - 3  # the chains that branch at a later layer
        relaxed = [above - torch.logit(u), self.z[layer][None], self.z_tilde[layer][None]]
        stopped = logits.detach()
        fn = cast(dist.TorchDistribution, msg["fn"])
        soft = SoftBernoulli(
            torch.cat([stopped[:1], above, stopped[2 * layer + 1 :]]).flatten(0, 1),
            float(torch.as_tensor(self.temperature).detach()),
        )
        msg["fn"] = soft.to_event(fn.event_dim) if fn.event_dim else soft  # the base, a Bernoulli, has none
        return torch.cat([b[None], *(torch.sigmoid(z / self.temperature) for z in relaxed), b.expand(below, *b.shape)])


class RebarELBO(LayerwiseELBO):
    """The ELBO with the guide's Bernoulli logits' gradient estimated by REBAR from K draws per datum
    and layer (the module docstring), at the fixed control-variate scale ``eta`` and ``temperature``
    lambda."""

    name = "rebar"

    def __init__(
        self, num_draws: int, max_plate_nesting: int, data_plate_name: str, eta: float = 1.0, temperature: float = 0.5
    ) -> None:
        super().__init__(num_draws, max_plate_nesting, data_plate_name, "elbo", "draws")
        check_relaxation(self.name, eta, temperature)
        self.eta, self.temperature = float(eta), float(temperature)
        self.estimate: list[torch.Tensor] = []

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
        """``(the mean of f (M,) over the hard draws, log q detached, the guide's surrogate sum_l sum_j
        stop(g_lj) phi_lj per datum (M,), scale)``; without autograd (``loss``) the guide's term is zero.
        Keeps g per layer in ``estimate``, with its graph to the control variate's parameters (if any)."""
        k, nesting = self.num_particles, self.max_plate_nesting
        temperature = self.relaxation_temperature()
        draws = RebarDraws(latent_sites(guide, args, kwargs, self.name), k, temperature, self.name)
        relaxed_model = Relaxed(lambda: float(torch.as_tensor(temperature).detach()))(model)
        log_p, log_q, scale = self._log_densities(relaxed_model, guide, draws, args, kwargs)
        f = log_p - log_q  # log q: stopped logits (the layer's own), the relaxed values' gradient
        objective = self.bound(f[0])
        if not torch.is_grad_enabled():
            return objective, torch.zeros_like(objective), scale
        c_z = [self.control_variate(f[2 * layer + 1], z) for layer, z in enumerate(draws.z)]
        c_tilde = [self.control_variate(f[2 * layer + 2], z) for layer, z in enumerate(draws.z_tilde)]
        tuned = any(c.requires_grad for c in c_tilde) and any(p.requires_grad for p in self.tuned_parameters())
        difference = torch.stack([(a - b).sum() for a, b in zip(c_z, c_tilde, strict=True)]).sum()
        relaxed = torch.autograd.grad(difference, draws.leaf, retain_graph=True, create_graph=tuned)
        self.estimate = [
            (per_unit(f[0].detach() - c, phi, nesting) * (b - torch.sigmoid(phi.detach())) + g) / k
            for c, phi, b, g in zip(c_tilde, draws.phi, draws.b, relaxed, strict=True)
        ]
        guide_term = sum(per_datum_sum(g.detach() * phi, nesting) for g, phi in zip(self.estimate, draws.phi))
        return objective, torch.as_tensor(guide_term), scale


class RebarControl(nn.Module):
    """Tuned REBAR's control variate c(z) = eta f(s(z)), with eta and the temperature
    lambda = exp(log_temperature) learned by minimizing the estimate's variance."""

    def __init__(self, eta: float, temperature: float) -> None:
        super().__init__()
        self.eta = nn.Parameter(torch.tensor(float(eta)))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))

    def forward(self, f_relaxed: torch.Tensor, z: torch.Tensor, nesting: int) -> torch.Tensor:
        """c(z) ``(K, M)`` from f at s(z) ``(K, M)`` and z ``(K, inner plates..., M, units...)``."""
        return self.eta * f_relaxed


class RelaxControl(RebarControl):
    """RELAX's control variate c(z) = eta f(s(z)) + r(z) (Grathwohl et al. 2018): tuned REBAR's plus a net
    r (an MLP on the ``units`` values of a layer's z, tanh, shared by the layers), all learned by
    minimizing the estimate's variance."""

    def __init__(self, units: int, hidden: tuple[int, ...], eta: float, temperature: float) -> None:
        super().__init__(eta, temperature)
        self.net = MLP(units, hidden, 1, "tanh")

    def forward(self, f_relaxed: torch.Tensor, z: torch.Tensor, nesting: int) -> torch.Tensor:
        k, m = f_relaxed.shape
        return super().forward(f_relaxed, z, nesting) + self.net(z.movedim(nesting, 1).reshape(k, m, -1)).squeeze(-1)


class TunedRebarELBO(RebarELBO):
    """REBAR's estimate with a learned control variate (:class:`RebarControl`: tuned REBAR;
    :class:`RelaxControl`: RELAX), unbiased for any of its parameters. Each ``loss_and_grads`` also gives
    those parameters the gradient of sum g^2 over the layers, the variance of the estimate up to the
    (fixed) squared mean, so that the optimizer that steps the estimator's modules minimizes it (the
    papers' single-sample variance gradient). ``name``: the estimator's, in its refusals."""

    def __init__(
        self, num_draws: int, max_plate_nesting: int, data_plate_name: str, control: RebarControl, name: str
    ) -> None:
        self.name = name  # before the checks of the base class, which name the estimator
        super().__init__(num_draws, max_plate_nesting, data_plate_name)
        self.control = control

    def relaxation_temperature(self) -> torch.Tensor:
        return self.control.log_temperature.exp()

    def tuned_parameters(self) -> list[torch.Tensor]:
        return list(self.control.parameters())

    def control_variate(self, f_relaxed: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.control(f_relaxed, z, self.max_plate_nesting)

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """Backpropagate the variance of the estimate into the control variate, then the surrogate."""
        surrogate, loss = self._surrogate(*self._terms(model, guide, args, kwargs))
        if any(g.requires_grad for g in self.estimate):
            variance = torch.stack([g.pow(2).sum() for g in self.estimate]).sum()
            torch.autograd.backward(variance, inputs=self.tuned_parameters(), retain_graph=True)
        if surrogate.requires_grad:
            surrogate.backward()
        return loss


def tuned_estimator(program, num_particles: int, control: RebarControl, name: str) -> Estimator:
    """The estimator ``name``: :class:`TunedRebarELBO` with ``control``, moved to the program's dtype and device,
    as the estimator's ``modules``."""
    first = next(iter(program.parameters()), None)
    if first is not None:
        control.to(first)
    elbo = TunedRebarELBO(num_particles, program.max_plate_nesting, member(program, "data_plate_name"), control, name)
    return Estimator(name, elbo, program.guide, nn.ModuleDict({"control": control}))


@register_estimator("rebar")
def rebar(program, num_particles: int = 1, eta: float = 1.0, temperature: float = 0.5, tune: bool = False) -> Estimator:
    """REBAR (Tucker et al. 2017) for Bernoulli latents, layer-wise for several layers: unbiased, a relaxed
    control variate at fixed eta and temperature, or with tune=True both learned online by minimizing the
    variance (the paper's); K = num_particles draws, K (2L + 1) evaluations for L layers"""
    if not isinstance(tune, bool):
        raise ValueError(f"rebar's tune must be True or False, got {tune!r}")
    if tune:  # eta and temperature become parameters, learned
        check_relaxation("rebar", eta, temperature)
        return tuned_estimator(program, num_particles, RebarControl(eta, temperature), "rebar")
    elbo = RebarELBO(num_particles, program.max_plate_nesting, member(program, "data_plate_name"), eta, temperature)
    return Estimator("rebar", elbo, program.guide)


@register_estimator("relax")
def relax(
    program, num_particles: int = 1, eta: float = 1.0, temperature: float = 0.5, hidden: tuple[int, ...] = (50,)
) -> Estimator:
    """RELAX (Grathwohl et al. 2018) for Bernoulli latents, layer-wise: REBAR plus a learned net r(z) in the
    control variate, eta, temperature and r trained to minimize the variance; K = num_particles draws"""
    units = member(program, "z_dim")
    if units is None:
        raise ValueError("relax needs a program with one code of known size (z_dim) for its net r(z); use rebar")
    check_relaxation("relax", eta, temperature)
    return tuned_estimator(program, num_particles, RelaxControl(units, tuple(hidden), eta, temperature), "relax")
