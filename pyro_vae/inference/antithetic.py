r"""Antithetic estimators for one layer of Bernoulli latents: ARM (Yin & Zhou 2019) and DisARM
(Dong, Mnih & Tucker 2020), as Pyro ELBOs.

For datum x_i with a factorized guide q(b|x_i) = prod_j Bernoulli(b_j; sigmoid(phi_ij)) and
f(b) = log p(x_i, b) - log q(b|x_i), one uniform vector u ~ U(0, 1)^d gives the antithetic pair

    b = 1[u < sigmoid(phi)],    b~ = 1[1 - u < sigmoid(phi)]   (= 1[u > sigmoid(-phi)]),

each marginally a draw of q. The gradient of E_q[f] with respect to the logits phi is estimated by

``arm``
    g = (f(b~) - f(b)) (u - 1/2)                                   (Yin & Zhou 2019);
``disarm``
    g = 1/2 (f(b) - f(b~)) (-1)^{b~} 1[b != b~] sigmoid(abs(phi))   (Dong et al. 2020),
    ARM with u integrated out given the pair: never more variance than ARM.

Both are unbiased for the gradient of the ELBO E_q[f]. Its explicit dependence on phi through
-log q(b|x) contributes E_q[-grad_phi log q(b|x)] = 0: it is dropped here (unbiased either way,
and one noise term fewer), so the estimate is g alone. With K = ``num_particles`` independent
pairs per datum, g is the mean of the K pairs' estimates, and the guide's parameters get their
gradient through the logits, from the surrogate

    (N/M) sum_i [ (1/2K) sum_{k, pair} (log p(x_i, b_ik) - stop(log q(b_ik|x_i)))
                  + sum_j stop(g_ij) phi_ij ],

whose first term also gives the model's parameters the pathwise gradient of log p averaged over
the 2K evaluations. Its value is the ELBO estimate (the mean of f over the 2K draws).

**Cost:** each pair evaluates f twice (the decoder on 2K codes per datum; the encoder once), so a
step with K pairs costs about as much as VIMCO or ``score-loo`` with 2K particles; one pair
(the default) is comparable to K = 2 VIMCO.

**Scope:** the guide must have exactly one latent site, a Bernoulli (possibly ``.to_event``), in
the data plate: a one-layer sigmoid belief network (``sbn`` with ``layers=1``, linear or
nonlinear). Any other latent is refused by name: a non-Bernoulli one (use a score-function
estimator or ``gumbel``), and a second Bernoulli layer (the layer-wise estimator of the papers'
multi-layer networks is not implemented here; use ``vimco``, ``score-loo`` or ``score-nvil``).
"""

from __future__ import annotations

from collections.abc import Callable

import pyro.distributions as dist
import torch
from pyro.infer import ELBO
from pyro.infer.enum import get_importance_trace
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message
from pyro.poutine.util import site_is_subsample

from pyro_vae.inference.estimators import Estimator, register_estimator
from pyro_vae.inference.log_weights import particle_plate, sum_per_datum
from pyro_vae.models.program import member

#: ``(f(b), f(b~), u, phi, b, b~) -> g``: the estimate of grad_phi E_q[f] from one antithetic pair,
#: f of shape ``phi``'s (broadcast over the units), the rest of ``phi``'s shape.
PairWeight = Callable[..., torch.Tensor]


def arm_weight(f_b, f_anti, u, phi, b, anti) -> torch.Tensor:
    """ARM: (f(b~) - f(b)) (u - 1/2), with b~ = 1[u > sigmoid(-phi)] and b = 1[u < sigmoid(phi)]."""
    return (f_anti - f_b) * (u - 0.5)


def disarm_weight(f_b, f_anti, u, phi, b, anti) -> torch.Tensor:
    """DisARM: 1/2 (f(b) - f(b~)) (-1)^{b~} 1[b != b~] sigmoid(abs(phi)), with (-1)^{b~} 1[b != b~] = b - b~."""
    return 0.5 * (f_b - f_anti) * (b - anti) * torch.sigmoid(phi.abs())


def bernoulli_base(fn: object) -> object:
    """The distribution under ``fn``'s ``Independent`` wrappers (``.to_event``): a site's ``fn``."""
    while isinstance(fn, dist.Independent):
        fn = fn.base_dist
    return fn


