"""Exact checks on the linear-Gaussian VAE, whose log p(x) and ELBO have closed forms."""

import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyro_vae.inference.evaluate import importance_bounds
from pyro_vae.models.linear_gaussian import (
    exact_elbo,
    exact_log_marginal,
    exact_posterior,
    linear_gaussian_vae,
)


def _randomize(vae, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in vae.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return vae


def _exact_guide(vae, sigma=0.7):
    """Orthogonal decoder columns and isotropic noise make p(z|x) diagonal; set q = p(z|x)."""
    x_dim, z_dim = vae.x_dim, vae.z_dim
    with torch.no_grad():
        w = torch.linalg.qr(torch.randn(x_dim, z_dim))[0] * torch.arange(1.0, z_dim + 1)
        (dec,) = vae.decoder
        dec.weight.copy_(w)
        dec.bias.copy_(torch.randn(x_dim))
        vae.likelihood.log_var.fill_(2 * torch.log(torch.tensor(sigma)))
        x0 = torch.zeros(1, x_dim)
        mean0, cov = exact_posterior(vae, x0)
        gain = exact_posterior(vae, torch.eye(x_dim))[0] - mean0  # rows: posterior mean per unit x
        (enc,) = vae.encoder.net
        enc.weight.zero_()
        enc.bias.zero_()
        enc.weight[:z_dim] = gain.T
        enc.bias[:z_dim] = mean0[0]
        enc.bias[z_dim:] = torch.log(torch.diagonal(cov))
    return vae


def test_exact_guide_recovers_posterior(float64):
    vae = _exact_guide(linear_gaussian_vae(6, 3))
    x = torch.randn(5, 6)
    loc, scale = vae.encode(x)
    mean, cov = exact_posterior(vae, x)
    assert torch.allclose(cov, torch.diag(torch.diagonal(cov)), atol=1e-12)
    assert torch.allclose(loc, mean) and torch.allclose(scale**2, torch.diagonal(cov).expand_as(scale))


@pytest.mark.parametrize("num_samples", [1, 10, 1000])
def test_exact_posterior_gives_exact_log_marginal(float64, num_samples):
    # With q = p(z|x) every importance weight equals p(x): ELBO = IWAE = log p(x) exactly.
    vae = _exact_guide(linear_gaussian_vae(6, 3))
    x = torch.randn(8, 6)
    bounds = importance_bounds(vae.model, vae.guide, x, num_samples, chunk_size=300)
    exact = exact_log_marginal(vae, x)
    assert torch.allclose(bounds["log_px"], exact, atol=1e-9)
    assert torch.allclose(bounds["elbo"], exact, atol=1e-9)
    assert torch.allclose(exact_elbo(vae, x), exact, atol=1e-9)


def test_importance_sampling_converges_to_exact_log_marginal(float64):
    vae = _exact_guide(linear_gaussian_vae(5, 2))
    with torch.no_grad():  # a guide that is off: shifted means, too-wide scales
        vae.encoder.net[0].bias.add_(torch.tensor([1.0, -1.0, 1.0, 1.0]))
    x = torch.randn(20, 5)
    exact = exact_log_marginal(vae, x)
    errors = []
    for k in (1, 100, 20000):
        bounds = importance_bounds(vae.model, vae.guide, x, k, chunk_size=2000)
        errors.append((exact - bounds["log_px"]).mean().item())
    # K = 1 is the ELBO, several nats below log p(x); the gap closes as K grows.
    assert errors[0] > 2.0
    assert errors[0] > 10 * abs(errors[1])
    assert abs(errors[2]) < 0.02
    # ... and the mean of the 20000 log-weights is the closed-form ELBO.
    assert torch.allclose(bounds["elbo"], exact_elbo(vae, x), atol=0.1)


@pytest.mark.parametrize("elbo_cls", [Trace_ELBO, TraceMeanField_ELBO])
def test_pyro_elbo_matches_closed_form(float64, elbo_cls):
    vae = _randomize(linear_gaussian_vae(5, 2))
    x = torch.randn(10, 5)
    exact = exact_elbo(vae, x).sum().item()
    elbo = elbo_cls(num_particles=500, vectorize_particles=True, max_plate_nesting=1)
    draws = torch.tensor([-elbo.loss(vae.model, vae.guide, x) for _ in range(40)])
    se = draws.std() / 40**0.5
    assert abs(draws.mean() - exact) < 4 * se
    assert se < 0.05 * abs(exact)  # the check is not vacuous


def test_analytic_kl_is_exact(float64):
    # With sigma -> huge the likelihood term is nearly constant in z, so the
    # TraceMeanField_ELBO estimate equals the closed form up to a tiny MC error.
    vae = _randomize(linear_gaussian_vae(5, 2))
    with torch.no_grad():
        vae.likelihood.log_var.fill_(40.0)
    x = torch.randn(10, 5)
    loss = TraceMeanField_ELBO().loss(vae.model, vae.guide, x)
    assert -loss == pytest.approx(exact_elbo(vae, x).sum().item(), abs=1e-6)
