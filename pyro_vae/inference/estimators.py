"""Gradient estimators of the ELBO, each selected by one name.

Every estimator is a Pyro ELBO plus, where needed, a handler around the guide;
the model and guide themselves never change. The gradient with respect to the
guide parameters phi is estimated by

``reparam``
    the pathwise (reparameterization) gradient with Monte Carlo KL:
    ``Trace_ELBO`` (the paper's SGVB estimator A).
``reparam-analytic-kl``
    pathwise gradient of E_q[log p(x|z)] plus the exact gradient of the
    Gaussian KL: ``TraceMeanField_ELBO`` (estimator B).
``stl``
    "sticking the landing" (Roeder et al. 2017): pathwise, with the score term
    E_q[grad_phi log q(z|x)] (zero in expectation) dropped by evaluating log q
    at stopped-gradient parameters: ``Trace_ELBO`` + :class:`PathDerivative`.
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

The decoder (model) parameters always get the pathwise gradient.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.infer import ELBO, Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import get_plates
from pyro.poutine.util import site_is_subsample
from torch import nn

from pyro_vae.models.nets import MLP


class _Wrapper(TorchDistribution):
    """A distribution that delegates to ``base``; subclasses change one behaviour."""

    arg_constraints: dict = {}

    def __init__(self, base: TorchDistribution) -> None:
        self.base = base
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    def expand(self, batch_shape, _instance=None):
        return type(self)(self.base.expand(batch_shape))

    def sample(self, sample_shape=torch.Size()):
        return self.base.sample(sample_shape)

    def log_prob(self, value):
        return self.base.log_prob(value)


class NonReparameterized(_Wrapper):
    """``base`` with ``has_rsample = False``: samples carry no gradient, so Pyro's
    ELBOs fall back to the score-function estimator for this site."""

    has_rsample = False


class StopGradientLogProb(_Wrapper):
    """``base`` reparameterized as usual, but ``log_prob`` is evaluated with the
    distribution's parameters detached (the path-derivative estimator)."""

    has_rsample = True

    def __init__(self, base: TorchDistribution) -> None:
        super().__init__(base)
        self.stopped = detach_parameters(base)

    def rsample(self, sample_shape=torch.Size()):
        return self.base.rsample(sample_shape)

    def log_prob(self, value):
        return self.stopped.log_prob(value)


def detach_parameters(d: TorchDistribution) -> TorchDistribution:
    """A copy of ``d`` whose parameters are detached from the autograd graph."""
    if isinstance(d, dist.Independent):
        return dist.Independent(detach_parameters(d.base_dist), d.reinterpreted_batch_ndims)
    params = {k: getattr(d, k).detach() for k in d.arg_constraints if k in vars(d)}
    if not params:
        raise TypeError(f"cannot detach the parameters of {type(d).__name__}")
    return type(d)(**params, validate_args=False)


class _LatentSiteMessenger(Messenger):
    """Checks, then rewrites, every latent (unobserved, non-subsample) sample site.

    Raises ``ValueError`` for a latent site without a reparameterized sampler
    (e.g. a discrete latent), and when the guide had no latent site at all.
    """

    def __enter__(self):
        self.num_latent = 0
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        result = super().__exit__(exc_type, exc_value, traceback)
        if exc_type is None and self.num_latent == 0:
            raise ValueError(
                f"{type(self).__name__}: the guide has no continuous latent sample site to estimate a gradient for"
            )
        return result

    def _pyro_sample(self, msg) -> None:
        if msg["is_observed"] or site_is_subsample(msg):
            return
        if not msg["fn"].has_rsample:
            raise ValueError(
                f"site {msg['name']!r} ({type(msg['fn']).__name__}) has no reparameterized sampler; "
                f"{type(self).__name__} needs a continuous, reparameterizable latent"
            )
        self.num_latent += 1
        self.rewrite(msg)

    def rewrite(self, msg) -> None:
        raise NotImplementedError


class Pathwise(_LatentSiteMessenger):
    """Handler: check that every latent site is reparameterized; change nothing."""

    def rewrite(self, msg) -> None:
        pass


class ScoreFunction(_LatentSiteMessenger):
    """Handler: sample every latent site without reparameterization."""

    def rewrite(self, msg) -> None:
        msg["fn"] = NonReparameterized(msg["fn"])


class PathDerivative(_LatentSiteMessenger):
    """Handler: drop the score term of q at every latent site (Roeder et al. 2017)."""

    def rewrite(self, msg) -> None:
        msg["fn"] = StopGradientLogProb(msg["fn"])


