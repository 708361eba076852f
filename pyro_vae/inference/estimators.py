r"""Gradient estimators of the ELBO, each selected by one name.

The ELBO of a datum x, for a model :math:`p_\theta(x, z)` and a guide :math:`q_\phi(z \mid x)`,
bounds its log-likelihood from below (the paper's eqs. 2 and 3):

.. math::

    \mathcal L(\theta, \phi; x)
    = \mathbb E_{q_\phi(z \mid x)}\big[\log p_\theta(x, z) - \log q_\phi(z \mid x)\big]
    = \mathbb E_{q_\phi(z \mid x)}\big[\log p_\theta(x \mid z)\big]
      - \mathrm{KL}\big(q_\phi(z \mid x) \,\|\, p_\theta(z)\big)
    \le \log p_\theta(x).

Training maximizes its sum over the N data, estimated on a minibatch of M as
:math:`\frac{N}{M} \sum_{i=1}^{M} \mathcal L(\theta, \phi; x_i)`.

Every estimator is a Pyro ELBO plus, where needed, a handler around the guide;
the model and guide themselves never change. The gradient with respect to the
guide parameters phi is estimated by

``reparam``
    the pathwise (reparameterization) gradient with Monte Carlo KL:
    ``Trace_ELBO`` (the paper's SGVB estimator A).
``reparam-analytic-kl``
    pathwise gradient of E_q[log p(x|z)] plus the exact gradient of the
    Gaussian KL: ``TraceMeanField_ELBO`` (estimator B). Correct only when no
    latent's parents in the model descend from it in the guide (Pyro's
    mean-field condition); :class:`AnalyticKL` checks this on first use and
    refuses other programs (e.g. a two-layer guide x -> z1 -> z2 for a model
    z2 -> z1 -> x).
``stl``
    "sticking the landing" (Roeder et al. 2017): pathwise, with the score term
    E_q[grad_phi log q(z|x)] (zero in expectation) dropped:
    ``Trace_ELBO`` + :class:`PathDerivative`, which evaluates
    log q(z) - log q(stop(z)) + stop(log q(stop(z))), valid for any
    reparameterized guide, flows included.
``enum``
    discrete latents summed out exactly (``config_enumerate`` +
    ``TraceEnum_ELBO``), continuous ones pathwise; e.g. the label of the M2
    semi-supervised VAE.
``score``
    the score-function (REINFORCE) estimator grad log q(z|x) * (log p(x,z) -
    log q(z|x)), with z sampled without reparameterization:
    ``Trace_ELBO`` + :class:`ScoreFunction`. Trace_ELBO multiplies each
    datum's score by that datum's own weight (plate independence) and keeps
    no grad_phi log q term.
``score-rb``
    score function with ``TraceGraph_ELBO``'s Rao-Blackwellization (each score
    multiplies only its downstream cost) and no baseline.
``score-baseline``
    ``TraceGraph_ELBO`` with a decaying-average baseline per datum (beta = 0.9).
``score-nvil``
    ``TraceGraph_ELBO`` with NVIL's baseline c + b(x) (Mnih & Gregor 2014,
    without their variance normalization): a decaying average c plus an
    input-dependent MLP b(x) trained by least squares on the residual cost.

``iwae``
    the K-sample importance-weighted bound (Burda et al. 2016) per datum,
    L_K = (N/M) sum_i log (1/K) sum_k w_ik, K = ``num_particles``, with its
    pathwise gradient: :class:`~pyro_vae.inference.importance_weighted.ImportanceWeighted`. K = 1 is the ELBO.
``dreg``
    the same bound with the doubly reparameterized guide gradient (Tucker et
    al. 2019), sum_k w~_k^2 d log w_k / dz_k dz_k / dphi: :class:`ImportanceWeighted`
    + :class:`PathDerivative`; refuses a guide whose latent depends on another.

These two estimate the gradient of L_K, not of the ELBO (``Estimator.objective``
is ``"iwae"``).

The pathwise estimators (``reparam``, ``reparam-analytic-kl``, ``stl``, ``iwae``, ``dreg``)
refuse a discrete latent with one error naming the site (use ``enum`` or a
score-function estimator); the score-function estimators accept any latent.
The model parameters always get the pathwise gradient.

Estimators are registered in :data:`ESTIMATORS` by name; each entry builds
an :class:`Estimator` for a program (an object with ``model``, ``guide``,
``max_plate_nesting`` and, for ``score-nvil``, ``x_dim``, the size of one datum; it refuses a program
without one, e.g. a graph model, whose graph is one datum).
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyro.poutine as poutine
import torch
from pyro.distributions.kl import kl_divergence
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO, config_enumerate
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import get_plates
from torch import nn

from pyro_vae.inference.handlers import Baseline, Enumerated, PathDerivative, Pathwise, ScoreFunction
from pyro_vae.inference.importance_weighted import ImportanceWeighted
from pyro_vae.inference.log_weights import prior_dependencies, site_distribution
from pyro_vae.models.nets import MLP
from pyro_vae.models.program import Program, member
from pyro_vae.registry import Registry


class NeuralBaseline(nn.Module):
    """b(x): an MLP from a flattened datum to a scalar, for NVIL-style baselines."""

    def __init__(self, x_dim: int, hidden: tuple[int, ...] = (100,)) -> None:
        super().__init__()
        self.net = MLP(x_dim, hidden, 1, "tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(start_dim=1)).squeeze(-1)


class Objective(Protocol):
    """What training calls on an estimator's ELBO (a Pyro ``ELBO``, or the
    :class:`~pyro_vae.inference.jit.CompiledELBO` of one): ``loss_and_grads(model, guide, **batch)``
    backpropagates the estimator's surrogate and returns the loss. (Pyro's ``ELBO`` base class
    declares neither ``loss`` nor ``loss_and_grads``, which every ELBO defines.)"""

    def loss_and_grads(self, model: Callable, guide: Callable, **kwargs: Any) -> float: ...


@dataclass
class Estimator:
    """An ELBO and the guide to train with it; ``modules`` holds extra trainable nets;
    ``objective`` names the bound whose gradient it estimates; ``varies`` says why its estimates
    change in distribution from one step to the next (an annealed temperature), which a variance
    comparison (:func:`~pyro_vae.inference.variance.refusal`) refuses, empty where they do not."""

    name: str
    elbo: Objective
    guide: Callable
    modules: nn.ModuleDict = field(default_factory=nn.ModuleDict)
    objective: str = "elbo"  # what the loss bounds: "elbo", or "iwae" (the K-sample bound)
    varies: str = ""


def _handled(handler: Callable[[], Messenger], guide: Callable) -> Callable:
    @functools.wraps(guide)
    def handled_guide(*args, **kwargs):
        with handler():
            return guide(*args, **kwargs)

    return handled_guide


def _data_argument(args: tuple, kwargs: dict) -> torch.Tensor:
    x = args[0] if args else kwargs.get("x")
    if not torch.is_tensor(x):
        raise ValueError("score-nvil needs the data x (first argument or x=...) to compute its baseline b(x)")
    return x


def _nvil_guide(program: Program, baseline: NeuralBaseline) -> Callable:
    @functools.wraps(program.guide)
    def nvil_guide(*args, **kwargs):
        x = _data_argument(args, kwargs)
        # b(x) has one value per datum; broadcast it over enclosing plates
        # (vectorized particles), as the downstream cost it is compared with.
        shape = [1] * max([1] + [-f.dim for f in get_plates() if f.dim is not None])
        for frame in get_plates():
            if frame.dim is not None:  # a sequential plate has none: it does not broadcast
                shape[frame.dim] = frame.size
        shape[-1] = x.shape[0]

        def nn_baseline(x_detached: torch.Tensor) -> torch.Tensor:
            return baseline(x_detached).expand(shape)

        data_options = {"nn_baseline": nn_baseline, "nn_baseline_input": x}
        with Baseline(DECAYING_AVERAGE, data_options, member(program, "data_plate_name")):
            return program.guide(*args, **kwargs)

    return nvil_guide


def check_mean_field(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> None:
    """Raise ``ValueError`` unless analytic KL terms give the right ELBO for this program.

    Pyro's condition for :class:`~pyro.infer.TraceMeanField_ELBO`: for every
    latent z of the guide, no parent of z in the model descends from z in the guide.
    """
    model_deps = prior_dependencies(model, args, kwargs)
    guide_deps = prior_dependencies(guide, args, kwargs)
    for z in guide_deps:
        descendants = {d for d, upstream in guide_deps.items() if z in upstream and d != z}
        parents = set(model_deps.get(z, ())) - {z}
        clash = sorted(parents & descendants)
        if clash:
            raise ValueError(
                f"reparam-analytic-kl is biased for this program: latent {z!r} has the parents {clash} "
                f"in the model, which depend on {z!r} in the guide; use reparam or stl"
            )


def monte_carlo_kl_sites(model_trace: poutine.Trace, guide_trace: poutine.Trace) -> list[str]:
    """The latent sites of ``guide_trace`` whose KL(q || p) against ``model_trace`` has no
    closed form in torch (``kl_divergence`` not implemented, e.g. a mixture prior or a
    flow guide): ``TraceMeanField_ELBO`` estimates their KL term by Monte Carlo."""
    names = []
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or name not in model_trace.nodes:
            continue
        try:
            kl_divergence(site_distribution(site), site_distribution(model_trace.nodes[name]))
        except NotImplementedError:
            names.append(name)
    return names


class AnalyticKL(TraceMeanField_ELBO):
    """``TraceMeanField_ELBO`` that checks :func:`check_mean_field` on its first use and
    says, once, which sites have no closed-form KL and fall back to its Monte Carlo term
    (a ``UserWarning`` naming them; they are kept in ``monte_carlo_kl``)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._checked = False
        self.monte_carlo_kl: list[str] = []

    def _get_trace(self, model, guide, args, kwargs):
        first = not self._checked
        if first:
            check_mean_field(model, guide, args, kwargs)
            self._checked = True
        model_trace, guide_trace = super()._get_trace(model, guide, args, kwargs)
        if first:
            self.monte_carlo_kl = monte_carlo_kl_sites(model_trace, guide_trace)
            if self.monte_carlo_kl:
                warnings.warn(
                    f"reparam-analytic-kl: no closed-form KL for the site(s) {self.monte_carlo_kl} (torch has no "
                    "kl_divergence for their guide and prior); their KL term is the Monte Carlo estimate of "
                    "estimator A, the others are analytic",
                    stacklevel=2,
                )
        return model_trace, guide_trace


