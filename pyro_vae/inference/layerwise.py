r"""Layer-wise draws for the estimators of Bernoulli latents (ARM, DisARM, REBAR, RELAX) in one or more
stochastic layers, and the bounds they estimate the gradient of.

A guide whose latent sites z_1, ..., z_L (sampled in this order) are each a Bernoulli (possibly
``.to_event``) factorizes as the chain q(z_1|x) q(z_2|x, z_1) ... q(z_L|x, z_{<L}) with logits
phi_l = phi_l(x, z_{<l}), whatever its actual dependencies: a one-layer sigmoid belief network has
L = 1, ``sbn`` with ``layers=2`` has z, z2. The layer-wise estimators (Yin & Zhou 2019, multiple
stochastic layers; Dong et al. 2020, multi-layer; Tucker et al. 2017, multilayer) estimate the
gradient of E_q[F] with respect to each phi_l by the one-layer estimator applied to

    F_l(z_l) = E_{z_{>l} ~ q(.|x, z_{<=l})}[F],

with the layers above held at the draws z_{<l} of a *main* chain and each value of z_l the
estimator evaluates continued below by its own draws z_{>l} given it (one draw per value): since
those draws depend on the layer's noise only through z_l, each F_l is estimated without bias, and
so is the gradient of every layer. The guide's parameters get sum_l stop(g_l) phi_l, phi_l at the
main chain.

K independent main chains per datum are traced at once, with the chains each layer's estimator
needs, in a particle plate of G K particles: G groups of K, group 0 the main chains
(:class:`LayerwiseDraws`; the pairs of ARM and DisARM:
:class:`~pyro_vae.inference.antithetic.AntitheticPairs`; REBAR's relaxed chains:
:class:`~pyro_vae.inference.rebar.RebarDraws`). The number of layers L, which G depends on, is
read from one more run of the guide, one chain per datum and without gradients
(:func:`latent_sites`), which also refuses a latent that is not a Bernoulli by name; a latent
outside the data plate is refused by name where f per datum is summed.

The bound (:data:`BOUNDS`): ``elbo``, F = (1/K) sum_k f(z_k), the ELBO (each chain's
estimate divided by K); ``iwae``, F = log (1/K) sum_k exp f(z_k), the K-sample bound of
Burda et al. 2016, for which each chain's estimate holds the other K - 1 chains fixed
(Dong et al. 2020's multi-sample DisARM). Here f(z) = log p(x, z) - log q(z|x) per datum.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer.enum import get_importance_trace
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message
from pyro.poutine.util import site_is_subsample

from pyro_vae.inference.log_weights import particle_plate, sample_sites, sum_per_datum
from pyro_vae.inference.surrogate import SurrogateELBO


def bernoulli_base(fn: object) -> object:
    """The distribution under ``fn``'s ``Independent`` wrappers (``.to_event``): a site's ``fn``."""
    while isinstance(fn, dist.Independent):
        fn = fn.base_dist
    return fn


def latent_sites(guide, args: tuple, kwargs: dict, estimator: str) -> list[str]:
    """The names of the guide's latent sites in the order it samples them, from one run without
    gradients (hidden from any handler around the caller); a latent that is not a Bernoulli, or
    none at all, is refused by name."""
    with torch.no_grad(), poutine.block():
        trace = poutine.trace(guide).get_trace(*args, **kwargs)
    names = []
    for name, site in sample_sites(trace):
        if site["is_observed"]:
            continue
        base = bernoulli_base(site["fn"])
        if not isinstance(base, dist.Bernoulli):
            raise ValueError(
                f"site {name!r} is a {type(base).__name__} latent: {estimator} takes Bernoulli latents only; use a "
                "score-function estimator (vimco, score-loo, score-nvil), or reparam for a continuous latent"
            )
        names.append(name)
    if not names:
        raise ValueError(f"the guide has no latent site: {estimator} needs Bernoulli latents")
    return names


class LayerwiseDraws(Messenger):
    """Handler around a guide traced in a particle plate of ``groups(L) * K`` particles, over its
    latent sites ``sites`` (:func:`latent_sites`): at layer l's site it views the logits as
    ``(G, K, ...)``, draws the main chains' u ~ U(0, 1) and b = 1[u < sigmoid(phi)] and sets the
    site's value by :meth:`values`. Keeps per layer the main chains' logits ``phi[l]`` (with their
    graph), ``u[l]`` and ``b[l]``."""

    def __init__(self, sites: list[str], num_draws: int, estimator: str) -> None:
        super().__init__()
        self.sites, self.num_draws, self.estimator = sites, num_draws, estimator
        self.phi: list[torch.Tensor] = []
        self.u: list[torch.Tensor] = []
        self.b: list[torch.Tensor] = []

    @staticmethod
    def groups(layers: int) -> int:
        """G, the groups of K chains for ``layers`` layers."""
        raise NotImplementedError

    def values(self, layer: int, logits: torch.Tensor, msg: Message) -> torch.Tensor:
        """The values ``(G, K, ...)`` of layer ``layer``'s site from its logits ``(G, K, ...)``."""
        raise NotImplementedError

    def _pyro_sample(self, msg: Message) -> None:
        if msg["is_observed"] or site_is_subsample(msg):
            return
        layer = len(self.phi)
        if layer >= len(self.sites) or msg["name"] != self.sites[layer]:
            raise ValueError(
                f"site {msg['name']!r} is not the guide's latent number {layer + 1} of its first run {self.sites}: "
                f"{self.estimator} needs the same latent sites in the same order on every run"
            )
        logits = cast(dist.Bernoulli, bernoulli_base(msg["fn"])).logits  # latent_sites refused the others
        logits = logits.reshape(self.groups(len(self.sites)), self.num_draws, *logits.shape[1:])
        self.phi.append(logits[0])
        probs = torch.sigmoid(logits[0].detach())
        self.u.append(open_uniform(probs))
        self.b.append((self.u[-1] < probs).to(probs.dtype))
        msg["value"] = self.values(layer, logits, msg).flatten(0, 1)


