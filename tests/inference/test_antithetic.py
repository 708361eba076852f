"""ARM and DisARM: unbiased against the exact ELBO gradient (every binary latent of a small sigmoid
belief network summed out), DisARM's variance below ARM's, and the programs they refuse."""

import math

import pytest
import torch
from support import SBN_DATA as X
from support import estimator_gradient_draws, exact_sbn_gradient, small_sbn
from test_multi_sample import CategoricalMixture

from pyro_vae.inference import make_estimator
from pyro_vae.inference.antithetic import AntitheticELBO, arm_weight, disarm_weight
from pyro_vae.inference.variance import draw_gradients, variance_ratio
from pyro_vae.models.sbn import SigmoidBeliefVAE
from pyro_vae.models.vae import VAE


@pytest.mark.parametrize("weight", [arm_weight, disarm_weight])
def test_a_pairs_weight_averages_to_the_derivative_of_the_expectation(weight):
    # one unit, f(1) = 2.0, f(0) = -0.5: d/dphi E[f(b)] = (f(1) - f(0)) sigmoid'(phi); u integrated on a grid
    phi = torch.tensor([-1.5, 0.3, 2.0], dtype=torch.float64)
    u = ((torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000).unsqueeze(-1)
    b, anti = (u < torch.sigmoid(phi)).double(), (1 - u < torch.sigmoid(phi)).double()
    f = lambda v: torch.where(v > 0, 2.0, -0.5)  # noqa: E731
    mean = weight(f(b), f(anti), u, phi, b, anti).mean(0)
    torch.testing.assert_close(mean, 2.5 * torch.sigmoid(phi) * torch.sigmoid(-phi), atol=1e-4, rtol=0)


@pytest.mark.parametrize("num_pairs", [1, 3])
@pytest.mark.parametrize("name", ["arm", "disarm"])
def test_the_mean_gradient_is_the_exact_one(name, num_pairs):
    sbn = small_sbn()
    torch.manual_seed(1)
    estimator = make_estimator(name, sbn, num_pairs)
    assert estimator.objective == "elbo"
    exact = exact_sbn_gradient(sbn, "elbo")
    mean, se = estimator_gradient_draws(sbn, estimator, copies=500, rounds=40)
    assert ((mean - exact).abs() <= 4 * se + 1e-9).all(), (mean, exact, se)
    assert se.max() < 0.1 * exact.abs().max()  # the check has power: errors well below the gradient's size


def test_the_loss_is_minus_the_mean_of_f_over_the_pairs():
    sbn = small_sbn()
    elbo = make_estimator("disarm", sbn, 2).elbo
    torch.manual_seed(3)
    f, guide_term, scale = elbo._terms(sbn.model, sbn.guide, (X,), {})
    assert f.shape == (4, 2) and guide_term.shape == (2,) and scale == 1.0
    torch.manual_seed(3)
    assert elbo.loss(sbn.model, sbn.guide, X) == pytest.approx(-f.mean(0).sum().item())


def test_disarm_has_less_guide_variance_than_arm_and_the_same_model_gradients():
    sbn = small_sbn()
    draws = {}
    for name in ("arm", "disarm"):
        torch.manual_seed(2)  # the same pairs for both: only the guide's weights differ
        draws[name] = draw_gradients(sbn, make_estimator(name, sbn, 1), X, 600)
    generator = torch.Generator().manual_seed(0)
    ratio, _, high = variance_ratio(draws["disarm"], draws["arm"], "guide", generator=generator)
    assert high < 0.95, ratio  # measured: 0.79 (0.74, 0.85) over 1000 draws
    assert torch.equal(draws["disarm"].grams["model"], draws["arm"].grams["model"])


@pytest.mark.parametrize(
    "program, x, message",
    [
        (VAE(3, z_dim=2, hidden=()), torch.ones(2, 3), "site 'z' is a Normal latent: arm takes Bernoulli latents only"),
        (CategoricalMixture(), torch.tensor([0.0, 1.0]), "site 'c' is a Categorical latent: arm takes Bernoulli"),
        (
            SigmoidBeliefVAE(3, z_dim=2, hidden=(), layers=2),
            torch.ones(2, 3),
            "site 'z2' is a second latent after 'z': arm takes one layer of Bernoulli latents",
        ),
    ],
    ids=["gaussian", "categorical", "two-layer-sbn"],
)
def test_other_latents_are_refused_by_name(program, x, message):
    estimator = make_estimator("arm", program, 1)
    with pytest.raises(ValueError, match=message):
        estimator.elbo.loss_and_grads(program.model, estimator.guide, x)


def test_zero_pairs_are_refused():
    with pytest.raises(ValueError, match=r"disarm needs K >= 1 antithetic pairs \(--num-particles\), got 0"):
        AntitheticELBO("disarm", disarm_weight, 0, 1, "data")


@pytest.mark.parametrize("name", ["arm", "disarm"])
def test_an_sbn_trains_with_it(tmp_path, name):
    from pyro_vae.training import TrainConfig, build_run, train

    config = TrainConfig(
        dataset="synthetic", model="sbn", z_dim=4, hidden=(), epochs=1, estimator=name, num_train=200, batch_size=50
    )
    start = build_run(config).program.encoder.state_dict()
    run = train(config, tmp_path / "run", progress=False)
    assert len(run.metrics) == 1 and math.isfinite(run.metrics[0]["train_elbo"])
    trained = run.program.encoder.state_dict()
    assert all(torch.isfinite(trained[k]).all() and not torch.equal(trained[k], start[k]) for k in start)