DECAYING_AVERAGE = {"use_decaying_avg_baseline": True, "baseline_beta": 0.9}

#: The gradient estimators of the ELBO by name (``--estimator``): functions ``(program, num_particles)
#: -> Estimator`` (the pathwise, score-function and enumerated estimators of the module docstring).
ESTIMATORS: Registry[Callable[..., Estimator]] = Registry("estimator")
register_estimator = ESTIMATORS.register


def _elbo_options(program: Program, num_particles: int) -> dict:
    return dict(
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=program.max_plate_nesting,
    )


def _register_handled(
    name: str, elbo_class: Callable[..., Objective], handler: Callable[[], Messenger], help: str
) -> None:
    """Register estimator ``name``: ``elbo_class`` with ``handler`` around the program's guide."""

    def build(program: Program, num_particles: int = 1) -> Estimator:
        return Estimator(name, elbo_class(**_elbo_options(program, num_particles)), _handled(handler, program.guide))

    register_estimator(name, build, help=help)


_register_handled("reparam", Trace_ELBO, Pathwise, "pathwise, Monte Carlo KL (the paper's estimator A): Trace_ELBO")
_register_handled(
    "reparam-analytic-kl",
    AnalyticKL,
    Pathwise,
    "pathwise, analytic KL (estimator B): TraceMeanField_ELBO, refused where it would be biased",
)
_register_handled("stl", Trace_ELBO, PathDerivative, 'path derivative, "sticking the landing" (Roeder et al. 2017)')


