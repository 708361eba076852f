r"""Annealed importance sampling (AIS) of log p(x) per datum (Neal 2001; Wu et al. 2017).

AIS moves K chains per datum along the geometric path from an initial distribution
:math:`\pi_0(z)` to the posterior p(z | x), through the unnormalized densities

.. math::

    f_t(z) = \pi_0(z)^{1 - \beta_t}\, p(x, z)^{\beta_t}, \qquad 0 = \beta_0 < \beta_1 < \dots < \beta_T = 1,

with :math:`\pi_0` the prior p(z) (``start="prior"``: :math:`\log f_t = \log p(z) + \beta_t \log p(x \mid z)`)
or the guide q(z | x) (``start="guide"``). Each chain starts at :math:`z_0 \sim \pi_0`; at step t
its log-weight gains :math:`\log f_t(z_{t-1}) - \log f_{t-1}(z_{t-1}) = (\beta_t - \beta_{t-1})
(\log p(x, z_{t-1}) - \log \pi_0(z_{t-1}))`, then an HMC transition that leaves :math:`f_t` invariant
moves it. Since :math:`\pi_0` is normalized, each chain's weight :math:`w_k` has expectation p(x), and
:math:`\log \frac1K \sum_k w_k` is a stochastic lower bound of log p(x) (in expectation), exact as T
grows. The :math:`\beta_t` follow the sigmoid schedule of Grosse et al. (2015).

The program is any model/guide pair whose latents lie in the data plate (``data_plate_name``, at
``dim=-1``), as for :func:`~pyro_vae.inference.evaluate.importance_bounds`. ``log p(x, z)`` is the
model's trace conditioned on z (``pyro.poutine.condition``), each site's log density summed per
datum (:func:`~pyro_vae.inference.log_weights.sum_per_datum`), with the K chains drawn at once in
the particle plate; its gradient comes from ``torch.autograd.grad``. The latents are held as one
tensor ``(chains, batch, D)`` (:class:`LatentLayout`), so that every chain of every datum has its
own step size and its own accept/reject. The leapfrog steps are Pyro's
(:func:`pyro.ops.integrator.velocity_verlet`); Pyro's HMC kernel itself is not used, because it
adapts one step size and accepts or rejects the whole state at once, so it cannot run independent
chains per datum. Each chain's step size is multiplied by 1.02 after a transition whose acceptance
probability is above ``target_accept`` (0.65) and by 0.98 otherwise (Wu et al. 2017); a kernel so
adapted on its chain's own past is, strictly, outside AIS's unbiasedness argument, which Wu et al. accept
(the tests against closed forms find no bias).

Programs with discrete latents, latents of non-real support or latents outside the data plate
are refused by name. Bidirectional Monte Carlo (:func:`bdmc_bounds`) runs the same chains backwards
from an exact posterior sample of simulated data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions import constraints
from pyro.ops.integrator import velocity_verlet
from pyro.poutine import Trace
from torch.distributions.constraints import MixtureSameFamilyConstraint

from pyro_vae.inference.joint import global_sites
from pyro_vae.inference.log_weights import particle_plate, per_datum, sample_sites, site_distribution, site_value
from pyro_vae.registry import Registry
from pyro_vae.validation import COUNT, check_arguments, check_pass_fits

NEEDED_BY = "annealed importance sampling"


class LatentLayout:
    """The latent sites of a trace drawn with the particle plate, as one tensor ``(chains, batch, D)``:
    each site's value with its data dimension moved next to the chains and the rest flattened."""

    def __init__(self, trace: Trace, names: list[str]) -> None:
        self.parts = []
        sites = dict(sample_sites(trace))
        for name in names:
            site = sites[name]
            data_dim = len(site_distribution(site).batch_shape) - 1
            self.parts.append((name, data_dim, tuple(site_value(site).movedim(data_dim, 1).shape[2:])))
        self.names = names
        self.size = sum(math.prod(shape) for _, _, shape in self.parts)

    def flatten(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """The values of the sites, ``(chains, batch, D)``."""
        parts = [values[name].movedim(dim, 1) for name, dim, _ in self.parts]
        return torch.cat([part.reshape(*part.shape[:2], -1) for part in parts], -1)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The values of the sites, each in its own shape, from ``flat`` ``(chains, batch, D)``."""
        values, start = {}, 0
        for name, dim, shape in self.parts:
            size = math.prod(shape)
            values[name] = flat[..., start : start + size].reshape(*flat.shape[:2], *shape).movedim(1, dim)
            start += size
        return values


def _check_support(name: str, support: constraints.Constraint | None) -> None:
    """Refuse a latent HMC cannot move: one whose support is not the real line in each coordinate
    (a mixture of such components included), a discrete one first of all."""
    constraint = support
    while isinstance(constraint, (constraints.independent, MixtureSameFamilyConstraint)):
        constraint = constraint.base_constraint
    if constraint is not constraints.real:
        kind = "discrete" if support is not None and support.is_discrete else "non-real"
        raise ValueError(
            f"the latent site {name!r} has {kind} support {support}: {NEEDED_BY} moves continuous latents of "
            "real support with HMC"
        )


class AnnealingPath:
    """The densities along the path for a batch ``x``: :meth:`log_densities` gives, for latents
    ``(chains, batch, D)``, ``log p(x, z)`` and ``log pi_0(z)``, each ``(chains, batch)``.

    ``observed`` conditions the model's observed sites on other values (data simulated from the
    model, :func:`bdmc_bounds`). The latents are the model's unobserved sample sites; a discrete
    one, one of non-real support or one outside the data plate is refused with its name."""

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        x: torch.Tensor,
        kwargs: dict,
        start: str = "prior",
        max_plate_nesting: int = 1,
        data_plate_name: str = "data",
        observed: dict[str, torch.Tensor] | None = None,
    ) -> None:
        shared = global_sites(model, guide, x, max_plate_nesting, data_plate_name=data_plate_name, **kwargs)
        if shared:
            raise ValueError(
                f"the sites {shared} lie outside the data plate {data_plate_name!r} (latents shared by all data): "
                f"{NEEDED_BY} estimates log p(x) per datum; evaluate(program, batches) gives the joint bound"
            )
        self.observed = observed or {}
        self.model, self.guide, self.x, self.kwargs = poutine.condition(model, self.observed), guide, x, kwargs
        self.start, self.mpn, self.plate = STARTS[start], max_plate_nesting, data_plate_name
        with torch.no_grad(), particle_plate(1, max_plate_nesting):
            trace = poutine.trace(self.model).get_trace(x, **kwargs)
        sites = dict(sample_sites(trace))
        latents = [name for name, site in sites.items() if not site["is_observed"]]
        for name in latents:
            _check_support(name, site_distribution(sites[name]).support)
        self.layout = LatentLayout(trace, latents)

    def trace(self, program: Callable, flat: torch.Tensor) -> Trace:
        """A trace of ``program`` on the batch with the latents ``flat`` ``(chains, batch, D)``
        conditioned, its log densities computed. Distribution arguments are not validated: a
        leapfrog step far into the tails can make a network's output invalid (a scale that is
        NaN), whose log density is then NaN and the proposal rejected (:func:`anneal`), not an error."""
        with particle_plate(flat.shape[0], self.mpn), pyro.validation_enabled(False):
            conditioned = poutine.condition(program, self.layout.unflatten(flat))
            trace = poutine.trace(conditioned).get_trace(self.x, **self.kwargs)
            trace.compute_log_prob()  # unvalidated too: no warning for a NaN density, which is rejected
        return trace

    def per_datum(self, trace: Trace, num_chains: int, names: list[str] | None = None) -> torch.Tensor:
        """The sum of the per-datum log densities of the sites ``names`` of ``trace`` (all its
        sample sites by default), ``(num_chains, batch)``."""
        names = [name for name, _ in sample_sites(trace)] if names is None else names
        total = sum(per_datum(trace.nodes[name], self.mpn, self.plate, NEEDED_BY) for name in names)
        return torch.as_tensor(total).expand(num_chains, self.x.shape[0])

    def log_joint(self, flat: torch.Tensor) -> torch.Tensor:
        """``log p(x, z)`` at the latents ``flat`` ``(chains, batch, D)``, ``(chains, batch)``."""
        return self.per_datum(self.trace(self.model, flat), flat.shape[0])

    def log_densities(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(x, z), log pi_0(z))`` at the latents ``flat``, each ``(chains, batch)``."""
        trace = self.trace(self.model, flat)
        return self.per_datum(trace, flat.shape[0]), self.start.log_density(self, flat, trace)

    def draw(self, num_chains: int) -> torch.Tensor:
        """``num_chains`` draws per datum from pi_0, ``(chains, batch, D)``."""
        with torch.no_grad(), particle_plate(num_chains, self.mpn):
            trace = poutine.trace(self.start.program(self)).get_trace(self.x, **self.kwargs)
        sites = dict(sample_sites(trace))
        missing = [name for name in self.layout.names if name not in sites]
        if missing:
            raise ValueError(f"the initial distribution's program does not sample the model's latents {missing}")
        return self.layout.flatten({name: site_value(sites[name]) for name in self.layout.names})