class Baseline(ScoreFunction):
    """Handler: score-function sampling plus ``TraceGraph_ELBO`` baseline options.

    ``options`` is the ``infer["baseline"]`` dict of Pyro's TraceGraph_ELBO,
    e.g. ``{"use_decaying_avg_baseline": True}`` or ``{"nn_baseline": net,
    "nn_baseline_input": x}``.
    """

    def __init__(self, options: dict) -> None:
        super().__init__()
        self.options = options

    def rewrite(self, msg) -> None:
        super().rewrite(msg)
        msg["infer"] = {**msg["infer"], "baseline": dict(self.options)}


class NeuralBaseline(nn.Module):
    """b(x): an MLP from a flattened datum to a scalar, for NVIL-style baselines."""

    def __init__(self, x_dim: int, hidden: tuple[int, ...] = (100,)) -> None:
        super().__init__()
        self.net = MLP(x_dim, hidden, 1, "tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(start_dim=1)).squeeze(-1)


@dataclass
class Estimator:
    """An ELBO and the guide to train with it; ``modules`` holds extra trainable nets."""

    name: str
    elbo: ELBO
    guide: Callable
    modules: nn.ModuleDict = field(default_factory=nn.ModuleDict)


def _handled(handler: Callable[[], Messenger], guide: Callable) -> Callable:
    @functools.wraps(guide)
    def handled_guide(*args, **kwargs):
        with handler():
            return guide(*args, **kwargs)

    return handled_guide


def _nvil_guide(vae, baseline: NeuralBaseline) -> Callable:
    name = vae.site("nvil_baseline")

    @functools.wraps(vae.guide)
    def nvil_guide(x, **kwargs):
        net = pyro.module(name, baseline)
        # b(x) has one value per datum; broadcast it over enclosing plates
        # (vectorized particles), as the downstream cost it is compared with.
        shape = [1] * max([1] + [-f.dim for f in get_plates() if f.dim is not None])
        for frame in get_plates():
            shape[frame.dim] = frame.size
        shape[-1] = x.shape[0]

        def nn_baseline(x_detached: torch.Tensor) -> torch.Tensor:
            return net(x_detached).expand(shape)

        options = {**DECAYING_AVERAGE, "nn_baseline": nn_baseline, "nn_baseline_input": x}
        with Baseline(options):
            return vae.guide(x, **kwargs)

    return nvil_guide


DECAYING_AVERAGE = {"use_decaying_avg_baseline": True, "baseline_beta": 0.9}

ESTIMATORS: tuple[str, ...] = (
    "reparam",
    "reparam-analytic-kl",
    "stl",
    "score",
    "score-rb",
    "score-baseline",
    "score-nvil",
)


def make_estimator(name: str, vae, num_particles: int = 1) -> Estimator:
    """Build estimator ``name`` (one of :data:`ESTIMATORS`) for a VAE-like module
    with ``model``, ``guide``, ``site`` and ``max_plate_nesting``."""
    if num_particles < 1:
        raise ValueError(f"num_particles must be >= 1, got {num_particles}")
    kwargs = dict(
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=vae.max_plate_nesting,
    )
    guide = vae.guide
    if name == "reparam":
        return Estimator(name, Trace_ELBO(**kwargs), _handled(Pathwise, guide))
    if name == "reparam-analytic-kl":
        return Estimator(name, TraceMeanField_ELBO(**kwargs), _handled(Pathwise, guide))
    if name == "stl":
        return Estimator(name, Trace_ELBO(**kwargs), _handled(PathDerivative, guide))
    if name == "score":
        return Estimator(name, Trace_ELBO(**kwargs), _handled(ScoreFunction, guide))
    if name == "score-rb":
        return Estimator(name, TraceGraph_ELBO(**kwargs), _handled(ScoreFunction, guide))
    if name == "score-baseline":
        return Estimator(
            name, TraceGraph_ELBO(**kwargs), _handled(lambda: Baseline(DECAYING_AVERAGE), guide)
        )
    if name == "score-nvil":
        baseline = NeuralBaseline(vae.x_dim).to(vae.prior_loc.device)
        return Estimator(
            name,
            TraceGraph_ELBO(**kwargs),
            _nvil_guide(vae, baseline),
            nn.ModuleDict({"nvil_baseline": baseline}),
        )
    raise ValueError(f"unknown estimator {name!r}; expected one of {list(ESTIMATORS)}")
