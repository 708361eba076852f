"""The learned priors' mixture density: matrix products give MixtureSameFamily's log_prob."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae.models.priors import DiagonalNormalMixture, VampPriorVAE, _mixture


def _reference(loc: torch.Tensor, scale: torch.Tensor) -> dist.MixtureSameFamily:
    weights = dist.Categorical(logits=torch.zeros(loc.shape[:-1], dtype=loc.dtype))
    return dist.MixtureSameFamily(weights, dist.Normal(loc, scale).to_event(1))


@pytest.mark.parametrize("value_shape", [(6,), (7, 6), (3, 7, 6)])
@pytest.mark.parametrize("batch_shape", [(), (7,)])  # (7,): broadcast by a plate, as in a model
def test_log_prob_equals_mixture_same_family(value_shape, batch_shape):
    g = torch.Generator().manual_seed(0)
    loc = 3 + torch.randn(5, 6, generator=g, dtype=torch.float64)
    scale = 0.05 + torch.rand(5, 6, generator=g, dtype=torch.float64)
    mixture, reference = _mixture(loc, scale).expand(batch_shape), _reference(loc, scale).expand(batch_shape)
    assert type(mixture) is DiagonalNormalMixture
    value = 3 + torch.randn(value_shape, generator=g, dtype=torch.float64)
    expected = reference.log_prob(value)
    assert mixture.log_prob(value).shape == expected.shape
    assert torch.allclose(mixture.log_prob(value), expected, rtol=0, atol=1e-9)


def test_components_with_their_own_batch_fall_back_to_the_broadcast():
    loc, scale = torch.randn(4, 5, 3, dtype=torch.float64), torch.rand(4, 5, 3, dtype=torch.float64) + 0.1
    mixture = DiagonalNormalMixture(dist.Categorical(logits=torch.zeros(4, 5, dtype=torch.float64)),
                                    dist.Normal(loc, scale).to_event(1))
    value = torch.randn(2, 4, 3, dtype=torch.float64)
    assert torch.equal(mixture.log_prob(value), _reference(loc, scale).log_prob(value))


def test_vampprior_density_in_float32_within_a_thousandth_of_a_nat():
    torch.manual_seed(0)
    vae = VampPriorVAE(784, z_dim=50, hidden=(200, 200), num_components=500)
    with pyro.get_param_store().scope():
        prior = vae.prior()
        z = prior.sample((2000,))
        loc, scale = vae.encode(vae.pseudo_inputs)
        expected = _reference(loc.double(), scale.double()).log_prob(z.double())
    assert type(prior) is DiagonalNormalMixture and z.shape == (2000, 50)
    assert (prior.log_prob(z).double() - expected).abs().max() < 1e-3
