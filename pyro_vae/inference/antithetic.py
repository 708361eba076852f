r"""Antithetic estimators for Bernoulli latents in one or more layers: ARM (Yin & Zhou 2019) and DisARM
(Dong, Mnih & Tucker 2020), of the ELBO and (``disarm-k``) of the K-sample bound, as Pyro ELBOs.

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
and one noise term fewer), so the estimate is g alone.

**Several layers** (``sbn`` with ``layers=2``; :mod:`pyro_vae.inference.layerwise`): layer l's
pair holds the layers above at the main chain's draws, b is the main chain's own value of layer l
continued by its own draws below, and b~ is continued by draws of the layers below given b~ (the
papers' layer-wise estimators), so that f(b) and f(b~) are one-draw estimates of
E[f | b_{<=l}] and g is unbiased for each layer's logits. (The DisARM authors' code continues both
members of each layer's pair by fresh draws, 2L evaluations beyond the main chain; reusing the main
chain for b costs L + 1 in all.)

**K pairs and the bound** F of K main chains (:data:`~pyro_vae.inference.layerwise.BOUNDS`): each
chain k's estimate is the pair weight of F(b_1..b_K) against F with b_k's layer-l value replaced
by b~ (the others held fixed). For the ELBO, F = (1/K) sum_k f(b_k), this is g / K per pair: the
mean of the K pairs' estimates. ``disarm-k`` estimates the gradient of the K-sample bound
F = log (1/K) sum_k exp f(b_k) (Burda et al. 2016), the multi-sample DisARM of Dong et al. 2020
("local" DisARM, set beside VIMCO with 2K samples). The surrogate is

    (N/M) sum_i [ F^_i + sum_{l, j} stop(g_lij) phi_lij ],

phi_l at the main chains; F^ (the loss's estimate, whose pathwise gradient the model's parameters
get) is F of the main chains for the K-sample bound, and for the ELBO the mean of f over every
chain, main and antithetic, each a draw of q. For the ELBO, log q enters F^ with its gradient
stopped (as above); the K-sample bound keeps it, since E[grad_phi F] at fixed draws is not zero there
(the guide's parameters get it through log q, as VIMCO's do).

**Cost:** with L layers a step traces K (L + 1) chains per datum, i.e. evaluates f (the decoder)
K (L + 1) times: 2K for one layer, so one pair costs about as much as K = 2 VIMCO, and ``disarm-k``
with K pairs as VIMCO with 2K samples. The guide runs once more (one chain
per datum, without gradients) to find the layers.

**Scope:** every latent site of the guide a Bernoulli (possibly ``.to_event``) in the data plate;
any other latent is refused by name: a non-Bernoulli one (use a score-function estimator or
``gumbel``), one outside the data plate (no per-datum f).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.poutine.runtime import Message

from pyro_vae.inference.estimators import Estimator, register_estimator
from pyro_vae.inference.layerwise import LayerwiseDraws, LayerwiseELBO, fresh, latent_sites, per_datum_sum, per_unit
from pyro_vae.models.program import member

#: ``(F(b), F(b~), u, phi, b, b~) -> g``: the estimate of grad_phi E_q[F] from one antithetic pair,
#: F of shape ``phi``'s (broadcast over the units), the rest of ``phi``'s shape.
PairWeight = Callable[..., torch.Tensor]


def arm_weight(f_b, f_anti, u, phi, b, anti) -> torch.Tensor:
    """ARM: (f(b~) - f(b)) (u - 1/2), with b~ = 1[u > sigmoid(-phi)] and b = 1[u < sigmoid(phi)]."""
    return (f_anti - f_b) * (u - 0.5)


def disarm_weight(f_b, f_anti, u, phi, b, anti) -> torch.Tensor:
    """DisARM: 1/2 (f(b) - f(b~)) (-1)^{b~} 1[b != b~] sigmoid(abs(phi)), with (-1)^{b~} 1[b != b~] = b - b~."""
    return 0.5 * (f_b - f_anti) * (b - anti) * torch.sigmoid(phi.abs())


class AntitheticPairs(LayerwiseDraws):
    """The chains of K antithetic pairs per layer (module docstring): group 0 the K main chains,
    group l + 1 the chains whose layer l is the main chains' b~ = 1[1 - u < sigmoid(phi)], the layers
    above it the main chains' values, those below it fresh draws. Keeps per layer ``anti``, b~."""

    def __init__(self, sites: list[str], num_pairs: int, estimator: str) -> None:
        super().__init__(sites, num_pairs, estimator)
        self.anti: list[torch.Tensor] = []

    @staticmethod
    def groups(layers: int) -> int:
        return layers + 1

    def values(self, layer: int, logits: torch.Tensor, msg: Message) -> torch.Tensor:
        b, u = self.b[layer], self.u[layer]
        self.anti.append((1 - u < torch.sigmoid(self.phi[layer].detach())).to(b.dtype))
        below = self.groups(len(self.sites)) - layer - 2  # the chains that branch at a later layer
        return torch.cat([b[None], fresh(logits[1 : layer + 1]), self.anti[layer][None], b.expand(below, *b.shape)])


