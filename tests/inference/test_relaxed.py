"""The Gumbel-softmax relaxation: biased by design, its bias measured against the exact ELBO
gradient (every binary latent summed out) and shrinking with the temperature."""

import math

import pytest
import torch
from support import estimator_gradient_draws, exact_sbn_gradient, small_sbn

from pyro_vae.inference import make_estimator
from pyro_vae.inference.relaxed import SoftBernoulli, Temperature


def _bias(name: str, temperature: float) -> tuple[float, float]:
    """``(||mean - exact||, its standard error's size)`` of the estimator at ``temperature``."""
    sbn = small_sbn()
    torch.manual_seed(1)
    estimator = make_estimator(name, sbn, 1, {"temperature": temperature, "min_temperature": temperature})
    mean, se = estimator_gradient_draws(sbn, estimator, copies=2000, rounds=20)
    return (mean - exact_sbn_gradient(sbn, "elbo")).norm().item(), se.norm().item()


@pytest.mark.slow
def test_the_bias_is_real_and_shrinks_with_the_temperature():
    hot, hot_se = _bias("gumbel", 1.0)
    cold, cold_se = _bias("gumbel", 0.1)
    assert hot > 5 * hot_se  # biased by design, and measurably so
    assert cold + 2 * cold_se < 0.5 * hot  # a tenth of the temperature: less than half the bias


@pytest.mark.slow
def test_straight_through_is_biased():
    bias, se = _bias("gumbel-st", 1.0)
    assert bias > 5 * se


def test_soft_draws_tend_to_bernoulli_draws_as_the_temperature_falls():
    logits = torch.tensor([-1.0, 0.0, 2.0]).expand(20000, 3)

    def near_binary(y: torch.Tensor) -> float:
        return ((y < 0.01) | (y > 0.99)).float().mean().item()

    hot, cold = SoftBernoulli(logits, 1.0).rsample(), SoftBernoulli(logits, 0.05).rsample()
    assert near_binary(hot) < 0.3 < 0.85 < near_binary(cold)
    torch.testing.assert_close(cold.mean(0), torch.sigmoid(logits[0]), atol=0.02, rtol=0)
    hard = SoftBernoulli(logits, 0.5, straight_through=True).rsample()
    assert set(hard.unique().tolist()) <= {0.0, 1.0}


def test_the_log_density_of_a_soft_value_interpolates_the_bernoullis():
    d = SoftBernoulli(torch.tensor(0.3), 0.5)
    log_p, log_q = torch.log(torch.sigmoid(torch.tensor(0.3))), torch.log(torch.sigmoid(torch.tensor(-0.3)))
    torch.testing.assert_close(d.log_prob(torch.tensor(0.25)), 0.25 * log_p + 0.75 * log_q)


def test_the_temperature_anneals_and_is_saved_with_the_estimator():
    schedule = Temperature(1.0, anneal_rate=1e-3, min_temperature=0.5)
    schedule.steps += 100
    assert schedule() == pytest.approx(math.exp(-0.1))
    schedule.steps += 10_000
    assert schedule() == 0.5
    assert int(schedule.state_dict()["steps"]) == 10_100
    estimator = make_estimator("gumbel", small_sbn(), 1, {"anneal_rate": 1e-3})
    sbn = small_sbn()
    estimator.elbo.loss_and_grads(sbn.model, sbn.guide, torch.ones(2, 3, dtype=torch.float64))
    assert int(estimator.modules.state_dict()["temperature.steps"]) == 1


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": 0.0}, "temperature must be a finite number > 0, got 0.0"),
        ({"anneal_rate": -1.0}, "anneal_rate must be a finite number >= 0, got -1.0"),
    ],
)
def test_bad_temperatures_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        make_estimator("gumbel", small_sbn(), 1, options)


def test_a_categorical_of_indices_is_refused_by_name():
    from test_multi_sample import CategoricalMixture

    program = CategoricalMixture()
    estimator = make_estimator("gumbel", program, 1)
    with pytest.raises(ValueError, match="site 'c' is a Categorical, which has no relaxation here"):
        estimator.elbo.loss_and_grads(program.model, estimator.guide, torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize(
    "options, refused",
    [
        ({"anneal_rate": 1e-3}, True),  # 1 -> 0.5: each draw at another temperature
        ({"temperature": 0.5, "anneal_rate": 1e-3}, False),  # already at its floor: one temperature
        ({"temperature": 0.3}, False),
    ],
)
def test_a_variance_comparison_refuses_an_annealed_temperature(options, refused):
    from pyro_vae.inference.variance import compare_estimators, refusal

    sbn, x = small_sbn(), torch.ones(2, 3, dtype=torch.float64)
    why = refusal(sbn, "gumbel", x, options=options)
    assert (why is not None) == refused
    if refused:
        assert why.startswith("its temperature anneals (anneal_rate=0.001)") and "temperature=T (anneal_rate=0)" in why
        with pytest.raises(ValueError, match="the estimator 'gumbel' cannot be measured .*temperature anneals"):
            compare_estimators(sbn, x, ["gumbel"], num_draws=2, reference="score", options={"gumbel": options})
