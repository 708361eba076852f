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
    mixture = DiagonalNormalMixture(
        dist.Categorical(logits=torch.zeros(4, 5, dtype=torch.float64)), dist.Normal(loc, scale).to_event(1)
    )
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


# --- the VampPrior's pseudo-inputs: hardtanh(W e_k), as in Tomczak & Welling's code ----------------
@pytest.mark.parametrize("x_shape", [(6,), (1, 4, 3)])
def test_pseudo_inputs_are_the_clipped_linear_layer_on_the_identity(x_shape):
    torch.manual_seed(0)
    vae = VampPriorVAE(x_shape, z_dim=2, hidden=(5,), num_components=7)
    assert vae.pseudo_layer.weight.shape == (12 if len(x_shape) == 3 else 6, 7) and vae.pseudo_layer.bias is None
    with torch.no_grad():
        vae.pseudo_layer.weight.normal_(0.5, 1.0)  # many weights outside [0, 1]
    u = vae.pseudo_inputs
    assert u.shape == (7, *x_shape)
    assert u.min() == 0 and u.max() == 1  # clipped, not squashed
    reference = torch.nn.Hardtanh(0.0, 1.0)(vae.pseudo_layer(torch.eye(7)))
    assert torch.equal(u.reshape(7, -1), reference)


def test_pseudo_layer_starts_at_their_normal_init():
    torch.manual_seed(0)
    weight = VampPriorVAE(784, z_dim=2, hidden=(5,), num_components=500).pseudo_layer.weight
    assert abs(weight.mean().item() - 0.05) < 1e-4 and abs(weight.std().item() - 0.01) < 1e-4


def test_elbo_gradient_reaches_the_pseudo_layer_where_not_clipped():
    torch.manual_seed(0)
    vae = VampPriorVAE(6, z_dim=2, hidden=(5,), num_components=4)
    with torch.no_grad():
        vae.pseudo_layer.weight[:, 0] = -0.5  # pseudo-input 0 clipped to 0 everywhere: no gradient
    x = torch.bernoulli(torch.full((8, 6), 0.5))
    with pyro.get_param_store().scope():
        pyro.infer.Trace_ELBO().loss_and_grads(vae.model, vae.guide, x)
    grad = vae.pseudo_layer.weight.grad
    assert torch.equal(grad[:, 0], torch.zeros(6))
    assert (grad[:, 1:] != 0).all()


def test_pseudo_inputs_from_training_images():
    torch.manual_seed(0)
    x = torch.rand(10, 2, 3)
    vae = VampPriorVAE((2, 3), z_dim=2, hidden=(5,), num_components=4, pseudo_init="data")
    with pytest.raises(ValueError, match="pseudo_init='data': call initialize\\(x_train\\)"):
        vae.prior()
    with pytest.raises(ValueError, match="at least 4 training images of shape \\(2, 3\\), got .* \\(3, 2, 3\\)"):
        vae.initialize(x[:3])
    vae.initialize(x)
    assert (vae.pseudo_layer.weight.T - x[:4].reshape(4, 6)).abs().max() < 0.05
    assert vae.pseudo_layer.weight.T.sub(x[:4].reshape(4, 6)).std().item() == pytest.approx(0.01, rel=0.3)
    assert vae.prior().batch_shape == ()
    loaded = VampPriorVAE((2, 3), z_dim=2, hidden=(5,), num_components=4, pseudo_init="data")
    loaded.load_state_dict(vae.state_dict())  # a checkpoint's weights: initialized
    assert torch.equal(loaded.pseudo_inputs, vae.pseudo_inputs)
    before = loaded.pseudo_layer.weight.clone()
    loaded.initialize(x.flip(0))  # once only: a resumed run keeps its weights
    assert torch.equal(loaded.pseudo_layer.weight, before)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"pseudo_init": "pixels"}, "pseudo_init must be one of \\('normal', 'data'\\), got 'pixels'"),
        ({"num_components": 0}, "num_components must be a positive integer, got 0"),
    ],
)
def test_vampprior_refuses_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        VampPriorVAE(6, z_dim=2, hidden=(5,), **options)


def test_train_initializes_the_pseudo_inputs_from_the_training_data(tmp_path):
    from pyro_vae import TrainConfig, load_run, train

    config = TrainConfig(
        dataset="synthetic",
        model="vampprior",
        z_dim=2,
        hidden=(8,),
        epochs=1,
        model_options={"num_components": 3, "pseudo_init": "data"},
    )
    run = train(config, tmp_path, progress=False)
    assert run.metrics and run.program.pseudo_inputs.shape == (3, *run.dataset.x_shape)
    assert torch.equal(
        load_run(tmp_path).program.pseudo_inputs, run.program.pseudo_inputs
    )  # a checkpoint counts as initialized
