"""Gradient estimators of the ELBO, each selected by one name.

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
    pathwise gradient: :class:`ImportanceWeighted`. K = 1 is the ELBO.
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
``max_plate_nesting`` and, for ``score-nvil``, ``x_dim`` and ``data_plate_name``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO, config_enumerate
from pyro.infer.enum import get_importance_trace
from pyro.infer.inspect import get_dependencies
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import get_plates
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from torch import nn

from pyro_vae.inference.evaluate import _per_datum
from pyro_vae.models.nets import MLP
from pyro_vae.registry import Registry


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


class StopScore(_Wrapper):
    """``base`` reparameterized as usual, but the gradient of ``log_prob`` keeps
    only its path term: ``log q(z) - log q(stop(z)) + stop(log q(stop(z)))``
    has the value of log q(z) and the gradient d log q / dz * dz / dphi (the
    path-derivative estimator); it needs nothing of ``base`` but ``log_prob``."""

    has_rsample = True

    def rsample(self, sample_shape=torch.Size()):
        return self.base.rsample(sample_shape)

    def log_prob(self, value):
        fixed = self.base.log_prob(value.detach())
        return self.base.log_prob(value) - fixed + fixed.detach()


class _LatentSiteMessenger(Messenger):
    """Checks, then rewrites, every latent (unobserved, non-subsample, non-enumerated) sample site.

    With ``pathwise = True`` a latent site without a reparameterized sampler
    (a discrete latent) raises ``ValueError`` naming the site; a guide with no
    latent site at all raises too.
    """

    pathwise = True

    def __enter__(self):
        self.num_latent = 0
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        result = super().__exit__(exc_type, exc_value, traceback)
        if exc_type is None and self.num_latent == 0:
            raise ValueError(f"{type(self).__name__}: the guide has no latent sample site to estimate a gradient for")
        return result

    def _pyro_sample(self, msg) -> None:
        if msg["is_observed"] or site_is_subsample(msg):
            return
        self.num_latent += 1
        if msg["infer"].get("enumerate") == "parallel":
            return
        if self.pathwise and not msg["fn"].has_rsample:
            raise ValueError(
                f"site {msg['name']!r} ({type(msg['fn']).__name__}) has no reparameterized sampler; "
                f"{type(self).__name__} needs continuous, reparameterizable latents: use --estimator enum "
                "to sum a discrete latent out, or a score-function estimator"
            )
        self.rewrite(msg)

    def rewrite(self, msg) -> None:
        raise NotImplementedError


class Pathwise(_LatentSiteMessenger):
    """Handler: check that every latent site is reparameterized (or enumerated); change nothing."""

    def rewrite(self, msg) -> None:
        pass


class Enumerated(_LatentSiteMessenger):
    """Handler for ``TraceEnum_ELBO``: enumerated sites are summed out, reparameterized
    ones are pathwise, and any other (a discrete latent without enumeration support)
    gets TraceEnum_ELBO's score-function term; nothing is rewritten."""

    pathwise = False

    def rewrite(self, msg) -> None:
        pass


class ScoreFunction(_LatentSiteMessenger):
    """Handler: sample every latent site without reparameterization (any latent, discrete included)."""

    pathwise = False

    def rewrite(self, msg) -> None:
        if msg["fn"].has_rsample:
            msg["fn"] = NonReparameterized(msg["fn"])


class PathDerivative(_LatentSiteMessenger):
    """Handler: drop the score term of q at every latent site (Roeder et al. 2017)."""

    def rewrite(self, msg) -> None:
        msg["fn"] = StopScore(msg["fn"])


class Baseline(ScoreFunction):
    """Handler: score-function sampling plus ``TraceGraph_ELBO`` baseline options.

    ``options`` is the ``infer["baseline"]`` dict of Pyro's TraceGraph_ELBO,
    e.g. ``{"use_decaying_avg_baseline": True}``. ``data_options`` (e.g. NVIL's
    ``{"nn_baseline": net, "nn_baseline_input": x}``, one value per datum)
    are added only at sites inside the plate named ``data_plate``: a latent
    outside it (a global latent) keeps ``options`` alone.
    """

    def __init__(self, options: dict, data_options: dict | None = None, data_plate: str | None = None) -> None:
        super().__init__()
        self.options, self.data_options, self.data_plate = options, data_options or {}, data_plate

    def rewrite(self, msg) -> None:
        super().rewrite(msg)
        options = dict(self.options)
        if any(frame.name == self.data_plate for frame in msg["cond_indep_stack"]):
            options.update(self.data_options)
        msg["infer"] = {**msg["infer"], "baseline": options}