class AntitheticPairs(Messenger):
    """Handler around a guide traced in a particle plate of 2K: its one latent Bernoulli site takes
    the values ``(b_1..b_K, b~_1..b~_K)`` of K antithetic pairs (module docstring); any other latent
    is refused by name. Keeps the site's ``name``, its logits phi ``(K, ...)``, ``u``, ``b``, ``anti``."""

    def __init__(self, num_pairs: int, estimator: str) -> None:
        super().__init__()
        self.num_pairs, self.estimator = num_pairs, estimator
        self.name: str | None = None

    def _pyro_sample(self, msg: Message) -> None:
        if msg["is_observed"] or site_is_subsample(msg):
            return
        base = bernoulli_base(msg["fn"])
        if not isinstance(base, dist.Bernoulli):
            raise ValueError(
                f"site {msg['name']!r} is a {type(base).__name__} latent: {self.estimator} takes Bernoulli latents "
                "only; use a score-function estimator (vimco, score-loo, score-nvil), or reparam for a "
                "continuous latent"
            )
        if self.name is not None:
            raise ValueError(
                f"site {msg['name']!r} is a second latent after {self.name!r}: {self.estimator} takes one layer of "
                "Bernoulli latents (one site; the layer-wise version is not implemented); use vimco, score-loo or "
                "score-nvil"
            )
        k = self.num_pairs
        self.phi = base.logits[:k]  # the particle plate (dim 0 after broadcasting) holds 2K equal copies
        probs = torch.sigmoid(self.phi.detach())
        self.u = torch.rand_like(probs)
        self.b, self.anti = (self.u < probs).to(probs.dtype), (1 - self.u < probs).to(probs.dtype)
        msg["value"] = torch.cat([self.b, self.anti])
        self.name = msg["name"]


class AntitheticELBO(ELBO):
    """The ELBO with the guide's Bernoulli logits' gradient estimated from K antithetic pairs per
    datum by ``weight`` (:func:`arm_weight`, :func:`disarm_weight`): the module docstring."""

    def __init__(self, name: str, weight: PairWeight, num_pairs: int, max_plate_nesting: int, data_plate: str):
        if num_pairs < 1:
            raise ValueError(f"{name} needs K >= 1 antithetic pairs (--num-particles), got {num_pairs}")
        super().__init__(num_particles=num_pairs, max_plate_nesting=max_plate_nesting)
        self.name, self.weight, self.data_plate = name, weight, data_plate

    def _terms(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """``(f (2K, M) with log q detached, the guide's surrogate sum_j stop(g_ij) phi_ij (M,), scale)``."""
        k, nesting = self.num_particles, self.max_plate_nesting
        pairs = AntitheticPairs(k, self.name)
        particles = particle_plate(2 * k, nesting)
        model_trace, guide_trace = get_importance_trace(
            "flat", nesting + 1, particles(model), pairs(particles(guide)), args, kwargs
        )
        if pairs.name is None:
            raise ValueError(f"the guide has no latent site: {self.name} needs one Bernoulli latent")
        needed_by = f"the {self.name} estimator"
        log_p, scale = sum_per_datum(model_trace, nesting, self.data_plate, needed_by)
        log_q, _ = sum_per_datum(guide_trace, nesting, self.data_plate, needed_by)
        f = torch.as_tensor(log_p) - torch.as_tensor(log_q).detach()  # sum_per_datum: a tensor for a program with sites
        # f per (particle, datum) against phi's (pair, inner plates..., datum, units...); the data plate is at dim -1
        phi, m = pairs.phi, f.shape[-1]
        per_unit = f.detach().reshape(2 * k, *[1] * (nesting - 1), m, *[1] * (phi.dim() - nesting - 1))
        g = self.weight(per_unit[:k], per_unit[k:], pairs.u, phi.detach(), pairs.b, pairs.anti) / k
        guide_term = (g * phi).movedim(nesting, 0).reshape(m, -1).sum(-1)
        return f, guide_term, scale

    def _surrogate(self, f: torch.Tensor, guide_term: torch.Tensor, scale) -> tuple[torch.Tensor, float]:
        scale = torch.as_tensor(scale, dtype=f.dtype, device=f.device)
        objective = f.mean(0)
        return -(scale * (objective + guide_term)).sum(), -(scale * objective).sum().item()

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError(f"{type(self).__name__} draws its antithetic pairs jointly; see _terms")

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """-(N/M) sum_i of the ELBO estimate (the mean of f over the 2K draws)."""
        with torch.no_grad():
            return self._surrogate(*self._terms(model, guide, args, kwargs))[1]

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """The surrogate loss, whose gradient is the estimator's."""
        return self._surrogate(*self._terms(model, guide, args, kwargs))[0]

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """Backpropagate the surrogate; return -(N/M) sum_i of the ELBO estimate."""
        surrogate, loss = self._surrogate(*self._terms(model, guide, args, kwargs))
        if surrogate.requires_grad:
            surrogate.backward()
        return loss


def _register(name: str, weight: PairWeight, help: str) -> None:
    def build(program, num_particles: int = 1) -> Estimator:
        elbo = AntitheticELBO(
            name, weight, num_particles, program.max_plate_nesting, member(program, "data_plate_name")
        )
        return Estimator(name, elbo, program.guide)

    register_estimator(name, build, help=help)


_register(
    "arm",
    arm_weight,
    "ARM (Yin & Zhou 2019) for one layer of Bernoulli latents: K = num_particles antithetic pairs, "
    "2K evaluations (1 pair ~ K = 2 VIMCO in cost)",
)
_register(
    "disarm",
    disarm_weight,
    "DisARM (Dong et al. 2020): ARM with the noise integrated out given the pair, never more variance; "
    "K = num_particles pairs",
)
