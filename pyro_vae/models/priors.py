"""VAEs with learned priors: a mixture of Gaussians and the VampPrior (Tomczak & Welling 2018).

Only :meth:`~pyro_vae.models.vae.VAE.prior` changes::

    mixture of Gaussians:  p(z) = (1/K) sum_k N(z; m_k, diag s_k^2), m_k and s_k learned
    VampPrior:             p(z) = (1/K) sum_k q(z | u_k), u_k = hardtanh(W e_k) learned pseudo-inputs

so the guide, the likelihood and everything built on the program (training,
evaluation, figures) are those of the VAE. The KL term has no closed form;
``reparam-analytic-kl`` falls back to Monte Carlo for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.models.program import register_model
from pyro_vae.models.vae import VAE
from pyro_vae.validation import COUNT, InputError


class DiagonalNormalMixture(dist.MixtureSameFamily):
    """A mixture of K diagonal Gaussians, sum_k w_k N(z; m_k, diag s_k^2), whose ``log_prob``
    is a few matrix products instead of a ``(..., K, D)`` broadcast:

        sum_d (z_d - m_kd)^2 / s_kd^2 = (z^2) . (1/s_k^2) - 2 z . (m_k/s_k^2) + sum_d m_kd^2/s_kd^2,

    so evaluating 500 VampPrior components at 500 x 100 points (one pass of the evaluation)
    costs two (50000 x D) x (D x 500) products, not a 500 x 100 x 500 x D tensor (5 GB for
    D = 50). Used when the components carry no batch dims of their own (those a plate adds
    are broadcasts); otherwise ``MixtureSameFamily``'s own ``log_prob``. Build it as ``DiagonalNormalMixture(Categorical, Normal(loc, scale).to_event(1))``
    with ``loc`` and ``scale`` of shape ``(K, D)``.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        normal = self.component_distribution.base_dist
        loc, scale = _unbroadcast(normal.loc), _unbroadcast(normal.scale)
        if loc is None or scale is None:
            return super().log_prob(value)
        if self._validate_args:
            self._validate_sample(value)
        precision = scale.reciprocal().square()  # (K, D)
        center = loc.mean(0)  # a common shift of z and the m_k: smaller squares, less cancellation
        loc, flat = loc - center, value.reshape(-1, value.shape[-1]) - center
        squares = flat.square() @ precision.T - 2 * flat @ (loc * precision).T + (loc.square() * precision).sum(-1)
        log_norm = -scale.log().sum(-1) - 0.5 * loc.shape[-1] * math.log(2 * math.pi)
        log_components = (log_norm - 0.5 * squares.clamp_min(0)).reshape(*value.shape[:-1], loc.shape[0])
        log_weights = torch.log_softmax(self.mixture_distribution.logits, -1)
        return torch.logsumexp(log_components + log_weights, -1)


def _unbroadcast(t: torch.Tensor) -> torch.Tensor | None:
    """The ``(K, D)`` tensor that ``t`` (batch + ``(K, D)``) broadcasts, or None if its batch dims hold data."""
    if any(stride != 0 for stride in t.stride()[:-2]):
        return None
    return t[(0,) * (t.dim() - 2)]


def _mixture(loc: torch.Tensor, scale: torch.Tensor) -> DiagonalNormalMixture:
    """The equal-weight mixture of ``N(loc[k], diag scale[k]^2)``, k over the first dimension."""
    weights = dist.Categorical(logits=torch.zeros(loc.shape[0], device=loc.device, dtype=loc.dtype))
    return DiagonalNormalMixture(weights, dist.Normal(loc, scale).to_event(1))


@register_model("mog-prior")
class MixturePriorVAE(VAE):
    """VAE with a learned mixture-of-Gaussians prior (K equal-weight components)

    :param num_components: K.

    Other parameters as :class:`~pyro_vae.models.vae.VAE`.
    """

    def __init__(self, x_shape: int | Sequence[int], z_dim: int = 20, num_components: int = 10, **kwargs) -> None:
        COUNT.check(num_components=num_components)
        super().__init__(x_shape, z_dim, **kwargs)
        self.component_loc = nn.Parameter(torch.randn(num_components, z_dim))
        self.component_log_scale = nn.Parameter(torch.zeros(num_components, z_dim))

    def prior(self, **context) -> dist.TorchDistribution:
        return _mixture(self.component_loc, self.component_log_scale.exp())


