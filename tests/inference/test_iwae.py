"""The importance-weighted estimators (iwae, dreg) against closed forms on the linear-Gaussian VAE,
the IAF guide's log density, and M2's enumerated bound with ten classes."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from support import draws_mean_and_se

from pyro_vae.inference import make_estimator
from pyro_vae.inference.variance import draw_gradients, parameter_groups
from pyro_vae.models import VAE, DataSpec, build_model
from pyro_vae.models.linear_gaussian import (
    exact_elbo,
    exact_log_marginal,
    exact_mixture_elbo,
    linear_gaussian_mixture,
    linear_gaussian_vae,
    set_exact_guide,
)

IMPORTANCE_WEIGHTED = ["iwae", "dreg"]


def _linear_gaussian(seed=0, near_exact=None):
    """A linear-Gaussian VAE with random weights; with ``near_exact = eps`` its guide is
    the exact posterior with every encoder weight moved by eps * N(0, 1)."""
    torch.manual_seed(seed)
    vae = linear_gaussian_vae(3, 2)
    with torch.no_grad():
        for p in vae.parameters():
            p.copy_(0.4 * torch.randn(p.shape))
        if near_exact is not None:
            vae.decoder[0].weight.copy_(torch.linalg.qr(torch.randn(3, 2))[0] * torch.tensor([1.0, 2.0]))
            vae.likelihood.log_var.fill_(2 * math.log(0.7))  # isotropic: the posterior covariance is diagonal
            set_exact_guide(vae)
            for p in vae.encoder.parameters():
                p.add_(near_exact * torch.randn(p.shape))
    return vae


def _bounds(vae, name, x, k, num_draws):
    estimator = make_estimator(name, vae, k)
    values = torch.tensor([-estimator.elbo.loss(vae.model, estimator.guide, x) for _ in range(num_draws)])
    return values.mean().item(), values.std().item() / num_draws**0.5


@pytest.mark.slow
@pytest.mark.parametrize("name", IMPORTANCE_WEIGHTED)
def test_bound_is_above_the_elbo_and_increases_with_k(float64, name):
    vae = _linear_gaussian()
    x = torch.randn(4, 3)
    elbo, log_px = exact_elbo(vae, x).sum().item(), exact_log_marginal(vae, x).sum().item()
    assert log_px - elbo > 5.0  # a loose guide: room for the bound to rise
    means = {k: _bounds(vae, name, x, k, num_draws=400) for k in (1, 5, 50)}
    assert abs(means[1][0] - elbo) < 5 * means[1][1]  # K = 1 is the ELBO
    for small, large in ((1, 5), (5, 50)):
        (m_small, se_small), (m_large, se_large) = means[small], means[large]
        assert m_large - m_small > 5 * (se_small**2 + se_large**2) ** 0.5
    assert means[50][0] < log_px


def test_bound_scales_by_total_size(float64):
    vae = _linear_gaussian()
    x = torch.randn(4, 3)
    estimator = make_estimator("iwae", vae, 5)
    pyro.set_rng_seed(1)
    loss = estimator.elbo.loss(vae.model, estimator.guide, x)
    pyro.set_rng_seed(1)
    scaled = estimator.elbo.loss(vae.model, estimator.guide, x, total_size=12)
    assert scaled == pytest.approx(3 * loss, rel=1e-12)  # N/M = 12/4 outside the log-mean-exp


@pytest.mark.parametrize("name", IMPORTANCE_WEIGHTED)
def test_exact_posterior_makes_the_bound_exact(float64, name):
    vae = _linear_gaussian(near_exact=0.0)
    x = torch.randn(4, 3)
    estimator = make_estimator(name, vae, 3)
    # every weight p(x, z) / p(z|x) equals p(x): the bound is log p(x) whatever the draw
    loss = estimator.elbo.loss_and_grads(vae.model, estimator.guide, x)
    assert loss == pytest.approx(-exact_log_marginal(vae, x).sum().item(), abs=1e-9)
    mean, se = draws_mean_and_se(vae, name, x, 100, 3)["guide"]
    if name == "dreg":  # the doubly reparameterized guide gradient is zero draw by draw
        assert mean.abs().max() < 1e-9 and se.max() < 1e-9
    else:  # the IWAE guide gradient is zero only in expectation (its score term is noise)
        assert ((mean.abs() / se) < 5).all() and se.max() > 1e-3


@pytest.mark.slow
def test_dreg_and_iwae_gradients_agree_and_differ_from_the_elbo(float64):
    vae = _linear_gaussian()
    x = torch.randn(4, 3)
    iwae, dreg, elbo = (
        draws_mean_and_se(vae, name, x, 400, k) for name, k in (("iwae", 5), ("dreg", 5), ("reparam", 1))
    )
    for group in ("guide", "model"):
        (iwae_mean, iwae_se), (dreg_mean, dreg_se), (elbo_mean, elbo_se) = iwae[group], dreg[group], elbo[group]
        z = (iwae_mean - dreg_mean).abs() / (iwae_se**2 + dreg_se**2).sqrt()
        assert z.max() < 5.0, f"{group}: max |z| = {z.max():.2f}"
        z_elbo = (iwae_mean - elbo_mean).abs() / (iwae_se**2 + elbo_se**2).sqrt()
        assert z_elbo.max() > 10.0  # K = 5 moves the gradient: the agreement above has teeth


def test_iwae_model_gradient_approaches_the_log_marginal_gradient(float64):
    vae = _linear_gaussian(near_exact=0.05)
    x = torch.randn(4, 3)
    names = dict(vae.named_parameters())
    model_params = parameter_groups(vae, x)["model"]  # the decoder and sigma, in the draws' order
    assert len(model_params) == 3
    exact = torch.autograd.grad(-exact_log_marginal(vae, x).sum(), [names[n] for n in model_params])
    exact = torch.cat([g.flatten() for g in exact])
    mean, se = draws_mean_and_se(vae, "iwae", x, 40, 500)["model"]
    assert ((mean - exact).abs() < 5 * se + 0.01 * exact.norm()).all()
    elbo_gap = torch.autograd.grad(-exact_elbo(vae, x).sum(), [names[n] for n in model_params])
    assert (torch.cat([g.flatten() for g in elbo_gap]) - exact).norm() > 0.05 * exact.norm()


def test_guide_gradient_snr_falls_with_k_for_iwae_and_not_for_dreg(float64):
    # Rainforth et al. (2018): the IWAE guide gradient's SNR is O(1/sqrt(K)); DReG's grows with K
    vae = _linear_gaussian(near_exact=0.05)
    x = torch.randn(4, 3)
    snr = {
        (name, k): draw_gradients(vae, make_estimator(name, vae, k), x, 100).summary("guide")["snr"]
        for name in IMPORTANCE_WEIGHTED
        for k in (1, 10, 100)
    }
    assert snr["iwae", 1] > snr["iwae", 10] >= snr["iwae", 100]
    assert snr["iwae", 100] < 0.5 * snr["iwae", 1]
    assert snr["dreg", 1] < snr["dreg", 10] < snr["dreg", 100]
    assert snr["dreg", 100] > 2 * snr["dreg", 1]


class _DiscreteGuideVAE(VAE):
    def guide(self, x, **kwargs):
        with self.data_plate(x.shape[0]):
            pyro.sample("z", dist.Bernoulli(0.5 * torch.ones(x.shape[0], 2)).to_event(1))


@pytest.mark.parametrize("name", IMPORTANCE_WEIGHTED)
def test_refusals_name_the_site(name):
    m2 = linear_gaussian_mixture(3, 2, 2)
    estimator = make_estimator(name, m2, 2)
    with pytest.raises(ValueError, match="site 'y' \\(Categorical\\).*--estimator enum"):
        estimator.elbo.loss(m2.model, estimator.guide, torch.zeros(3, 3))
    vae = _DiscreteGuideVAE(3, z_dim=2, hidden=(4,))
    estimator = make_estimator(name, vae, 2)
    with pytest.raises(ValueError, match="site 'z' \\(Independent\\) has no reparameterized sampler"):
        estimator.elbo.loss(vae.model, estimator.guide, torch.zeros(3, 3))


def test_dreg_refuses_a_hierarchical_guide_and_iwae_trains_it():
    program = build_model("two-layer", DataSpec((4,)), z_dim=2, z2_dim=2, hidden=(3,), hidden2=(3,))
    x = torch.bernoulli(torch.full((3, 4), 0.5))
    dreg = make_estimator("dreg", program, 2)
    with pytest.raises(ValueError, match="q\\('z2'\\) depends on the latents \\['z'\\].*use iwae"):
        dreg.elbo.loss(program.model, dreg.guide, x)
    iwae = make_estimator("iwae", program, 4)
    assert math.isfinite(iwae.elbo.loss_and_grads(program.model, iwae.guide, x))
    assert all(p.grad is not None for p in program.encoder2.parameters())


# --- the IAF guide ----------------------------------------------------------------------
@pytest.mark.parametrize("num_flows", [1, 3])
def test_iaf_log_q_matches_the_transformed_distribution(float64, num_flows):
    torch.manual_seed(num_flows)
    iaf = build_model("iaf", DataSpec((6,)), z_dim=3, hidden=(5,), num_flows=num_flows, flow_hidden=(8,))
    with torch.no_grad():
        for p in iaf.flows.parameters():
            p.normal_(0, 0.5)  # far from the identity
    x = torch.bernoulli(torch.full((7, 6), 0.5))
    trace = pyro.poutine.trace(iaf.guide).get_trace(x)
    trace.compute_log_prob()
    z, log_q = trace.nodes["z"]["value"], trace.nodes["z"]["log_prob"]
    # a fresh distribution, no cached inverse: log q(z) by inverting the flows
    h = iaf.encoder.features(iaf.flatten(x))
    base = dist.Normal(*iaf.encoder.head(h)).to_event(1)
    fresh = dist.TransformedDistribution(base, [flow.condition(h) for flow in iaf.flows])
    torch.testing.assert_close(log_q, fresh.log_prob(z.detach()), atol=1e-8, rtol=1e-8)
    # and by the change of variables, walking the draw back through the flows by hand
    value, log_det = z.detach(), torch.zeros(len(x))
    for transform in reversed(fresh.transforms):
        previous = transform.inv(value)
        log_det = log_det + transform.log_abs_det_jacobian(previous, value)
        value = previous
    torch.testing.assert_close(log_q, base.log_prob(value) - log_det, atol=1e-8, rtol=1e-8)
    assert (log_q - base.log_prob(z)).abs().max() > 1e-2  # the flows do move the density


# --- M2 with ten classes ------------------------------------------------------------------
def test_m2_enumerated_bound_equals_the_explicit_sum_over_ten_classes(float64):
    torch.manual_seed(0)
    m2 = linear_gaussian_mixture(x_dim=3, z_dim=2, num_classes=10)
    with torch.no_grad():
        for p in m2.parameters():
            p.copy_(0.5 * torch.randn(p.shape))
        m2.decoder[0].weight[:, :2] = torch.linalg.qr(torch.randn(3, 2))[0] * torch.tensor([1.0, 2.0])
        m2.likelihood.log_var.fill_(2 * math.log(0.7))
        set_exact_guide(m2)  # q(z|x,y) = p(z|x,y): every per-class bound is exact, no noise
    x = torch.randn(4, 3)
    enum = make_estimator("enum", m2)
    enumerated = -enum.elbo.loss(m2.model, enum.guide, x)
    # the explicit sum: sum_i sum_y q(y|x_i) [ELBO(x_i, y) - log q(y|x_i)], each ELBO(x_i, y) from
    # the program with y observed
    reparam = make_estimator("reparam", m2)
    log_qy = torch.log_softmax(m2.classifier(x), -1).detach()
    explicit = 0.0
    for i in range(len(x)):
        for y in range(10):
            labelled = -reparam.elbo.loss(m2.model, reparam.guide, x[i : i + 1], y=torch.tensor([y]))
            explicit += log_qy[i, y].exp().item() * (labelled - log_qy[i, y].item())
    assert enumerated == pytest.approx(explicit, rel=1e-9)
    assert enumerated == pytest.approx(exact_mixture_elbo(m2, x).sum().item(), rel=1e-9)
    assert log_qy.exp().max() < 0.9  # q(y|x) spreads over the classes: all ten terms count
