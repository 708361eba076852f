"""The categorical VAE (one-hot latents): its program, the evaluator's log p(x) against the exact
one summed over every code, and the relaxation of its one-hot codes."""

import itertools

import pyro.poutine as poutine
import pytest
import torch

from pyro_vae.inference import make_estimator
from pyro_vae.inference.evaluate import evaluate
from pyro_vae.inference.relaxed import SoftOneHotCategorical
from pyro_vae.models.categorical import CategoricalVAE


def test_the_code_is_one_hot_per_variable():
    vae = CategoricalVAE(12, hidden=(8,), num_variables=4, num_categories=3)
    guide = poutine.trace(vae.guide).get_trace(torch.bernoulli(torch.full((5, 12), 0.5)))
    z = guide.nodes["z"]["value"]
    assert z.shape == (5, 4, 3) and torch.equal(z.sum(-1), torch.ones(5, 4))
    assert vae.z_dim == 12 and vae.generate(2).shape == (2, 12)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_variables": 0}, "num_variables must be an int >= 1, got 0"),
        ({"num_categories": 1}, "num_categories must be an int >= 2, got 1"),
    ],
)
def test_bad_sizes_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        CategoricalVAE(12, **options)


def test_the_evaluator_finds_the_exact_log_px(float64):
    torch.manual_seed(0)
    vae = CategoricalVAE(4, hidden=(), num_variables=2, num_categories=3)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    codes = torch.stack([torch.eye(3)[list(c)] for c in itertools.product(range(3), repeat=2)]).unsqueeze(1)
    exact = torch.logsumexp(vae.prior().log_prob(codes) + vae.decode(codes).log_prob(x), 0).mean().item()
    # the K-sample bound approaches log p(x) from below, its gap falling about as 1/K
    gaps = [exact - evaluate(vae, [x], num_samples=k, chunk_size=5000).log_px for k in (2000, 200000)]
    assert 0 < gaps[1] < 0.003 and gaps[1] < gaps[0] / 3


def test_relaxed_codes_lie_on_the_simplex_and_straight_through_ones_are_one_hot():
    logits = torch.randn(1000, 5)
    soft = SoftOneHotCategorical(logits, 0.5).rsample()
    torch.testing.assert_close(soft.sum(-1), torch.ones(1000))
    hard = SoftOneHotCategorical(logits, 0.5, straight_through=True).rsample()
    assert set(hard.unique().tolist()) == {0.0, 1.0} and torch.equal(hard.sum(-1), torch.ones(1000))
    cold = SoftOneHotCategorical(logits[:1].expand(20000, 5), 0.05).rsample().mean(0)
    torch.testing.assert_close(cold, torch.softmax(logits[0], -1), atol=0.02, rtol=0)  # tends to the one-hot draws


@pytest.mark.parametrize("name", ["vimco", "score-loo", "gumbel", "gumbel-st"])
def test_every_discrete_estimator_gives_every_parameter_a_gradient(name):
    vae = CategoricalVAE(6, hidden=(5,), num_variables=2, num_categories=3)
    estimator = make_estimator(name, vae, 2)
    estimator.elbo.loss_and_grads(vae.model, estimator.guide, torch.bernoulli(torch.full((4, 6), 0.5)))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.parameters())