@register_model("vampprior")
class VampPriorVAE(VAE):
    """VAE with the VampPrior (Tomczak & Welling 2018): p(z) = mean_k q(z|u_k)

    The pseudo-inputs are parameterised as in the paper's code: the output of a bias-free
    linear layer ``pseudo_layer`` (K -> x_dim) applied to the fixed identity input, passed
    through a hardtanh to [0, 1],

        u_k = hardtanh_[0,1](W e_k) = clamp(W[:, k], 0, 1),

    so the learned weights ``W`` may leave [0, 1] while the pseudo-inputs, which the encoder
    sees like data, stay images. ``W`` starts at N(0.05, 0.01^2) (their MNIST setting), or
    with ``pseudo_init="data"`` at the first K training images plus N(0, 0.01^2) noise (their
    ``--use_training_data_init``), set by :meth:`initialize`.

    :param num_components: K, the number of pseudo-inputs (the paper: 500).
    :param pseudo_init: ``"normal"`` (N(0.05, 0.01^2)) or ``"data"`` (training images, given to
        :meth:`initialize` before the first step).

    Other parameters as :class:`~pyro_vae.models.vae.VAE`.
    """

    PSEUDO_INITS = ("normal", "data")
    PSEUDO_MEAN, PSEUDO_STD = 0.05, 0.01

    def __init__(
        self,
        x_shape: int | Sequence[int],
        z_dim: int = 20,
        num_components: int = 500,
        pseudo_init: str = "normal",
        **kwargs,
    ) -> None:
        super().__init__(x_shape, z_dim, **kwargs)
        if pseudo_init not in self.PSEUDO_INITS:
            raise ValueError(f"pseudo_init must be one of {self.PSEUDO_INITS}, got {pseudo_init!r}")
        if not isinstance(num_components, int) or num_components < 1:
            raise ValueError(f"num_components must be a positive integer, got {num_components!r}")
        self.num_components = num_components
        self.pseudo_layer = nn.Linear(num_components, self.x_dim, bias=False)
        nn.init.normal_(self.pseudo_layer.weight, self.PSEUDO_MEAN, self.PSEUDO_STD)
        # "data" waits for initialize(); a loaded state dict (a checkpoint) counts as initialized
        self._awaits_data = pseudo_init == "data"
        self.register_load_state_dict_post_hook(VampPriorVAE._loaded)

    @staticmethod
    def _loaded(module: VampPriorVAE, incompatible_keys) -> None:
        module._awaits_data = False

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        """The K pseudo-inputs u_k, shape ``(K,) + x_shape``, in [0, 1].

        ``hardtanh(pseudo_layer(eye(K)))`` computed as ``hardtanh(W.T)``: a product with the
        identity is exact, so these are the same numbers without the K x K x x_dim product."""
        return nn.functional.hardtanh(self.pseudo_layer.weight.T, 0.0, 1.0).reshape(self.num_components, *self.x_shape)

    @torch.no_grad()
    def initialize(self, x_train: torch.Tensor) -> None:
        """With ``pseudo_init="data"``: W[:, k] = x_k + N(0, 0.01^2) for the first K training
        images x_k (torch's global RNG draws the noise); otherwise nothing."""
        if not self._awaits_data:
            return
        if x_train.shape[0] < self.num_components or tuple(x_train.shape[1:]) != self.x_shape:
            raise ValueError(
                f"pseudo_init='data' needs at least {self.num_components} training images of shape "
                f"{self.x_shape}, got a tensor of shape {tuple(x_train.shape)}"
            )
        images = self.flatten(x_train[: self.num_components]).to(self.pseudo_layer.weight)
        self.pseudo_layer.weight.copy_((images + self.PSEUDO_STD * torch.randn_like(images)).T)
        self._awaits_data = False

    def prior(self, **context) -> dist.TorchDistribution:
        if self._awaits_data:
            raise InputError(
                "this VampPrior was built with pseudo_init='data': call initialize(x_train) "
                "with the training images before using it"
            )
        return _mixture(*self.encode(self.pseudo_inputs))