class NeuralBaseline(nn.Module):
    """b(x): an MLP from a flattened datum to a scalar, for NVIL-style baselines."""

    def __init__(self, x_dim: int, hidden: tuple[int, ...] = (100,)) -> None:
        super().__init__()
        self.net = MLP(x_dim, hidden, 1, "tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(start_dim=1)).squeeze(-1)


@dataclass
class Estimator:
    """An ELBO and the guide to train with it; ``modules`` holds extra trainable nets;
    ``objective`` names the bound whose gradient it estimates."""

    name: str
    elbo: ELBO
    guide: Callable
    modules: nn.ModuleDict = field(default_factory=nn.ModuleDict)
    objective: str = "elbo"  # what the loss bounds: "elbo", or "iwae" (the K-sample bound)


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


def _nvil_guide(program, baseline: NeuralBaseline) -> Callable:
    @functools.wraps(program.guide)
    def nvil_guide(*args, **kwargs):
        x = _data_argument(args, kwargs)
        # b(x) has one value per datum; broadcast it over enclosing plates
        # (vectorized particles), as the downstream cost it is compared with.
        shape = [1] * max([1] + [-f.dim for f in get_plates() if f.dim is not None])
        for frame in get_plates():
            shape[frame.dim] = frame.size
        shape[-1] = x.shape[0]

        def nn_baseline(x_detached: torch.Tensor) -> torch.Tensor:
            return baseline(x_detached).expand(shape)

        data_options = {"nn_baseline": nn_baseline, "nn_baseline_input": x}
        with Baseline(DECAYING_AVERAGE, data_options, program.data_plate_name):
            return program.guide(*args, **kwargs)

    return nvil_guide


def check_mean_field(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> None:
    """Raise ``ValueError`` unless analytic KL terms give the right ELBO for this program.

    Pyro's condition for :class:`~pyro.infer.TraceMeanField_ELBO`: for every
    latent z of the guide, no parent of z in the model descends from z in the guide.
    """
    model_deps = get_dependencies(model, args, kwargs)["prior_dependencies"]
    guide_deps = get_dependencies(guide, args, kwargs)["prior_dependencies"]
    for z in guide_deps:
        descendants = {d for d, upstream in guide_deps.items() if z in upstream and d != z}
        parents = set(model_deps.get(z, ())) - {z}
        clash = sorted(parents & descendants)
        if clash:
            raise ValueError(
                f"reparam-analytic-kl is biased for this program: latent {z!r} has the parents {clash} "
                f"in the model, which depend on {z!r} in the guide; use reparam or stl"
            )


class AnalyticKL(TraceMeanField_ELBO):
    """``TraceMeanField_ELBO`` that checks :func:`check_mean_field` on its first use."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._checked = False

    def _get_trace(self, model, guide, args, kwargs):
        if not self._checked:
            check_mean_field(model, guide, args, kwargs)
            self._checked = True
        return super()._get_trace(model, guide, args, kwargs)


DECAYING_AVERAGE = {"use_decaying_avg_baseline": True, "baseline_beta": 0.9}

#: The gradient estimators of the ELBO by name (``--estimator``): functions ``(program, num_particles)
#: -> Estimator`` (the pathwise, score-function and enumerated estimators of the module docstring).
ESTIMATORS: Registry[Callable[..., Estimator]] = Registry("estimator")
register_estimator = ESTIMATORS.register


def _elbo_options(program, num_particles: int) -> dict:
    return dict(
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=program.max_plate_nesting,
    )


def _register_handled(name: str, elbo_class: type[ELBO], handler: Callable[[], Messenger], help: str) -> None:
    """Register estimator ``name``: ``elbo_class`` with ``handler`` around the program's guide."""

    def build(program, num_particles: int = 1) -> Estimator:
        return Estimator(name, elbo_class(**_elbo_options(program, num_particles)), _handled(handler, program.guide))

    register_estimator(name, build, help=help)


_register_handled("reparam", Trace_ELBO, Pathwise, "pathwise, Monte Carlo KL (the paper's estimator A): Trace_ELBO")
_register_handled("reparam-analytic-kl", AnalyticKL, Pathwise,
                  "pathwise, analytic KL (estimator B): TraceMeanField_ELBO, refused where it would be biased")
_register_handled("stl", Trace_ELBO, PathDerivative, 'path derivative, "sticking the landing" (Roeder et al. 2017)')


@register_estimator("enum")
def enum(program, num_particles: int = 1) -> Estimator:
    """discrete latents enumerated (TraceEnum_ELBO), continuous ones pathwise"""
    guide = config_enumerate(program.guide, "parallel", expand=False)
    elbo = TraceEnum_ELBO(**_elbo_options(program, num_particles), strict_enumeration_warning=False)
    return Estimator("enum", elbo, _handled(Enumerated, guide))


_register_handled("score", Trace_ELBO, ScoreFunction, "score function (REINFORCE), per-datum weights: Trace_ELBO")
_register_handled("score-rb", TraceGraph_ELBO, ScoreFunction,
                  "score function, Rao-Blackwellized by dependency structure: TraceGraph_ELBO")
_register_handled("score-baseline", TraceGraph_ELBO, lambda: Baseline(DECAYING_AVERAGE),
                  "as score-rb, decaying-average baseline (beta 0.9)")


@register_estimator("score-nvil")
def score_nvil(program, num_particles: int = 1) -> Estimator:
    """as score-rb, baseline c + b(x) with a neural b on data-plate sites (NVIL)"""
    for attribute in ("x_dim", "data_plate_name"):
        if not hasattr(program, attribute):
            raise ValueError(f"score-nvil needs a program with {attribute!r} (the size of one datum and its plate)")
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


class ImportanceWeighted(ELBO):
    r"""The K-sample importance-weighted bound (IWAE, Burda et al. 2016), per datum, and its gradients.

    For datum i of a minibatch of M out of N and K particles z_ik ~ q(z|x_i)
    (all latents of the datum), ``log w_ik = log p(x_i, z_ik) - log q(z_ik|x_i)``
    sums the unscaled log densities of every site in the data plate over the
    datum's inner plates (as :mod:`pyro_vae.inference.evaluate` does). The bound is

        L_K = (N/M) sum_i log (1/K) sum_k w_ik,

    the scale N/M taken from the sites (``total_size`` of the data plate), applied
    outside the log-mean-exp. It is <= log p(x), increases with K, and equals the
    ELBO at K = 1. ``loss`` and ``loss_and_grads`` return -L_K.

    Gradients, with normalized weights w~_ik = w_ik / sum_k' w_ik':

    * ``doubly_reparameterized=False`` (IWAE): the pathwise gradient of L_K,
      sum_k w~_ik grad log w_ik for every parameter.
    * ``doubly_reparameterized=True`` (DReG, Tucker et al. 2019): the model
      parameters theta get the same sum_k w~_ik d/dtheta log p(x_i, z_ik); the guide's phi get
      sum_k w~_ik^2 (d log w_ik / dz_ik)(dz_ik / dphi), with log q's direct dependence
      on phi removed (the guide runs under :class:`PathDerivative`). The surrogate is
      sum_k stop(w~) A_k + stop(w~^2) (log w_k - A_k), where A_k = log p(x_i, stop(z_ik))
      is the model replayed on detached latents (its theta-gradient cancels that of
      log p(x_i, z_ik) inside log w_k). Its expectation is the IWAE gradient, its
      guide-gradient SNR does not fall with K (Rainforth et al. 2018). Per-site stopping
      of phi is exact only when no guide latent's distribution depends on another guide
      latent, so a hierarchical guide (e.g. ``two-layer``'s q(z2|z)) is refused by name.

    A latent outside the data plate has no per-datum weight and is refused by name;
    sites of one datum must share one scale (``total_size``).
    """

    def __init__(self, num_particles: int, max_plate_nesting: int, data_plate: str,
                 doubly_reparameterized: bool = False) -> None:
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.data_plate = data_plate
        self.doubly_reparameterized = doubly_reparameterized
        self._checked = False

    def _per_datum_sum(self, trace: poutine.Trace) -> tuple[torch.Tensor, object]:
        """Sum over the sample sites of ``trace`` of their unscaled (masked) log densities,
        ``(K or 1, M)``, and the sites' common scale."""
        total, scale, first = 0.0, None, None
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            log_prob = scale_and_mask(site["unscaled_log_prob"], 1.0, site["mask"])
            total = total + _per_datum(site, self.max_plate_nesting, self.data_plate, log_prob)
            if first is None:
                scale, first = site["scale"], name
            elif not torch.equal(torch.as_tensor(site["scale"]), torch.as_tensor(scale)):
                raise ValueError(
                    f"sites {first!r} and {name!r} have different scales; the importance-weighted bound "
                    "needs one scale (N/M) for all sites of a datum"
                )
        return total, scale

    def _check_guide(self, guide: Callable, args: tuple, kwargs: dict) -> None:
        if self._checked or not self.doubly_reparameterized:
            return
        for z, upstream in get_dependencies(guide, args, kwargs)["prior_dependencies"].items():
            parents = sorted(set(upstream) - {z})
            if parents:
                raise ValueError(
                    f"dreg needs a guide whose latents depend on x only: q({z!r}) depends on the latents "
                    f"{parents}, and stopping phi per site would bias the doubly reparameterized gradient; "
                    "use iwae"
                )
        self._checked = True

    def _terms(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """``(log w, A, scale)``: log weights (K, M); A = log p(x, stop(z)) for DReG, else ``None``."""
        self._check_guide(guide, args, kwargs)
        particles = pyro.plate("num_particles_vectorized", self.num_particles, dim=-1 - self.max_plate_nesting)
        model_trace, guide_trace = get_importance_trace(
            "flat", self.max_plate_nesting + 1, particles(model), particles(guide), args, kwargs
        )
        log_p, scale = self._per_datum_sum(model_trace)
        log_q, _ = self._per_datum_sum(guide_trace)
        detached = None
        if self.doubly_reparameterized:
            fixed = poutine.Trace()
            for name, site in model_trace.nodes.items():
                if site["type"] == "sample" and not site["is_observed"]:
                    fixed.add_node(name, **{**site, "value": site["value"].detach()})
            replayed = poutine.trace(poutine.replay(particles(model), trace=fixed)).get_trace(*args, **kwargs)
            replayed.compute_log_prob()
            detached, _ = self._per_datum_sum(prune_subsample_sites(replayed))
        log_w = log_p - log_q
        return log_w.expand(self.num_particles, log_w.shape[-1]), detached, scale

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("ImportanceWeighted draws its K particles jointly; see _terms")

    def _bound(self, log_w: torch.Tensor, scale) -> torch.Tensor:
        lme = torch.logsumexp(log_w, dim=0) - math.log(self.num_particles)
        return (torch.as_tensor(scale, dtype=lme.dtype, device=lme.device) * lme).sum()

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """-L_K, an estimate of the negative K-sample bound."""
        with torch.no_grad():
            log_w, _, scale = self._terms(model, guide, args, kwargs)
            return -self._bound(log_w, scale).item()

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """The surrogate loss whose gradient is the estimator's (its value is -L_K only for ``iwae``)."""
        return self._surrogate(*self._terms(model, guide, args, kwargs))[0]

    def _surrogate(self, log_w: torch.Tensor, detached, scale) -> tuple[torch.Tensor, float]:
        bound = self._bound(log_w, scale)
        if detached is None:
            return -bound, -bound.item()
        w = torch.softmax(log_w.detach(), dim=0)
        per_datum = (w * detached + w**2 * (log_w - detached)).sum(0)
        surrogate = (torch.as_tensor(scale, dtype=log_w.dtype, device=log_w.device) * per_datum).sum()
        return -surrogate, -bound.item()

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """Backpropagate the surrogate; return -L_K."""
        surrogate, loss = self._surrogate(*self._terms(model, guide, args, kwargs))
        if surrogate.requires_grad:
            surrogate.backward()
        return loss


def _register_importance_weighted(name: str, handler: Callable[[], Messenger], doubly: bool, help: str) -> None:
    def build(program, num_particles: int = 1) -> Estimator:
        elbo = ImportanceWeighted(num_particles, program.max_plate_nesting,
                                  getattr(program, "data_plate_name", "data"), doubly)
        return Estimator(name, elbo, _handled(handler, program.guide), objective="iwae")

    register_estimator(name, build, help=help)


_register_importance_weighted(
    "iwae", Pathwise, False, "K-sample IWAE bound per datum, pathwise gradient (Burda et al. 2016); K = num_particles"
)
_register_importance_weighted(
    "dreg", PathDerivative, True,
    "IWAE bound, doubly reparameterized guide gradient (Tucker et al. 2019); K = num_particles",
)


def make_estimator(name: str, program, num_particles: int = 1) -> Estimator:
    """Build the registered estimator ``name`` for ``program`` (see the module docstring)."""
    if num_particles < 1:
        raise ValueError(f"num_particles must be >= 1, got {num_particles}")
    return ESTIMATORS[name](program, num_particles)