def open_uniform(like: torch.Tensor) -> torch.Tensor:
    """Draws of U(0, 1) shaped like ``like``, kept off 0: ``torch.rand_like`` can return exactly 0
    (in float32, once in 2^24 draws), whose logit is -inf (and a relaxed value, and through RELAX's
    network every gradient, NaN); 0 becomes the dtype's smallest normal number, logit about -87."""
    return torch.rand_like(like).clamp_min(torch.finfo(like.dtype).tiny)


def fresh(logits: torch.Tensor) -> torch.Tensor:
    """Independent draws of Bernoulli(sigmoid(logits)), no gradient."""
    probs = torch.sigmoid(logits.detach())
    return (torch.rand_like(probs) < probs).to(probs.dtype)


def per_unit(values: torch.Tensor, phi: torch.Tensor, nesting: int) -> torch.Tensor:
    """``values`` per (chain, datum) ``(K, M)`` shaped to broadcast against logits ``phi`` of
    shape ``(K, inner plates..., M, units...)`` (the data plate at the batch's dim -1)."""
    k, m = values.shape
    return values.reshape(k, *[1] * (nesting - 1), m, *[1] * (phi.dim() - nesting - 1))


def per_datum_sum(terms: torch.Tensor, nesting: int) -> torch.Tensor:
    """``terms`` ``(K, inner plates..., M, units...)`` summed to one value per datum ``(M,)``."""
    m = terms.shape[nesting]
    return terms.movedim(nesting, 0).reshape(m, -1).sum(-1)


