"""Monte Carlo EM with an HMC E-step."""

import pytest
import torch

from pyro_vae.inference.mcem import e_step, log_joint
from pyro_vae.models.linear_gaussian import decoder_parameters, exact_posterior, linear_gaussian_vae
from pyro_vae.training.loop import TrainConfig, train


def test_e_step_samples_the_exact_posterior(float64):
    torch.manual_seed(0)
    vae = linear_gaussian_vae(5, 2)
    w, b, _ = decoder_parameters(vae)
    with torch.no_grad():
        w.copy_(torch.randn(5, 2))
        b.copy_(torch.randn(5))
        vae.likelihood.log_var.fill_(2 * torch.log(torch.tensor(0.7)))
    x = torch.randn(1, 5).expand(2000, 5)  # 2000 independent chains on one datum
    z = e_step(vae, x, step_size=0.1, num_steps=10, num_transitions=30)
    mean, cov = exact_posterior(vae, x[:1])
    assert torch.allclose(z.mean(0), mean[0], atol=0.05)
    assert torch.allclose(torch.cov(z.T), cov, atol=0.05, rtol=0.15)
    assert z.std(0).min() > 0.5 * torch.diagonal(cov).sqrt().min()  # the chains moved


def test_log_joint_is_the_model_density(float64):
    vae = linear_gaussian_vae(4, 2)
    x, z = torch.randn(3, 4), torch.randn(3, 2)
    expected = sum(
        torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2)).log_prob(z[i])
        + vae.decode(z[i : i + 1]).log_prob(x[i : i + 1]).sum()
        for i in range(3)
    )
    assert torch.allclose(log_joint(vae, x, z).sum(), expected)


@pytest.mark.slow
def test_mcem_training_lowers_the_loss_and_resumes(tmp_path):
    config = dict(dataset="synthetic", z_dim=2, hidden=(16,), lr=1e-2, algorithm="mcem")
    straight = train(TrainConfig(**config, epochs=2), tmp_path / "a", progress=False)
    assert straight.metrics[-1]["test_elbo"] > straight.metrics[0]["test_elbo"] + 3.0
    train(TrainConfig(**config, epochs=1), tmp_path / "b", progress=False)
    resumed = train(TrainConfig(**config, epochs=2), tmp_path / "b", resume=True, progress=False)
    for p, q in zip(straight.program.parameters(), resumed.program.parameters()):
        assert torch.equal(p, q)
