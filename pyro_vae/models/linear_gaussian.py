r"""The linear-Gaussian VAE, whose log p(x), posterior and ELBO have closed forms.

Model: :math:`z \sim \mathcal N(0, I_k)`, :math:`x \mid z \sim \mathcal N(W z + b, D)` with
:math:`D = \operatorname{diag} \sigma^2` (probabilistic PCA), so

.. math::

    p(x) = \mathcal N(x;\, b,\, W W^\top + D), \qquad
    p(z \mid x) = \mathcal N\big(S W^\top D^{-1} (x - b),\, S\big), \quad S = (I + W^\top D^{-1} W)^{-1}.

For a Gaussian guide :math:`q(z \mid x) = \mathcal N(m, \operatorname{diag} s^2)` the ELBO
:math:`\mathbb E_q[\log p(x \mid z)] - \mathrm{KL}(q \,\|\, p(z))` is, exactly,

.. math::

    \mathbb E_q[\log p(x \mid z)] &= -\frac12 \sum_i \Big[\log(2 \pi \sigma_i^2)
        + \frac{(x - W m - b)_i^2 + (W \operatorname{diag}(s^2) W^\top)_{ii}}{\sigma_i^2}\Big], \\
    \mathrm{KL}(q \,\|\, p(z)) &= \frac12 \sum_j \big(s_j^2 + m_j^2 - 1 - \log s_j^2\big).

These functions are differentiable, so ``torch.autograd`` on :func:`exact_elbo`
gives the exact ELBO gradient that any unbiased estimator must match.

:func:`linear_gaussian_mixture` adds a discrete label y (the M2 model with
linear networks): log p(x) is a mixture of C such Gaussians, and the ELBO with
y summed out exactly is the q(y|x)-weighted sum of the per-class closed forms.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import cast

import torch
from torch import nn
from torch.distributions import MultivariateNormal

from pyro_vae.models.likelihoods import Gaussian
from pyro_vae.models.m2 import M2
from pyro_vae.models.nets import GaussianEncoder
from pyro_vae.models.vae import VAE


def linear_gaussian_vae(x_dim: int, z_dim: int, prefix: str = "") -> VAE:
    """A :class:`VAE` with linear encoder and decoder and a per-pixel, z-independent sigma."""
    likelihood = Gaussian((x_dim,), heteroscedastic=False, min_scale=0.0)
    return VAE(x_dim, z_dim, hidden=(), likelihood=likelihood, prefix=prefix)


def _affine(net: nn.Module) -> nn.Linear:
    """The one layer of a network without hidden layers."""
    (linear,) = cast("Iterable[nn.Linear]", net)
    return linear


def _sigma(program: VAE) -> torch.Tensor:
    """The z-independent sigma of the program's :class:`Gaussian` likelihood."""
    likelihood = cast(Gaussian, program.likelihood)
    return likelihood.scale(likelihood.log_var)


