"""Effect handlers that choose how the gradient flows through the guide's latent sites.

Each handler wraps every latent sample site of the guide (observed and subsample
sites are left alone) and changes one thing: :class:`Pathwise` refuses a
non-reparameterizable latent, :class:`Enumerated` marks discrete ones for
enumeration, :class:`ScoreFunction` hides ``rsample`` so Pyro uses the score
function, :class:`PathDerivative` stops the score term (Roeder et al. 2017), and
:class:`Baseline` adds Pyro's baseline options to the score-function sites. The
estimators of :mod:`pyro_vae.inference.estimators` combine them with Pyro's ELBOs.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample


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
    ones are pathwise, and any other latent (a discrete one without enumeration support,
    e.g. ``Bernoulli(p).to_event(1)``, whose event dimension hides its values from
    enumeration) raises ``ValueError`` naming the site and the fix: ``enum`` never
    silently falls back to sampling."""

    pathwise = False

    def rewrite(self, msg) -> None:
        fn = msg["fn"]
        if fn.has_rsample:
            return
        base = fn
        while not isinstance(base, dist.Independent) and hasattr(base, "base_dist"):
            base = base.base_dist
        why = (
            "its discrete values lie in event dimensions (.to_event hides them from enumeration): "
            "declare those dimensions with pyro.plate instead"
            if isinstance(base, dist.Independent) and base.base_dist.has_enumerate_support
            else "its distribution has no enumeration support"
        )
        raise ValueError(
            f"--estimator enum cannot sum out site {msg['name']!r} ({type(fn).__name__}): {why}, "
            "or train it with a score-function estimator (score, score-rb, score-baseline)"
        )


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
    are added only at sites inside the plate named ``data_plate_name``: a latent
    outside it (a global latent) keeps ``options`` alone.
    """

    def __init__(self, options: dict, data_options: dict | None = None, data_plate_name: str | None = None) -> None:
        super().__init__()
        self.options, self.data_options, self.data_plate_name = options, data_options or {}, data_plate_name

    def rewrite(self, msg) -> None:
        super().rewrite(msg)
        options = dict(self.options)
        if any(frame.name == self.data_plate_name for frame in msg["cond_indep_stack"]):
            options.update(self.data_options)
        msg["infer"] = {**msg["infer"], "baseline": options}
