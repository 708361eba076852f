"""A VAE with binary latents: the sigmoid belief network of the discrete-estimator papers
(Mnih & Gregor 2014; Mnih & Rezende 2016; Tucker et al. 2017; Grathwohl et al. 2018; Yin & Zhou
2019; Dong et al. 2020), with ``layers`` stochastic layers of ``z_dim`` binary units::

    z_L ~ p(z_L) = prod_j Bernoulli(sigmoid(b_j))                 (learned prior logits b)
    z_l ~ p(z_l | z_{l+1}) = Bernoulli(sigmoid(f_l(z_{l+1})))     (l = L-1, ..., 1)
    x   ~ p(x | z_1) = Bernoulli(sigmoid(f_0(z_1)))

    q(z_1 | x) = Bernoulli(sigmoid(g_1(x))),  q(z_l | z_{l-1}) = Bernoulli(sigmoid(g_l(z_{l-1})))

Each f and g is an MLP with the hidden layers ``hidden`` (the decoder's mirrored): ``hidden=()``
is the papers' *linear* network, ``hidden=(200, 200)`` with tanh units their *nonlinear* one
(one stochastic layer of 200 units). ``layers=2, hidden=()`` is their two-layer linear network
(200-200). Reparameterization does not apply to z: train it with a score-function estimator
(``score-nvil``, ``vimco``, ``score-loo``, ...), which the pathwise estimators say by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import pyro_method
from torch import nn

from pyro_vae.models.nets import MLP
from pyro_vae.models.program import register_model
from pyro_vae.models.vae import VAE
from pyro_vae.validation import COUNT, InputError


@register_model("sbn")
class SigmoidBeliefVAE(VAE):
    """binary latents: a sigmoid belief network p(z) p(x|z) with a Bernoulli guide q(z|x) (one or more layers)

    :param z_dim: binary units per stochastic layer (the papers: 200).
    :param layers: stochastic layers L (1 or 2 in the papers).
    :param hidden: deterministic hidden layers of each network: ``()`` linear, ``(200, 200)`` nonlinear.

    Other parameters as :class:`~pyro_vae.models.vae.VAE`; latent sites ``z`` (= z_1), ``z2``, ... .
    """

    def __init__(
        self,
        x_shape: int | Sequence[int],
        z_dim: int = 200,
        hidden: Sequence[int] = (),
        activation: str = "tanh",
        likelihood: str = "bernoulli",
        init_std: float | None = None,
        layers: int = 1,
        **kwargs,
    ) -> None:
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
            raise ValueError(f"layers must be an int >= 1, got {layers!r}")
        COUNT.check(z_dim=z_dim)
        x_dim = x_shape if isinstance(x_shape, int) else math.prod(x_shape)
        hidden = tuple(hidden)
        super().__init__(
            x_shape,
            z_dim,
            hidden,
            activation,
            likelihood,
            init_std,
            encoder=MLP(x_dim, hidden, z_dim, activation, init_std),
            **kwargs,
        )
        self.layers = layers
        self.prior_logits = nn.Parameter(torch.zeros(z_dim))
        # f_l: z_{l+1} -> logits of z_l, g_l: z_{l-1} -> logits of z_l, for l = 2..L
        self.upper_decoders = nn.ModuleList(
            MLP(z_dim, tuple(reversed(hidden)), z_dim, activation, init_std) for _ in range(layers - 1)
        )
        self.upper_encoders = nn.ModuleList(MLP(z_dim, hidden, z_dim, activation, init_std) for _ in range(layers - 1))

    def names(self) -> list[str]:
        """The latent sites, bottom (next to x) first: ``z``, ``z2``, ..."""
        return [self.site("z")] + [self.site(f"z{layer}") for layer in range(2, self.layers + 1)]

    def prior(self, **context) -> dist.TorchDistribution:
        """p(z_L) = prod_j Bernoulli(sigmoid(b_j))."""
        return dist.Bernoulli(logits=self.prior_logits).to_event(1)

    def posterior(self, x: torch.Tensor, **context) -> dist.TorchDistribution:
        """q(z_1|x) = Bernoulli(sigmoid(g_1(x)))."""
        return dist.Bernoulli(logits=self.encoder(self.flatten(x))).to_event(1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, sd)`` of q(z_1|x): the probabilities p and sqrt(p (1 - p))."""
        probs = torch.sigmoid(self.encoder(self.flatten(x)))
        return probs, (probs * (1 - probs)).sqrt()

    @pyro_method
    def model(self, x=None, *, num_generated=None, total_size=None, **context) -> torch.Tensor:
        """p(z_L) prod_l p(z_l | z_{l+1}) p(x | z_1)."""
        batch_size = self.batch_size(x, num_generated, context)
        names = self.names()
        with self.data_plate(batch_size, total_size):
            z = pyro.sample(names[-1], self.prior())
            for name, f in zip(reversed(names[:-1]), reversed(self.upper_decoders)):
                z = pyro.sample(name, dist.Bernoulli(logits=f(z)).to_event(1))
            return pyro.sample(self.site("x"), self.decode(z), obs=x)

    @pyro_method
    def guide(self, x=None, *, num_generated=None, total_size=None, **context) -> torch.Tensor:
        """q(z_1|x) prod_l q(z_l | z_{l-1})."""
        if x is None:
            raise InputError("the guide q(z|x) needs data: call guide(x) with a batch x")
        names = self.names()
        with self.data_plate(self.batch_size(x, None, context), total_size):
            z = pyro.sample(names[0], self.posterior(x))
            for name, g in zip(names[1:], self.upper_encoders):
                z = pyro.sample(name, dist.Bernoulli(logits=g(z)).to_event(1))
            return z