def decoder_parameters(vae: VAE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(W, b, sigma)`` of a VAE built by :func:`linear_gaussian_vae`."""
    linear = _affine(vae.decoder)
    return linear.weight, linear.bias, _sigma(vae)


def exact_log_marginal(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    r""":math:`\log p(x) = \log \mathcal N(x;\, b,\, W W^\top + \operatorname{diag} \sigma^2)`, one value per row of ``x``."""
    w, b, sigma = decoder_parameters(vae)
    cov = w @ w.T + torch.diag(sigma**2)
    return MultivariateNormal(b, covariance_matrix=cov).log_prob(x)


def exact_posterior(vae: VAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(batch, k)`` and covariance ``(k, k)`` of the true posterior p(z|x)."""
    w, b, sigma = decoder_parameters(vae)
    wt_dinv = w.T / sigma**2
    cov = torch.linalg.inv(torch.eye(w.shape[1], dtype=w.dtype, device=w.device) + wt_dinv @ w)
    return (x - b) @ wt_dinv.T @ cov.T, cov


def exact_elbo(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    """The ELBO of the VAE's own guide q(z|x), in closed form, one value per row of ``x``."""
    w, b, sigma = decoder_parameters(vae)
    return gaussian_elbo(x, w, b, sigma, *vae.encode(x))


def gaussian_elbo(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, sigma: torch.Tensor, m: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    """E_q[log p(x|z)] - KL(q || N(0, I)) for p(x|z) = N(W z + b, diag sigma^2), q = N(m, diag s^2)."""
    var = sigma**2
    resid = x - m @ w.T - b
    trace_term = (s**2) @ (w**2).T  # (W diag(s^2) W^T)_ii for each datum
    expected_ll = -0.5 * (torch.log(2 * math.pi * var) + (resid**2 + trace_term) / var).sum(-1)
    kl = 0.5 * (s**2 + m**2 - 1 - torch.log(s**2)).sum(-1)
    return expected_ll - kl


def loc_gradient_variances(vae: VAE, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Exact variances of two single-sample estimators of dELBO/dmu, for z_dim = 1.

    With q(z|x) = N(mu, s^2), z = mu + s eps and g(z) = log p(x, z) = g(mu)
    + (a - c mu)(z - mu) - c (z - mu)^2 / 2, where c = 1 + sum_i w_i^2 / sigma_i^2:

    * reparameterized (``Trace_ELBO``): g'(mu + s eps), variance ``c^2 s^2``;
    * score function (``Trace_ELBO`` with a non-reparameterized q):
      (eps / s) h(eps), with h = log p(x, z) - log q(z|x) = a0 + a1 eps + a2 eps^2,
      a0 = g(mu) + log s + log(2 pi)/2, a1 = s (a - c mu), a2 = (1 - c s^2)/2,
      variance ``(a0^2 + 2 a1^2 + 15 a2^2 + 6 a0 a2) / s^2``.

    Returns one value per row of ``x`` for each estimator.
    """
    if vae.z_dim != 1:
        raise ValueError(f"loc_gradient_variances needs z_dim = 1, got {vae.z_dim}")
    w, b, sigma = decoder_parameters(vae)
    w = w[:, 0]
    mu, s = (t[:, 0] for t in vae.encode(x))
    c = 1 + (w**2 / sigma**2).sum()
    a = ((x - b) * w / sigma**2).sum(-1)
    log_joint = -0.5 * (mu**2 + math.log(2 * math.pi)) - 0.5 * (
        torch.log(2 * math.pi * sigma**2) + (x - mu[:, None] * w - b) ** 2 / sigma**2
    ).sum(-1)
    a0 = log_joint + torch.log(s) + 0.5 * math.log(2 * math.pi)
    a1 = s * (a - c * mu)
    a2 = 0.5 * (1 - c * s**2)
    return {
        "reparam": (c * s) ** 2,
        "score": (a0**2 + 2 * a1**2 + 15 * a2**2 + 6 * a0 * a2) / s**2,
    }


# --- a mixture of linear-Gaussian components: the M2 model with linear networks ------------
def linear_gaussian_mixture(x_dim: int, z_dim: int, num_classes: int) -> M2:
    """An :class:`~pyro_vae.models.m2.M2` with linear encoder, decoder and classifier and a
    z-independent sigma: y ~ Cat(1/C), z ~ N(0, I), x | y, z ~ N(A z + B onehot(y) + c, diag sigma^2).
    Its log p(x) is a finite mixture of Gaussians and its enumerated ELBO has a closed form."""
    likelihood = Gaussian((x_dim,), heteroscedastic=False, min_scale=0.0)
    return M2(x_dim, num_classes, z_dim, hidden=(), likelihood=likelihood)


def _mixture_parts(m2: M2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    linear = _affine(m2.decoder)
    a, offsets = linear.weight[:, : m2.z_dim], linear.weight[:, m2.z_dim :]
    means = offsets.T + linear.bias  # (C, x_dim): B onehot(y) + c for each y
    return a, means, _sigma(m2)


def exact_mixture_log_marginal(m2: M2, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log sum_y (1/C) N(x; B onehot(y) + c, A A^T + diag sigma^2), one value per row of ``x``."""
    a, means, sigma = _mixture_parts(m2)
    cov = a @ a.T + torch.diag(sigma**2)
    log_py = torch.log_softmax(m2.class_logits, -1)
    log_joint = torch.stack([MultivariateNormal(mean, covariance_matrix=cov).log_prob(x) for mean in means], -1)
    return torch.logsumexp(log_joint + log_py, -1)


def exact_mixture_elbo(m2: M2, x: torch.Tensor) -> torch.Tensor:
    """sum_y q(y|x) [ELBO(x | y) + log p(y) - log q(y|x)] with y summed out exactly, in closed form."""
    a, means, sigma = _mixture_parts(m2)
    log_qy = torch.log_softmax(m2.classifier(x), -1)
    log_py = torch.log_softmax(m2.class_logits, -1)
    terms = []
    for y in range(m2.num_classes):
        labels = torch.full((x.shape[0],), y, dtype=torch.long, device=x.device)
        q = m2.posterior(x, y=labels).base_dist
        terms.append(gaussian_elbo(x, a, means[y], sigma, q.loc, q.scale) + log_py[y] - log_qy[:, y])
    return (log_qy.exp() * torch.stack(terms, -1)).sum(-1)


def set_exact_guide(program: VAE) -> None:
    """Set the linear encoder of :func:`linear_gaussian_vae` or :func:`linear_gaussian_mixture`
    to the exact posterior: q(z|x[, y]) = p(z|x[, y]) = N(S A^T D^-1 (x - B onehot(y) - c), S),
    S = (I + A^T D^-1 A)^-1, for the decoder x = A z + B onehot(y) + c + noise (B empty without y).

    The guide is a diagonal Gaussian, so S must be diagonal (A's columns orthogonal in the
    D^-1 metric); ``ValueError`` otherwise. Every importance weight then equals p(x[, y]).
    """
    decoder = _affine(program.decoder)
    encoder = _affine(cast(GaussianEncoder, program.encoder).net)
    k = program.z_dim
    a, offsets, c = decoder.weight[:, :k], decoder.weight[:, k:], decoder.bias
    var = _sigma(program) ** 2
    precision = torch.eye(k, dtype=a.dtype, device=a.device) + (a.T / var) @ a
    off_diagonal = precision - torch.diag(precision.diagonal())
    if off_diagonal.abs().max() > 1e-6 * precision.abs().max():
        raise ValueError("the exact posterior covariance is not diagonal: a diagonal Gaussian guide cannot match it")
    cov = 1 / precision.diagonal()
    gain = cov[:, None] * a.T / var  # S A^T D^-1
    with torch.no_grad():
        encoder.weight.zero_()
        encoder.weight[:k, : program.x_dim] = gain
        encoder.weight[:k, program.x_dim :] = -gain @ offsets
        encoder.bias[:k] = -gain @ c
        encoder.bias[k:] = cov.log()
