r"""The AEVB variational autoencoder as a Pyro model/guide pair.

Generative model (Kingma & Welling 2013, Section 3), the likelihood's distribution with
the decoder's output as its parameters:

.. math::

    z \sim p(z) = \mathcal N(0, I), \qquad
    x \sim p_\theta(x \mid z) = \mathrm{likelihood}\big(\mathrm{decoder}_\theta(z)\big).

Recognition model (the guide), a Gaussian MLP encoder:

.. math::

    z \sim q_\phi(z \mid x) = \mathcal N\big(\mu_\phi(x),\, \operatorname{diag} \sigma_\phi^2(x)\big).

Training maximizes the ELBO (:mod:`pyro_vae.inference.estimators`),
:math:`\mathbb E_{q_\phi(z \mid x)}[\log p_\theta(x \mid z)] - \mathrm{KL}(q_\phi(z \mid x) \,\|\, p(z))`.

Both are methods of one :class:`~pyro.nn.PyroModule`, so ``SVI(vae.model,
vae.guide, optim, Trace_ELBO())`` trains it with the paper's SGVB estimator.
Sites are named ``z`` and ``x`` inside a plate ``data`` over the leftmost
batch dimension; with ``prefix="a"`` they are ``a.z``, ``a.x`` and ``a.data``,
so several VAEs can live in one Pyro program. The encoder and decoder are
plain ``nn.Module`` s that the module registers with ``pyro.module`` when its
methods run.

New latent structures subclass :class:`VAE` and override only what differs:
the hooks :meth:`VAE.prior`, :meth:`VAE.posterior` and :meth:`VAE.decode`
receive the batch's context (e.g. labels ``y``), or :meth:`VAE.model` /
:meth:`VAE.guide` themselves. ``vae(x)`` (:meth:`VAE.forward`, the reconstruction),
:meth:`VAE.generate`, :meth:`VAE.reconstruct` and :meth:`VAE.embed` run the program
(a trace of the model, the guide replayed into it), so they stay right for every subclass.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from collections.abc import Sequence
from typing import cast

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.nn import PyroModule, pyro_method
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import _PYRO_STACK, Message, get_plates
from pyro.poutine.trace_messenger import TraceMessenger
from pyro.poutine.util import site_is_subsample
from torch import nn

from pyro_vae.models.likelihoods import Likelihood, make_likelihood
from pyro_vae.models.nets import INIT_STD, MLP, GaussianEncoder, check_sizes, mlp_weight_count
from pyro_vae.models.program import DataSpec, register_model
from pyro_vae.validation import InputError, check_arguments, check_parameters_fit, check_rules


class PosteriorMean(Messenger):
    """Handler: every latent site of the wrapped program takes the mean of its
    distribution instead of a draw, where the distribution has a mean (a flow
    or a discrete latent does not: it is drawn as usual)."""

    def _pyro_sample(self, msg) -> None:
        if msg["is_observed"] or site_is_subsample(msg) or msg["value"] is not None:
            return
        try:
            mean = msg["fn"].mean
        except NotImplementedError:
            return
        if mean is None or not msg["fn"].has_rsample:
            return
        msg["value"] = mean
        msg["done"] = True


def generated_keyword(model) -> str:
    """The keyword that asks ``model`` for new data: ``num_generated``; for a model written before
    version 0.1.0 that still takes ``num_samples`` instead, that one, with a ``DeprecationWarning``
    (accepted for one version; see CHANGELOG.md)."""
    parameters = inspect.signature(model).parameters
    if "num_generated" not in parameters and "num_samples" in parameters:
        warnings.warn(
            f"{getattr(model, '__qualname__', model)} takes num_samples=; since pyro_vae 0.1.0 the number of data "
            "a model draws is num_generated= (num_samples is the K of evaluation); rename it, the old name "
            "stops working in the next version",
            DeprecationWarning,
            stacklevel=3,
        )
        return "num_samples"
    return "num_generated"


def parameter_count(x_dim: int, z_dim: int, hidden: Sequence[int]) -> int:
    """Weights and biases of the :class:`VAE`'s encoder ``x-hidden-2z`` and decoder ``z-reversed(hidden)-x``."""
    return mlp_weight_count([x_dim, *hidden, 2 * z_dim]) + mlp_weight_count([z_dim, *reversed(hidden), x_dim])