class Bound:
    """F(f_1..f_K) per datum, from the K main chains' f ``(K, M)`` along dim 0: the objective whose
    gradient a layer-wise estimator estimates, named ``objective`` as
    :class:`~pyro_vae.inference.estimators.Estimator`'s. ``explicit_q``: whether the estimate keeps
    the gradient of F through log q at fixed draws, E[grad_phi F]: zero for the ELBO (dropped, one
    noise term fewer), not for the K-sample bound."""

    objective = ""
    explicit_q = False

    def __call__(self, f: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def estimate(self, f_main: torch.Tensor, f_branch: torch.Tensor) -> torch.Tensor:
        """The bound's estimate ``(M,)`` from the main chains ``(K, M)`` and the chains ``(B, K, M)``
        that branch from them (each also a draw of q): F of the main chains."""
        return self(f_main)

    def swapped(self, f_main: torch.Tensor, f_branch: torch.Tensor) -> torch.Tensor:
        """F with main chain k replaced by branch ``[j, k]``, for each j and k: ``(B, K, M)``."""
        k = f_main.shape[0]
        rows = f_main.expand(*f_branch.shape[:-1], *f_main.shape).clone()  # (B, K, K, M): row k of chains
        index = torch.arange(k, device=f_main.device)
        rows[:, index, index] = f_branch
        return self(rows.movedim(-2, 0))


class ELBOBound(Bound):
    """The ELBO: F = (1/K) sum_k f_k; its estimate averages every chain, main and branched."""

    objective = "elbo"

    def __call__(self, f: torch.Tensor) -> torch.Tensor:
        return f.mean(0)

    def estimate(self, f_main: torch.Tensor, f_branch: torch.Tensor) -> torch.Tensor:
        return torch.cat([f_main.unsqueeze(0), f_branch]).mean((0, 1))


class ImportanceWeightedBound(Bound):
    """The K-sample bound F = log (1/K) sum_k exp f_k (Burda et al. 2016), of the K main chains."""

    objective = "iwae"
    explicit_q = True

    def __call__(self, f: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(f, 0) - math.log(f.shape[0])


#: The bounds a layer-wise estimator can estimate the gradient of, by ``Estimator.objective``.
BOUNDS: dict[str, Bound] = {bound.objective: bound for bound in (ELBOBound(), ImportanceWeightedBound())}


class LayerwiseELBO(SurrogateELBO):
    """The shared loss of the layer-wise estimators: subclasses' ``_terms`` give ``(the bound's
    estimate (M,), the guide's surrogate sum_l per datum of stop(g_l) phi_l (M,), scale)``; the
    loss is -(N/M) sum_i of the estimate, the surrogate -(N/M) sum_i of both terms, whose gradient
    is the estimator's (the model's parameters: the pathwise gradient of the estimate)."""

    name = ""

    def __init__(self, num_draws: int, max_plate_nesting: int, data_plate_name: str, bound: str, draws: str) -> None:
        if num_draws < 1:
            raise ValueError(f"{self.name} needs K >= 1 {draws} (--num-particles), got {num_draws}")
        super().__init__(num_particles=num_draws, max_plate_nesting=max_plate_nesting)
        self.data_plate_name, self.bound = data_plate_name, BOUNDS[bound]

    def _log_densities(self, model: Callable, guide: Callable, draws: LayerwiseDraws, args: tuple, kwargs: dict):
        """``(log p, log q, scale)``, each log density per (group, chain, datum) ``(G, K, M)``, of the
        program traced with ``draws`` around the guide in a particle plate of G K."""
        nesting, shape = self.max_plate_nesting, (draws.groups(len(draws.sites)), self.num_particles, -1)
        particles = particle_plate(shape[0] * shape[1], nesting)
        model_trace, guide_trace = get_importance_trace(
            "flat", nesting + 1, particles(model), draws(particles(guide)), args, kwargs
        )
        needed_by = f"the {self.name} estimator"
        log_p, scale = sum_per_datum(model_trace, nesting, self.data_plate_name, needed_by)
        log_q, _ = sum_per_datum(guide_trace, nesting, self.data_plate_name, needed_by)
        return torch.as_tensor(log_p).reshape(shape), torch.as_tensor(log_q).reshape(shape), scale

    def _surrogate(self, objective: torch.Tensor, guide_term: torch.Tensor, scale) -> tuple[torch.Tensor, float]:
        scale = torch.as_tensor(scale, dtype=objective.dtype, device=objective.device)
        return -(scale * (objective + guide_term)).sum(), -(scale * objective).sum().item()
