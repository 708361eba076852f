"""A VAE whose guide is an inverse autoregressive flow (Kingma et al. 2016).

The guide draws from the Gaussian encoder, then moves the draw through L
affine autoregressive transforms conditioned on the encoder's features h(x)::

    z_0 ~ N(mu(x), diag sigma^2(x))
    z_l = m_l(z_{l-1}, h(x)) + s_l(z_{l-1}, h(x)) * z_{l-1},   l = 1..L
    q(z_L | x) = N(z_0) prod_l |det d z_l / d z_{l-1}|^-1

with Pyro's ``ConditionalAffineAutoregressive`` transforms (sampling, the
direction SVI needs, is one pass; ``log q`` of a fresh draw reuses its cached
inverse). The model is the VAE's. q has no closed-form mean, so
reconstructions and latent plots use a draw of the guide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.distributions.conditional import ConditionalTransformModule
from torch import nn

from pyro_vae.models.nets import GaussianEncoder
from pyro_vae.models.program import register_model
from pyro_vae.models.vae import VAE


@register_model("iaf")
class IAFVAE(VAE):
    """VAE with an inverse autoregressive flow guide conditioned on h(x) (Kingma et al. 2016)

    :param num_flows: L, the number of autoregressive transforms.
    :param flow_hidden: hidden sizes of each transform's autoregressive network.

    Other parameters as :class:`~pyro_vae.models.vae.VAE`.
    """

    def __init__(
        self,
        x_shape: int | Sequence[int],
        z_dim: int = 20,
        hidden: Sequence[int] = (500,),
        num_flows: int = 2,
        flow_hidden: Sequence[int] = (320, 320),
        **kwargs,
    ) -> None:
        super().__init__(x_shape, z_dim, hidden, **kwargs)
        if num_flows < 1:
            raise ValueError(f"num_flows must be >= 1, got {num_flows}")
        context_dim = self.encoder.num_features
        self.flows = nn.ModuleList(
            T.conditional_affine_autoregressive(z_dim, context_dim, hidden_dims=list(flow_hidden))
            for _ in range(num_flows)
        )

    def posterior(self, x: torch.Tensor, **context) -> dist.TorchDistribution:
        """q(z|x): the Gaussian encoder's N(mu(x), sigma^2(x)) moved by the flows, conditioned on h(x)."""
        encoder = cast(GaussianEncoder, self.encoder)  # the flows are conditioned on its features
        h = encoder.features(self.flatten(x))
        base = dist.Normal(*encoder.head(h)).to_event(1)
        return dist.TransformedDistribution(
            base, [flow.condition(h) for flow in cast("list[ConditionalTransformModule]", self.flows)]
        )