class AntitheticELBO(LayerwiseELBO):
    """The ELBO (or ``bound``) with the guide's Bernoulli logits' gradient estimated from K antithetic
    pairs per datum and layer by ``weight`` (:func:`arm_weight`, :func:`disarm_weight`): the module
    docstring."""

    def __init__(
        self,
        name: str,
        weight: PairWeight,
        num_pairs: int,
        max_plate_nesting: int,
        data_plate_name: str,
        bound: str = "elbo",
    ) -> None:
        self.name, self.weight = name, weight
        super().__init__(num_pairs, max_plate_nesting, data_plate_name, bound, "antithetic pairs")

    def _terms(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """``(F^ (M,), the guide's surrogate sum_l sum_j stop(g_lj) phi_lj per datum (M,), scale)``."""
        k, nesting = self.num_particles, self.max_plate_nesting
        pairs = AntitheticPairs(latent_sites(guide, args, kwargs, self.name), k, self.name)
        log_p, log_q, scale = self._log_densities(model, guide, pairs, args, kwargs)
        f = log_p - (log_q if self.bound.explicit_q else log_q.detach())
        f_main, f_branch = f[0], f[1:]
        bound = self.bound(f_main.detach()).expand_as(f_main)  # F(b), the same for each of the K chains
        swapped = self.bound.swapped(f_main.detach(), f_branch.detach())  # F with chain k's layer l antithetic
        guide_term = sum(
            per_datum_sum(
                self.weight(per_unit(bound, phi, nesting), per_unit(anti_f, phi, nesting), u, phi.detach(), b, anti)
                * phi,
                nesting,
            )
            for anti_f, phi, u, b, anti in zip(swapped, pairs.phi, pairs.u, pairs.b, pairs.anti, strict=True)
        )
        return self.bound.estimate(f_main, f_branch), torch.as_tensor(guide_term), scale


def _register(name: str, weight: PairWeight, bound: str, help: str) -> None:
    def build(program, num_particles: int = 1) -> Estimator:
        elbo = AntitheticELBO(
            name, weight, num_particles, program.max_plate_nesting, member(program, "data_plate_name"), bound
        )
        return Estimator(name, elbo, program.guide, objective=elbo.bound.objective)

    register_estimator(name, build, help=help)


_register(
    "arm",
    arm_weight,
    "elbo",
    "ARM (Yin & Zhou 2019) for Bernoulli latents, layer-wise for several layers: K = num_particles antithetic "
    "pairs, K (L + 1) evaluations for L layers (1 pair, 1 layer ~ K = 2 VIMCO in cost)",
)
_register(
    "disarm",
    disarm_weight,
    "elbo",
    "DisARM (Dong et al. 2020): ARM with the noise integrated out given the pair, never more variance; "
    "K = num_particles pairs",
)
_register(
    "disarm-k",
    disarm_weight,
    "iwae",
    "multi-sample DisARM (Dong et al. 2020): the K-sample bound's gradient from K = num_particles antithetic "
    "pairs (as VIMCO with 2K samples in cost)",
)
