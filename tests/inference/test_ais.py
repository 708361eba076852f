"""Annealed importance sampling, BDMC and the amortization gap against the closed forms of the
linear-Gaussian VAE, and the programs they refuse."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae.inference.ais import STARTS, AnnealingPath, ais_bounds, anneal, bdmc_bounds, sigmoid_schedule
from pyro_vae.inference.amortization import amortization_gap
from pyro_vae.inference.evaluate import importance_bounds
from pyro_vae.models.linear_gaussian import exact_log_marginal, linear_gaussian_vae, set_exact_guide


def _linear_gaussian(exact_guide=False, num_data=4):
    """A linear-Gaussian VAE with a posterior ~5 times narrower than the prior (orthogonal decoder
    columns, so that it is diagonal), its guide the prior N(0, I) (a poor proposal) or, with
    ``exact_guide``, the exact posterior; and ``num_data`` data drawn from it."""
    torch.manual_seed(0)
    vae = linear_gaussian_vae(4, 2)
    with torch.no_grad():
        vae.decoder[0].weight.copy_(torch.linalg.qr(torch.randn(4, 2))[0] * torch.tensor([2.0, 3.0]))
        vae.decoder[0].bias.copy_(0.5 * torch.randn(4))
        vae.likelihood.log_var.fill_(2 * math.log(0.5))
        vae.encoder.net[0].weight.zero_()
        vae.encoder.net[0].bias.zero_()
    if exact_guide:
        set_exact_guide(vae)
    z = torch.randn(num_data, 2)
    x = (z @ vae.decoder[0].weight.T + vae.decoder[0].bias + 0.5 * torch.randn(num_data, 4)).detach()
    return vae, x


def test_the_schedule_rises_from_zero_to_one():
    betas = sigmoid_schedule(10)
    assert betas[0] == 0 and betas[-1] == 1 and len(betas) == 11 and (betas.diff() > 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("start", STARTS.names())
def test_ais_matches_the_exact_log_px_and_beats_importance_sampling_with_a_poor_guide(float64, start):
    vae, x = _linear_gaussian()
    exact = exact_log_marginal(vae, x).detach()
    result = ais_bounds(vae.model, vae.guide, x, num_chains=16, num_steps=60, leapfrog_steps=3, start=start)
    # the standard error of a log-mean-exp of K weights, ~ sd(log w) / sqrt(K) where the weights are close
    spread = result.log_weights.std(0) / 4
    assert ((result.log_px - exact).abs() < 4 * spread + 0.05).all(), (result.log_px - exact, spread)
    assert result.accept.shape == result.step_size.shape == (16, 4) and 0.3 < result.accept.mean() < 1
    proposal = importance_bounds(vae.model, vae.guide, x, 16)["log_px"]  # q = p(z), as many draws
    assert (result.log_px - exact).abs().mean() < (proposal - exact).abs().mean()


@pytest.mark.slow
def test_bdmc_sandwiches_the_exact_log_px_and_its_gap_shrinks_with_more_steps(float64):
    # each bound holds in expectation: on a mean over 8 data, within a Monte Carlo tolerance
    vae, x = _linear_gaussian(num_data=8)
    short, long = (bdmc_bounds(vae.model, vae.guide, x, 16, steps, 3) for steps in (5, 60))
    assert not torch.equal(short.x, long.x) and short.x.shape == x.shape  # data simulated anew
    for sandwich in (short, long):
        exact = exact_log_marginal(vae, sandwich.x).detach().mean()
        assert sandwich.lower.mean() < exact + 0.2 and sandwich.upper.mean() > exact - 0.2
    assert (long.upper - long.lower).mean() < 0.3 * (short.upper - short.lower).mean()


def test_the_amortization_gap_of_the_exact_posterior_is_zero(float64):
    vae, x = _linear_gaussian(exact_guide=True)
    exact = exact_log_marginal(vae, x).detach()
    result = amortization_gap(vae.model, vae.guide, x, num_steps=10, lr=1e-3, num_samples=100)
    torch.testing.assert_close(result.encoder_elbo, exact)  # every log-weight is log p(x)
    torch.testing.assert_close(result.log_px, exact)
    assert (result.gap.abs() < 0.02).all(), result.gap  # Adam moves q by ~lr a step, even at the optimum


def test_the_optimized_gaussian_reaches_log_px_where_the_encoder_is_poor(float64):
    # the posterior is a diagonal Gaussian, so the best Gaussian q's ELBO is log p(x)
    vae, x = _linear_gaussian()
    exact = exact_log_marginal(vae, x).detach()
    result = amortization_gap(vae.model, vae.guide, x, num_steps=150, lr=0.05, num_samples=500)
    assert (result.gap > 2.0).all()
    assert ((result.optimized_elbo - exact).abs() < 0.1).all(), result.optimized_elbo - exact


def _discrete(x):
    with pyro.plate("data", x.shape[0]):
        b = pyro.sample("b", dist.Bernoulli(0.5))
        pyro.sample("x", dist.Normal(b[..., None], 1.0).to_event(1), obs=x)


def _positive(x):
    with pyro.plate("data", x.shape[0]):
        s = pyro.sample("s", dist.Gamma(2.0, 2.0))
        pyro.sample("x", dist.Normal(0.0, s[..., None]).to_event(1), obs=x)


def _shared(x):
    m = pyro.sample("m", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(m, 1.0))
        pyro.sample("x", dist.Normal(z[..., None], 1.0).to_event(1), obs=x)


def _empty_guide(x):
    pass


@pytest.mark.parametrize(
    "model, message",
    [
        (_discrete, "the latent site 'b' has discrete support"),
        (_positive, "the latent site 's' has non-real support"),
        (_shared, "the sites ['m'] lie outside the data plate 'data'"),
    ],
)
def test_programs_whose_latents_hmc_cannot_move_per_datum_are_refused_by_site(model, message):
    with pytest.raises(ValueError, match=f"^{message.replace('[', '.').replace(']', '.')}"):
        ais_bounds(model, _empty_guide, torch.randn(3, 2), num_chains=2, num_steps=2)


def test_bdmc_refuses_a_model_that_observes_more_than_x():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z[..., None], 1.0).to_event(1), obs=x)
            pyro.sample("y", dist.Normal(z, 1.0), obs=torch.zeros(x.shape[0]))

    with pytest.raises(ValueError, match="must observe x at one site of 6 numbers, and it observes"):
        bdmc_bounds(model, _empty_guide, torch.randn(3, 2), num_chains=2, num_steps=2)


def _grouped(x):
    """z_ij ~ N(0, 1), x_ij ~ N(z_ij, 0.5^2) in a plate of groups j inside the data plate:
    log p(x_i) = sum_j log N(x_ij; 0, 1.25)."""
    with pyro.plate("data", x.shape[0], dim=-1), pyro.plate("groups", x.shape[1], dim=-2):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 0.5), obs=x.T)


def test_latents_in_inner_plates_are_moved_per_datum(float64):
    x = torch.randn(3, 5)
    path = AnnealingPath(_grouped, _empty_guide, x, {}, max_plate_nesting=2)
    draw = path.draw(7)
    assert draw.shape == (7, 3, 5) and torch.equal(path.layout.flatten(path.layout.unflatten(draw)), draw)
    exact = dist.Normal(0.0, 1.25**0.5).log_prob(x).sum(-1)
    result = ais_bounds(_grouped, _empty_guide, x, num_chains=16, num_steps=30, leapfrog_steps=3, max_plate_nesting=2)
    assert ((result.log_px - exact).abs() < 4 * result.log_weights.std(0) / 4 + 0.05).all()


@pytest.mark.parametrize(
    "method, settings, message",
    [
        (ais_bounds, dict(num_chains=0), "num_chains must be >= 1, got 0"),
        (ais_bounds, dict(num_steps=0), "num_steps must be >= 1, got 0"),
        (ais_bounds, dict(leapfrog_steps=0), "leapfrog_steps must be >= 1, got 0"),
        (bdmc_bounds, dict(num_chains=0), "num_chains must be >= 1, got 0"),
        (amortization_gap, dict(num_steps=0), "num_steps must be >= 1, got 0"),
        (amortization_gap, dict(num_particles=-1), "num_particles must be >= 1, got -1"),
        (amortization_gap, dict(lr=0.0), "lr must be a finite number > 0, got 0.0"),
    ],
)
def test_bad_counts_are_refused_in_one_line(method, settings, message):
    vae, x = _linear_gaussian()
    with pytest.raises(ValueError, match=f"^{message}"):
        method(vae.model, vae.guide, x, **settings)


def _scale_invalid_in_the_tails(x):
    """z ~ N(0, 0.3^2) per datum; x ~ N(z, s) with s NaN where abs(z) > 1 (a network's output gone bad)."""
    with pyro.plate("data", x.shape[0], dim=-1):
        z = pyro.sample("z", dist.Normal(0.0, 0.3))
        scale = torch.where(z.abs() < 1, torch.ones_like(z), torch.full_like(z, math.nan))
        pyro.sample("x", dist.Normal(z, scale), obs=x)


def test_a_proposal_where_the_model_is_invalid_is_rejected_not_raised():
    x = torch.tensor([0.5, -0.5, 0.0])
    path = AnnealingPath(_scale_invalid_in_the_tails, _empty_guide, x, {})
    torch.manual_seed(0)
    z = path.draw(8)
    assert (z.abs() < 1).all()  # the start is valid
    result = anneal(path, z, sigmoid_schedule(20), leapfrog_steps=5, step_size=3.0)  # steps far into the tails
    assert torch.isfinite(result.log_px).all()
    assert (result.accept < 0.9).all()  # proposals beyond abs(z) = 1 were turned down
