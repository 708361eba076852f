"""A VAE with categorical latents, the Gumbel-softmax paper's setting (Jang et al. 2017: 20
variables of 10 categories on MNIST)::

    z_j ~ p(z_j) = OneHotCategorical(softmax(b_j))          j = 1..num_variables (learned logits b)
    x   ~ p(x | z) = likelihood(decoder([z_1, ..., z_J]))    (the one-hot codes concatenated)

    q(z_j | x) = OneHotCategorical(softmax(g(x)_j))

The latent site ``z`` holds the one-hot codes, shape ``(batch, num_variables, num_categories)``,
so a relaxation can stand in for them (``gumbel``); reparameterization does not apply, as for
``sbn``: train it with a score-function or relaxed estimator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.models.nets import MLP
from pyro_vae.models.program import register_model
from pyro_vae.models.vae import VAE


@register_model("categorical-vae")
class CategoricalVAE(VAE):
    """categorical latents: num_variables one-hot codes of num_categories each (Jang et al. 2017), learned prior

    :param num_variables: the categorical variables J (the paper: 20).
    :param num_categories: the categories of each (the paper: 10).
    :param hidden: hidden layers of the encoder; the decoder mirrors them.

    ``z_dim`` is ignored in favour of ``num_variables * num_categories`` (the code's width);
    other parameters as :class:`~pyro_vae.models.vae.VAE`.
    """

    def __init__(
        self,
        x_shape: int | Sequence[int],
        z_dim: int | None = None,
        hidden: Sequence[int] = (512, 256),
        activation: str = "relu",
        likelihood: str = "bernoulli",
        init_std: float | None = None,
        num_variables: int = 20,
        num_categories: int = 10,
        **kwargs,
    ) -> None:
        for name, value in (("num_variables", num_variables), ("num_categories", num_categories)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1 + (name == "num_categories"):
                raise ValueError(f"{name} must be an int >= {1 + (name == 'num_categories')}, got {value!r}")
        width = num_variables * num_categories
        x_dim = x_shape if isinstance(x_shape, int) else math.prod(x_shape)
        hidden = tuple(hidden)
        super().__init__(
            x_shape,
            width,
            hidden,
            activation,
            likelihood,
            init_std,
            encoder=MLP(x_dim, hidden, width, activation, init_std),
            **kwargs,
        )
        self.num_variables, self.num_categories = num_variables, num_categories
        self.prior_logits = nn.Parameter(torch.zeros(num_variables, num_categories))

    def prior(self, **context) -> dist.TorchDistribution:
        """p(z) = prod_j OneHotCategorical(softmax(b_j))."""
        return dist.OneHotCategorical(logits=self.prior_logits).to_event(1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of q(z_j|x), shape ``batch + (num_variables, num_categories)``."""
        return self.encoder(self.flatten(x)).unflatten(-1, (self.num_variables, self.num_categories))

    def posterior(self, x: torch.Tensor, **context) -> dist.TorchDistribution:
        """q(z|x) = prod_j OneHotCategorical(softmax(g(x)_j))."""
        return dist.OneHotCategorical(logits=self.logits(x)).to_event(1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, sd)`` of q(z|x)'s one-hot codes, flattened: the probabilities p and sqrt(p (1 - p))."""
        probs = torch.softmax(self.logits(x), -1).flatten(-2)
        return probs, (probs * (1 - probs)).sqrt()

    def decode(self, z: torch.Tensor, **context) -> dist.TorchDistribution:
        """p(x|z) from the one-hot codes concatenated."""
        return self.likelihood(self.decoder(z.flatten(-2)))