@register_model("vae")
class VAE(PyroModule):
    """The AEVB paper's VAE: p(z) = N(0, I), a decoder p(x|z), a diagonal Gaussian guide q(z|x).

    :param x_shape: shape of one datum, e.g. ``(784,)`` or ``(1, 28, 28)``.
    :param z_dim: latent dimension.
    :param hidden: hidden layer sizes of the encoder; the decoder mirrors them.
    :param activation: hidden activation, ``"tanh"`` as in the paper.
    :param likelihood: ``"bernoulli"``, ``"gaussian"`` or a :class:`Likelihood`.
    :param init_std: draw weights from N(0, init_std^2) (paper: 0.01); ``None``
        keeps PyTorch's default.
    :param prefix: prefix of every site and parameter name.
    :param encoder: replaces the default :class:`GaussianEncoder`; any module
        mapping ``(..., x_dim)`` to ``(loc, scale)`` of shape ``(..., z_dim)``.
    :param decoder: replaces the default MLP; any module mapping
        ``(..., z_dim)`` to ``(..., likelihood.num_params)``.
    :param data_plate_name: name of the data plate (default ``prefix.data``); VAEs given
        the same name share one plate, and an enclosing plate of that name is reused.

    Calling the module returns a reconstruction, as PyTorch autoencoders do: ``vae(x)`` is the
    mean of p(x|z) at z = mu(x), the mean of q(z|x), differentiable (:meth:`forward`; the
    ELBO, the training loss, is Pyro's: ``SVI(vae.model, vae.guide, ...)``).

    The attribute :attr:`nested` (default ``False``) is set by a program that runs this one
    inside itself on its own latents (the stacked M1 + M2, :mod:`pyro_vae.models.stacked`).
    """

    max_plate_nesting = 1
    #: The names of the data a call takes: ``x`` here; a conditional model adds its context (``y``).
    data_keys: tuple[str, ...] = ("x",)
    #: Whether ``x`` may carry leading batch dimensions left of the data dimension, shape
    #: ``(..., batch, *x_shape)``: the particles or enumerated values of an enclosing program
    #: whose latent is this program's data (the library's evaluation draws K particles in a
    #: plate at dim ``-1 - max_plate_nesting``). The batch (the data plate's size) is then
    #: ``x.shape[-1 - len(x_shape)]``. ``False`` for a program given user data: ``x`` must
    #: be exactly ``(batch, *x_shape)``.
    nested: bool = False

    def __init__(
        self,
        x_shape: int | Sequence[int],
        z_dim: int = 20,
        hidden: Sequence[int] = (500,),
        activation: str = "tanh",
        likelihood: str | Likelihood = "bernoulli",
        init_std: float | None = None,
        prefix: str = "",
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        data_plate_name: str | None = None,
    ) -> None:
        check_arguments(  # z_dim and hidden: check_sizes
            VAE.__init__,
            x_shape=x_shape,
            activation=activation,
            init_std=init_std,
            prefix=prefix,
            encoder=encoder,
            decoder=decoder,
            data_plate_name=data_plate_name,
        )
        super().__init__(name=prefix)
        self.x_shape = (x_shape,) if isinstance(x_shape, int) else tuple(x_shape)
        check_sizes(self.x_shape, z_dim, tuple(hidden))
        check_rules(INIT_STD, init_std=init_std)
        self.x_dim = math.prod(self.x_shape)
        sizes = "-".join(map(str, (self.x_dim, *hidden, z_dim)))
        check_parameters_fit(parameter_count(self.x_dim, z_dim, tuple(hidden)), f"the VAE {sizes}")
        self.z_dim = z_dim
        if isinstance(likelihood, str):
            likelihood = make_likelihood(likelihood, self.x_shape)
        elif not isinstance(likelihood, Likelihood):
            raise TypeError(f"likelihood must be a name ('bernoulli', 'gaussian') or a Likelihood, got {likelihood!r}")
        self.likelihood = likelihood
        self.encoder = encoder or GaussianEncoder(self.x_dim, z_dim, hidden, activation, init_std)
        self.decoder = decoder or MLP(z_dim, tuple(reversed(hidden)), likelihood.num_params, activation, init_std)
        self._data_plate_name = data_plate_name
        self.register_buffer("prior_loc", torch.zeros(z_dim))
        self.register_buffer("prior_scale", torch.ones(z_dim))

    @classmethod
    def build(cls, spec: DataSpec, **options) -> VAE:
        """An instance for data described by ``spec``; ``options`` are constructor arguments."""
        return cls(spec.x_shape, **options)

    # --- names and plates -------------------------------------------------
    def site(self, name: str) -> str:
        """Full name of a sample site or plate, with this module's prefix."""
        return f"{self._pyro_name}.{name}" if self._pyro_name else name

    @property
    def data_plate_name(self) -> str:
        """Name of the plate over data points."""
        return self._data_plate_name or self.site("data")

    def data_plate(self, batch_size: int, total_size: int | None = None) -> pyro.plate | contextlib.nullcontext:
        """The plate over data points; ``total_size`` scales the log density by N/M.

        Inside an enclosing plate of the same name (a program holding several
        VAEs that share their data) that plate is reused; VAEs given the same ``data_plate_name``
        name and called one after the other each open it (the later ones' subsample sites
        are hidden, so the names do not clash), with the same size and scale.
        """
        for frame in get_plates():
            if frame.name == self.data_plate_name:
                if frame.size != batch_size:
                    raise InputError(
                        f"the enclosing plate {frame.name!r} has size {frame.size}, the batch {batch_size}"
                    )
                return contextlib.nullcontext()
        if total_size is not None and total_size < batch_size:
            raise InputError(f"total_size={total_size} is smaller than the batch ({batch_size})")
        # The batch's indices are given (the same arange whoever opens the plate). Where a trace
        # already holds this plate's subsample site (another VAE of the program opened a plate of
        # the same name before: data_plate_name=...), the second one is hidden, so the names do not clash.
        subsample = torch.arange(batch_size, device=self.prior_loc.device)
        traced = any(isinstance(m, TraceMessenger) and self.data_plate_name in m.trace.nodes for m in _PYRO_STACK)
        with poutine.block(hide=[self.data_plate_name]) if traced else contextlib.nullcontext():
            return pyro.plate(self.data_plate_name, total_size or batch_size, subsample=subsample, dim=-1)

    # --- distributions (hooks) ----------------------------------------------
    def prior(self, **context) -> dist.TorchDistribution:
        """p(z) = N(0, I)."""
        return dist.Normal(self.prior_loc, self.prior_scale).to_event(1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters ``(loc, scale)`` of q(z|x) for ``x`` of shape ``batch + x_shape``."""
        return self.encoder(self.flatten(x))

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of shape ``batch + x_shape`` as ``batch + (x_dim,)``."""
        return x.flatten(start_dim=x.dim() - len(self.x_shape))

    def posterior(self, x: torch.Tensor, **context) -> dist.TorchDistribution:
        """q(z|x) = N(mu(x), diag sigma^2(x))."""
        loc, scale = self.encode(x)
        return dist.Normal(loc, scale).to_event(1)

    def decode(self, z: torch.Tensor, **context) -> dist.TorchDistribution:
        """p(x|z), with event shape ``x_shape``."""
        return self.likelihood(self.decoder(z))

    # --- the probabilistic program ---------------------------------------
    @pyro_method
    def model(
        self,
        x: torch.Tensor | None = None,
        *,
        num_generated: int | None = None,
        total_size: int | None = None,
        **context,
    ) -> torch.Tensor:
        """p(z) p(x|z). With ``x=None`` draws ``num_generated`` (default 1) new data."""
        batch_size = self.batch_size(x, num_generated, context)
        with self.data_plate(batch_size, total_size):
            z = pyro.sample(self.site("z"), self.prior(**context))
            return pyro.sample(self.site("x"), self.decode(z, **context), obs=x)

    @pyro_method
    def guide(
        self,
        x: torch.Tensor | None = None,
        *,
        num_generated: int | None = None,
        total_size: int | None = None,
        **context,
    ) -> torch.Tensor:
        """q(z|x), amortized by the encoder."""
        if x is None:
            raise InputError("the guide q(z|x) needs data: call guide(x) with a batch x")
        batch_size = self.batch_size(x, None, context)
        with self.data_plate(batch_size, total_size):
            return pyro.sample(self.site("z"), self.posterior(x, **context))

    # --- helpers ----------------------------------------------------------
    def batch_size(self, x: torch.Tensor | None, num_generated: int | None, context: dict) -> int:
        """The number of data of a call, after checking ``x`` and the context against :attr:`data_keys`."""
        unknown = sorted(set(context) - set(self.data_keys))
        if unknown:
            raise InputError(f"{type(self).__name__} takes the data {list(self.data_keys)}, not {unknown}")
        if x is not None:
            self.check_data(x)
            batch_size = x.shape[-1 - len(self.x_shape)]
        else:
            batch_size = 1 if num_generated is None else num_generated
            if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
                raise InputError(f"num_generated must be an integer >= 1, got {num_generated!r}")
        for key, value in context.items():
            if torch.is_tensor(value) and value.dim() > 0 and value.shape[0] != batch_size:
                raise InputError(f"{key} has {value.shape[0]} entries for a batch of {batch_size}")
        return batch_size

    def check_data(self, x: torch.Tensor) -> None:
        """Raise a clear error unless ``x`` is a finite float batch of shape ``(batch, *x_shape)``
        (``(..., batch, *x_shape)`` when :attr:`nested`)."""
        if not torch.is_tensor(x):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}; convert it with x.float()")
        leading = x.dim() - len(self.x_shape) - 1  # dimensions left of the batch: only when nested
        if leading < 0 or (leading and not self.nested) or tuple(x.shape[leading + 1 :]) != self.x_shape:
            raise InputError(
                f"x must have shape ({'..., ' if self.nested else ''}batch, {', '.join(map(str, self.x_shape))}), "
                f"got {tuple(x.shape)}"
            )
        if x.numel() == 0:
            raise InputError("x is an empty batch (0 data points)")
        if x.dtype != self.prior_loc.dtype:
            raise TypeError(
                f"x has dtype {x.dtype} but the VAE's parameters are {self.prior_loc.dtype}; "
                f"convert the data (x.to({self.prior_loc.dtype})) or the module (vae.to(dtype))"
            )
        # always, even with Pyro's validation off: one pass over x, a few microseconds per batch
        low, high = (v.item() for v in torch.aminmax(x))  # NaN and inf propagate
        if not (math.isfinite(low) and math.isfinite(high)):
            raise InputError(f"x contains {int((~torch.isfinite(x)).sum())} NaN or infinite values")
        self.likelihood.check(low, high)

    # --- using the program ------------------------------------------------
    def sample_node(self, trace: poutine.Trace, name: str, needed_by: str, fix: str) -> Message:
        """The node of the sample site ``name`` (unprefixed) of ``trace``, or an :class:`InputError`
        naming the trace's sample sites and ``fix``: a subclass whose sites are named otherwise
        (two observed views, a chain of latents) is told what to pass or override, not a ``KeyError``."""
        node = trace.nodes.get(self.site(name))
        if node is not None and node["type"] == "sample":
            return node
        sites = [n for n, s in trace.nodes.items() if s["type"] == "sample"]
        raise InputError(
            f"{needed_by} reads the sample site {self.site(name)!r}, and {type(self).__name__}'s program has the "
            f"sample sites {sites}: {fix}"
        )

    def _observation_mean(self, trace: poutine.Trace) -> torch.Tensor:
        fix = "override _observation_mean(trace) for a program of other observed sites"
        observation = cast(
            torch.distributions.Distribution, self.sample_node(trace, "x", "reconstruct/generate", fix)["fn"]
        )
        return observation.mean

    def forward(self, x: torch.Tensor, **context) -> torch.Tensor:
        """``vae(x)``: the reconstruction of ``x``, the mean of p(x | latents) with the latents at
        their posterior means under q (:meth:`posterior_latents`); for the plain VAE,
        ``decode(mu(x)).mean`` with ``mu(x)`` the encoder's mean.

        An autoencoder's output, as PyTorch's ``examples/vae`` returns its decoder's (there at a
        draw of z, with the encoder's mean and log-variance), here at the posterior mean, and not
        a loss (pythae's ``model(x)`` returns one): the loss is Pyro's ELBO of ``model`` and
        ``guide`` (``pyro.infer.SVI``, :func:`~pyro_vae.training.loop.train`), which depends on
        the estimator. Differentiable, shape ``x.shape``; without gradients it is :meth:`reconstruct`.
        Deterministic where every latent has a mean; a latent without one (the flow of
        :class:`~pyro_vae.models.iaf.IAFVAE`, discrete latents) is drawn from q. The data's
        other entries (``data_keys``) are keywords: ``cvae(x, y=y)``."""
        guide_trace = self._posterior_trace(x, **context)
        with pyro.get_param_store().scope():
            model_trace = poutine.trace(poutine.replay(self.model, trace=guide_trace)).get_trace(x, **context)
        return self._observation_mean(model_trace)

    def _posterior_trace(self, x: torch.Tensor, **context) -> poutine.Trace:
        with pyro.get_param_store().scope():  # a fresh store: no stale global entries
            return poutine.trace(PosteriorMean()(self.guide)).get_trace(x, **context)

    @torch.no_grad()
    def posterior_latents(self, x: torch.Tensor, **context) -> poutine.Trace:
        """A trace of the guide on ``x`` with every latent at its posterior mean
        (a draw where the distribution has no mean, e.g. a flow)."""
        return self._posterior_trace(x, **context)

    @torch.no_grad()
    def embed(self, x: torch.Tensor, site: str = "z", **context) -> torch.Tensor:
        """The posterior mean (or a draw, see :meth:`posterior_latents`) of latent ``site`` for each datum."""
        node = self.sample_node(self.posterior_latents(x, **context), site, "embed", "pass site=NAME")
        return cast(torch.Tensor, node["value"])  # pyro's Message types it optional, as before the site runs

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, **context) -> torch.Tensor:
        """Mean of p(x|latents), the latents from :meth:`posterior_latents`, through the model:
        ``vae(x)`` (:meth:`forward`) without gradients."""
        return self(x, **context)

    @torch.no_grad()
    def generate(self, num_generated: int, latents: dict[str, torch.Tensor] | None = None, **context) -> torch.Tensor:
        """Means of p(x|latents) for ``num_generated`` draws from the model's prior;
        ``latents`` fixes some sites (by unprefixed name, e.g. ``{"z": grid}``)."""
        model = self.model
        if latents:
            model = poutine.condition(model, {self.site(k): v for k, v in latents.items()})
        with pyro.get_param_store().scope():
            trace = poutine.trace(model).get_trace(None, **{generated_keyword(self.model): num_generated}, **context)
            return self._observation_mean(trace)