@register_estimator("enum")
def enum(program: Program, num_particles: int = 1) -> Estimator:
    """discrete latents enumerated (TraceEnum_ELBO), continuous ones pathwise"""
    guide = config_enumerate(program.guide, "parallel", expand=False)
    elbo = TraceEnum_ELBO(**_elbo_options(program, num_particles), strict_enumeration_warning=False)
    return Estimator("enum", elbo, _handled(Enumerated, guide))


_register_handled("score", Trace_ELBO, ScoreFunction, "score function (REINFORCE), per-datum weights: Trace_ELBO")
_register_handled(
    "score-rb",
    TraceGraph_ELBO,
    ScoreFunction,
    "score function, Rao-Blackwellized by dependency structure: TraceGraph_ELBO",
)
_register_handled(
    "score-baseline",
    TraceGraph_ELBO,
    lambda: Baseline(DECAYING_AVERAGE),
    "as score-rb, decaying-average baseline (beta 0.9)",
)


@register_estimator("score-nvil")
def score_nvil(program: Program, num_particles: int = 1) -> Estimator:
    """as score-rb, baseline c + b(x) with a neural b on data-plate sites (NVIL)"""
    if not hasattr(program, "x_dim"):
        raise ValueError(
            f"score-nvil needs a per-datum input for its baseline network b(x): a program with x_dim, the size of "
            f"one datum, and {type(program).__name__} has none (a graph is one datum); use another estimator"
        )
    baseline = NeuralBaseline(program.x_dim)
    device = next((p.device for p in program.parameters()), None) if hasattr(program, "parameters") else None
    if device is not None:
        baseline.to(device)
    return Estimator(
        "score-nvil",
        TraceGraph_ELBO(**_elbo_options(program, num_particles)),
        _nvil_guide(program, baseline),
        nn.ModuleDict({"nvil_baseline": baseline}),
    )