@dataclass(frozen=True)
class Start:
    """An initial distribution pi_0 of the path: the program that draws from it (its latents named
    as the model's) and its log density per datum at latents ``flat`` given the model's trace there."""

    program: Callable[[AnnealingPath], Callable]
    log_density: Callable[[AnnealingPath, torch.Tensor, Trace], torch.Tensor]


def _prior_density(path: AnnealingPath, flat: torch.Tensor, model_trace: Trace) -> torch.Tensor:
    return path.per_datum(model_trace, flat.shape[0], path.layout.names)


def _guide_density(path: AnnealingPath, flat: torch.Tensor, model_trace: Trace) -> torch.Tensor:
    return path.per_datum(path.trace(path.guide, flat), flat.shape[0], path.layout.names)


#: The initial distributions pi_0 of the path, by name (``start=`` of :func:`ais_bounds`).
STARTS: Registry[Start] = Registry("AIS initial distribution")
STARTS.register(
    "prior",
    Start(lambda path: path.model, _prior_density),
    help="the prior p(z): log f_t = log p(z) + beta_t log p(x|z)",
)
STARTS.register(
    "guide",
    Start(lambda path: path.guide, _guide_density),
    help="the guide q(z|x): log f_t = (1 - beta_t) log q(z|x) + beta_t log p(x, z)",
)


