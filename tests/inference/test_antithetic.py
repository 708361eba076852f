"""ARM and DisARM: a pair's weight averages to the derivative, DisARM's variance is below ARM's, and a
layer-wise pair whose antithetic chain keeps the main chain's draws below is caught as biased (what they
share with REBAR and RELAX: test_bernoulli_estimators.py)."""

import pytest
import torch
from support import SBN_DATA as X
from support import estimator_gradient_draws, exact_sbn_gradient, small_sbn

from pyro_vae.inference import antithetic, make_estimator
from pyro_vae.inference.antithetic import arm_weight, disarm_weight
from pyro_vae.inference.variance import draw_gradients, variance_ratio


@pytest.mark.parametrize("weight", [arm_weight, disarm_weight])
def test_a_pairs_weight_averages_to_the_derivative_of_the_expectation(weight):
    # one unit, f(1) = 2.0, f(0) = -0.5: d/dphi E[f(b)] = (f(1) - f(0)) sigmoid'(phi); u integrated on a grid
    phi = torch.tensor([-1.5, 0.3, 2.0], dtype=torch.float64)
    u = ((torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000).unsqueeze(-1)
    b, anti = (u < torch.sigmoid(phi)).double(), (1 - u < torch.sigmoid(phi)).double()
    f = lambda v: torch.where(v > 0, 2.0, -0.5)  # noqa: E731
    mean = weight(f(b), f(anti), u, phi, b, anti).mean(0)
    torch.testing.assert_close(mean, 2.5 * torch.sigmoid(phi) * torch.sigmoid(-phi), atol=1e-4, rtol=0)


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


@pytest.mark.parametrize("name", ["arm", "disarm"])
def test_an_antithetic_chain_not_redrawn_below_is_caught_as_biased(monkeypatch, name):
    # the chain branching at layer 1 keeps the main chain's layer 2, drawn given b, not b~
    values = antithetic.AntitheticPairs.values

    def kept_below(self, layer, logits, msg):
        drawn = values(self, layer, logits, msg)
        drawn[1 : layer + 1] = self.b[layer]
        return drawn

    monkeypatch.setattr(antithetic.AntitheticPairs, "values", kept_below)
    sbn = small_sbn(2)
    torch.manual_seed(1)
    mean, se = estimator_gradient_draws(sbn, make_estimator(name, sbn, 1), copies=500, rounds=40)
    assert ((mean - exact_sbn_gradient(sbn, "elbo")).abs() > 4 * se + 1e-9).any()