def _register_importance_weighted(name: str, handler: Callable[[], Messenger], doubly: bool, help: str) -> None:
    def build(program: Program, num_particles: int = 1) -> Estimator:
        elbo = ImportanceWeighted(num_particles, program.max_plate_nesting, member(program, "data_plate_name"), doubly)
        return Estimator(name, elbo, _handled(handler, program.guide), objective="iwae")

    register_estimator(name, build, help=help)


_register_importance_weighted(
    "iwae", Pathwise, False, "K-sample IWAE bound per datum, pathwise gradient (Burda et al. 2016); K = num_particles"
)
_register_importance_weighted(
    "dreg",
    PathDerivative,
    True,
    "IWAE bound, doubly reparameterized guide gradient (Tucker et al. 2019); K = num_particles",
)


def make_estimator(
    name: str, program: Program, num_particles: int = 1, options: dict[str, Any] | None = None
) -> Estimator:
    """Build the registered estimator ``name`` for ``program`` (see the module docstring);
    ``options`` are the keyword arguments its builder takes beyond ``(program,
    num_particles)`` (e.g. the ``beta`` of a user's beta-ELBO: ``--estimator-option beta=4``)."""
    if num_particles < 1:
        raise ValueError(f"num_particles must be >= 1, got {num_particles}")
    options = check_estimator_options(name, options)
    return ESTIMATORS[name](program, num_particles, **options)


def check_estimator_options(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """``options`` (a dict) if the registered estimator ``name`` takes every one of them, else
    ``ValueError`` naming the unknown ones and the accepted ones."""
    build, options = ESTIMATORS[name], dict(options or {})
    accepted = list(inspect.signature(build).parameters)[2:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"estimator {name!r} does not take the option(s) {unknown}; it takes {accepted}")
    return options