def sigmoid_schedule(num_steps: int, sharpness: float = 4.0) -> torch.Tensor:
    """The ``num_steps + 1`` inverse temperatures 0 = beta_0 < ... < beta_T = 1 of Grosse et al. (2015):
    sigma(delta (2 t / T - 1)) rescaled to [0, 1], dense near both ends (``sharpness`` delta)."""
    s = torch.sigmoid(sharpness * (2 * torch.arange(num_steps + 1, dtype=torch.float64) / num_steps - 1))
    return (s - s[0]) / (s[-1] - s[0])


@dataclass(frozen=True)
class Annealed:
    """What a run of AIS chains ends with: ``log_weights`` ``(chains, batch)``, the chains' mean
    acceptance probability ``accept`` and final step sizes ``step_size``, each ``(chains, batch)``."""

    log_weights: torch.Tensor
    accept: torch.Tensor
    step_size: torch.Tensor

    @property
    def log_px(self) -> torch.Tensor:
        """The log-mean-exp of the chains' weights per datum, ``(batch,)``."""
        return torch.logsumexp(self.log_weights, 0) - math.log(self.log_weights.shape[0])


class _Potential:
    """The potential -log f_beta summed over chains and data (what :func:`velocity_verlet` takes),
    keeping the per-chain ``(log p(x, z), log pi_0(z))`` of its first and last calls: the current
    state's and the proposal's."""

    def __init__(self, path: AnnealingPath, beta: float) -> None:
        self.path, self.beta = path, beta
        self.first: tuple[torch.Tensor, torch.Tensor] | None = None
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        log_p, log_0 = self.path.log_densities(z["z"])
        self.last = (log_p.detach(), log_0.detach())
        self.first = self.first or self.last
        return self.energy(log_p, log_0).sum()

    def energy(self, log_p: torch.Tensor, log_0: torch.Tensor) -> torch.Tensor:
        """-log f_beta per chain."""
        return -((1 - self.beta) * log_0 + self.beta * log_p)


def anneal(
    path: AnnealingPath,
    z: torch.Tensor,
    betas: torch.Tensor,
    leapfrog_steps: int = 10,
    step_size: float = 0.05,
    target_accept: float = 0.65,
) -> Annealed:
    """Run the chains ``z`` ``(chains, batch, D)``, drawn from the density at ``betas[0]``, along
    ``betas`` (see the module docstring); ``betas`` from 1 to 0 run them backwards (BDMC)."""
    eps = torch.full((*z.shape[:2], 1), step_size, dtype=z.dtype, device=z.device)
    log_w = torch.zeros(z.shape[:2], dtype=z.dtype, device=z.device)
    accept_sum = torch.zeros_like(log_w)
    with torch.no_grad():
        log_p, log_0 = path.log_densities(z)
    for prev, beta in zip(betas[:-1].tolist(), betas[1:].tolist()):
        log_w += (beta - prev) * (log_p - log_0)
        potential = _Potential(path, beta)
        r = torch.randn_like(z)
        z_next, r_next, _, _ = velocity_verlet({"z": z}, {"z": r}, potential, _identity, eps, leapfrog_steps)
        assert potential.first is not None and potential.last is not None
        delta = potential.energy(*potential.last) - potential.energy(*potential.first)
        delta = delta + 0.5 * (r_next["z"].square() - r.square()).sum(-1)
        prob = torch.nan_to_num(torch.exp(-delta).clamp(max=1), nan=0.0)
        accepted = torch.rand_like(prob) < prob
        z = torch.where(accepted[..., None], z_next["z"], z).detach()
        log_p, log_0 = (torch.where(accepted, new, old) for new, old in zip(potential.last, potential.first))
        eps = eps * torch.where(prob > target_accept, 1.02, 0.98)[..., None]
        accept_sum += prob
    return Annealed(log_w, accept_sum / (len(betas) - 1), eps[..., 0])


