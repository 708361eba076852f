"""A VAE with two stochastic layers (Burda et al. 2016, Section 5)::

    z2 ~ N(0, I)
    z  ~ p(z | z2) = N(mu(z2), diag sigma^2(z2))      (Gaussian MLP)
    x  ~ p(x | z)                                     (the VAE's decoder)

    q(z | x)  = N(mu(x), diag sigma^2(x))              (the VAE's encoder)
    q(z2 | z) = N(mu(z), diag sigma^2(z))              (Gaussian MLP)

Burda et al.'s MNIST architecture is x-200-200-z(100)-100-100-z2(50), tanh:
``z_dim=100, z2_dim=50, hidden=(200, 200), hidden2=(100, 100)``. The guide
runs bottom-up and the model top-down, so z's parent in the model (z2)
descends from z in the guide: analytic KL terms would be biased, and
``reparam-analytic-kl`` refuses this program.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import pyro_method

from pyro_vae.models.nets import GaussianEncoder
from pyro_vae.models.program import register_model
from pyro_vae.models.vae import VAE
from pyro_vae.validation import COUNT, InputError


@register_model("two-layer")
class TwoLayerVAE(VAE):
    """two stochastic layers z2 -> z -> x (Burda et al. 2016); guide x -> z -> z2

    :param z2_dim: size of the top layer z2.
    :param hidden2: hidden sizes of q(z2|z); p(z|z2) mirrors them.

    Other parameters as :class:`~pyro_vae.models.vae.VAE` (``z_dim`` is the size of z).
    """

    def __init__(
        self,
        x_shape: int | Sequence[int],
        z_dim: int = 100,
        z2_dim: int = 50,
        hidden: Sequence[int] = (200, 200),
        hidden2: Sequence[int] = (100, 100),
        activation: str = "tanh",
        init_std: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(x_shape, z_dim, hidden, activation, init_std=init_std, **kwargs)
        COUNT.check(z2_dim=z2_dim)
        self.z2_dim = z2_dim
        self.encoder2 = GaussianEncoder(z_dim, z2_dim, tuple(hidden2), activation, init_std)
        self.decoder2 = GaussianEncoder(z2_dim, z_dim, tuple(reversed(hidden2)), activation, init_std)
        self.register_buffer("prior2_loc", torch.zeros(z2_dim))

    def top_prior(self) -> dist.TorchDistribution:
        """p(z2) = N(0, I)."""
        return dist.Normal(self.prior2_loc, torch.ones_like(self.prior2_loc)).to_event(1)

    # z2 is required where VAE's p(z) takes no context: the hierarchy narrows VAE's signature (#43 item 4)
    def prior(self, *, z2: torch.Tensor, **context) -> dist.TorchDistribution:  # type: ignore[override]
        """p(z | z2)."""
        return dist.Normal(*self.decoder2(z2)).to_event(1)

    @pyro_method
    def model(self, x=None, *, num_generated=None, total_size=None, **context) -> torch.Tensor:
        """p(z2) p(z|z2) p(x|z)."""
        batch_size = self.batch_size(x, num_generated, context)
        with self.data_plate(batch_size, total_size):
            z2 = pyro.sample(self.site("z2"), self.top_prior())
            z = pyro.sample(self.site("z"), self.prior(z2=z2))
            return pyro.sample(self.site("x"), self.decode(z), obs=x)

    @pyro_method
    def guide(self, x=None, *, num_generated=None, total_size=None, **context) -> torch.Tensor:
        """q(z|x) q(z2|z)."""
        if x is None:
            raise InputError("the guide needs data: call guide(x) with a batch x")
        with self.data_plate(self.batch_size(x, None, context), total_size):
            z = pyro.sample(self.site("z"), self.posterior(x))
            return pyro.sample(self.site("z2"), dist.Normal(*self.encoder2(z)).to_event(1))
