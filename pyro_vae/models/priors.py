"""VAEs with learned priors: a mixture of Gaussians and the VampPrior (Tomczak & Welling 2018).

Only :meth:`~pyro_vae.models.vae.VAE.prior` changes::

    mixture of Gaussians:  p(z) = (1/K) sum_k N(z; m_k, diag s_k^2), m_k and s_k learned
    VampPrior:             p(z) = (1/K) sum_k q(z | u_k), u_k learned pseudo-inputs

so the guide, the likelihood and everything built on the program (training,
evaluation, figures) are those of the VAE. The KL term has no closed form;
``reparam-analytic-kl`` falls back to Monte Carlo for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.models.registry import register_model
from pyro_vae.models.vae import VAE


def _mixture(loc: torch.Tensor, scale: torch.Tensor) -> dist.TorchDistribution:
    """The equal-weight mixture of ``N(loc[k], diag scale[k]^2)``, k over the first dimension."""
    weights = dist.Categorical(logits=torch.zeros(loc.shape[0], device=loc.device))
    return dist.MixtureSameFamily(weights, dist.Normal(loc, scale).to_event(1))


@register_model("mog-prior")
class MixturePriorVAE(VAE):
    """VAE with a learned mixture-of-Gaussians prior (K equal-weight components)

    :param num_components: K.
    Other parameters as :class:`~pyro_vae.models.vae.VAE`.
    """

    def __init__(self, x_shape: int | Sequence[int], z_dim: int = 20, num_components: int = 10, **kwargs) -> None:
        super().__init__(x_shape, z_dim, **kwargs)
        self.component_loc = nn.Parameter(torch.randn(num_components, z_dim))
        self.component_log_scale = nn.Parameter(torch.zeros(num_components, z_dim))

    def prior(self, **context) -> dist.TorchDistribution:
        return _mixture(self.component_loc, self.component_log_scale.exp())


@register_model("vampprior")
class VampPriorVAE(VAE):
    """VAE with the VampPrior (Tomczak & Welling 2018): p(z) = mean_k q(z|u_k)

    :param num_components: K, the number of pseudo-inputs (the paper: 500).
    Other parameters as :class:`~pyro_vae.models.vae.VAE`.
    """

    def __init__(self, x_shape: int | Sequence[int], z_dim: int = 20, num_components: int = 500, **kwargs) -> None:
        super().__init__(x_shape, z_dim, **kwargs)
        # Pseudo-inputs start as grey images around 0.5, as in the paper's code.
        self.pseudo_inputs = nn.Parameter(0.5 + 0.01 * torch.randn(num_components, *self.x_shape))

    def prior(self, **context) -> dist.TorchDistribution:
        return _mixture(*self.encode(self.pseudo_inputs))