def _identity(r: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The gradient r of the kinetic energy r^T r / 2 (a unit mass matrix)."""
    return r


def _check(num_chains: int, num_steps: int, leapfrog_steps: int, x: torch.Tensor) -> None:
    check_arguments(ais_bounds, num_chains=num_chains, num_steps=num_steps, x=x)
    COUNT.check(num_chains=num_chains, num_steps=num_steps, leapfrog_steps=leapfrog_steps)
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"x must be a batch of at least one datum, got shape {tuple(x.shape)}")
    check_pass_fits(x.shape[0], num_chains, x[0].numel(), x.device)


def ais_bounds(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_chains: int = 16,
    num_steps: int = 1000,
    leapfrog_steps: int = 10,
    *,
    start: str = "prior",
    max_plate_nesting: int = 1,
    data_plate_name: str = "data",
    **kwargs,
) -> Annealed:
    """AIS of log p(x) for each datum of ``x``: ``num_chains`` chains per datum over ``num_steps``
    intermediate densities, each HMC transition ``leapfrog_steps`` leapfrog steps; ``start`` names
    pi_0 (:data:`STARTS`). ``.log_px`` of the result is the estimate ``(batch,)``; ``kwargs``
    (e.g. labels ``y``) go to model and guide."""
    _check(num_chains, num_steps, leapfrog_steps, x)
    path = AnnealingPath(model, guide, x, kwargs, start, max_plate_nesting, data_plate_name)
    return anneal(path, path.draw(num_chains), sigmoid_schedule(num_steps), leapfrog_steps)


@dataclass(frozen=True)
class Sandwich:
    """BDMC's bounds on simulated data: ``x`` the data drawn from the model (in the shape of the
    batch given), ``lower`` the forward AIS estimate and ``upper`` the reverse one, each ``(batch,)``."""

    x: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor


def bdmc_bounds(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_chains: int = 16,
    num_steps: int = 1000,
    leapfrog_steps: int = 10,
    *,
    start: str = "prior",
    max_plate_nesting: int = 1,
    data_plate_name: str = "data",
    **kwargs,
) -> Sandwich:
    """Bidirectional Monte Carlo (Grosse et al. 2015) on data simulated from the model, z ~ p(z),
    x ~ p(x|z), one datum per row of ``x`` (whose values are not used, only its shape and ``kwargs``).

    The forward chains (:func:`ais_bounds`) give a stochastic lower bound of log p(x). The reverse
    chains start at the simulated z, an exact posterior sample, and anneal from p(z|x) back to pi_0:
    their weights have expectation 1 / p(x), so minus their log-mean-exp is a stochastic upper
    bound. The model must observe the data at one site holding as many numbers as ``x`` (it is
    given to model and guide as ``x``)."""
    _check(num_chains, num_steps, leapfrog_steps, x)
    with torch.no_grad(), particle_plate(1, max_plate_nesting):
        joint = poutine.trace(poutine.uncondition(model)).get_trace(x, **kwargs)
    sites = dict(sample_sites(joint))
    observed = {name: site_value(site) for name, site in sites.items() if (site["infer"] or {}).get("was_observed")}
    if len(observed) != 1 or next(iter(observed.values())).numel() != x.numel():
        shapes = {name: tuple(value.shape) for name, value in observed.items()}
        raise ValueError(
            f"BDMC simulates x from the model and gives it to the guide: the model must observe x at one site "
            f"of {x.numel()} numbers, and it observes {shapes}"
        )
    simulated = next(iter(observed.values())).reshape(x.shape)
    path = AnnealingPath(model, guide, simulated, kwargs, start, max_plate_nesting, data_plate_name, observed)
    betas = sigmoid_schedule(num_steps)
    forward = anneal(path, path.draw(num_chains), betas, leapfrog_steps)
    exact = path.layout.flatten({name: site_value(sites[name]) for name in path.layout.names})
    reverse = anneal(path, exact.expand(num_chains, -1, -1).clone(), betas.flip(0), leapfrog_steps)
    return Sandwich(simulated, forward.log_px, -reverse.log_px)
