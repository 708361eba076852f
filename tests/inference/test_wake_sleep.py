import pytest
import torch
from support import SMALL

from pyro_vae.inference.wake_sleep import (
    dream,
    generative_parameters,
    make_optimizers,
    recognition_parameters,
    sleep_loss,
    sleep_step,
    wake_loss,
    wake_step,
)
from pyro_vae.models.linear_gaussian import decoder_parameters, exact_log_marginal, exact_posterior, linear_gaussian_vae
from pyro_vae.training.loop import TrainConfig, train


def _linear_gaussian(x_dim=5, z_dim=2, seed=1):
    """A linear-Gaussian VAE with a fixed, well-conditioned decoder (W, b, sigma = 0.5)."""
    torch.manual_seed(seed)
    vae = linear_gaussian_vae(x_dim, z_dim)
    w, b, _ = decoder_parameters(vae)
    with torch.no_grad():
        w.copy_(torch.randn(x_dim, z_dim))
        b.copy_(torch.randn(x_dim))
        vae.likelihood.log_var.fill_(2 * torch.log(torch.tensor(0.5)))
    return vae


def _posterior_errors(vae, x):
    """Max |mean error| and max |variance error| of q(z|x) against the exact posterior (diagonal)."""
    with torch.no_grad():
        mean, cov = exact_posterior(vae, x)
        loc, scale = vae.encode(x)
        return (loc - mean).abs().max().item(), (scale**2 - cov.diagonal()).abs().max().item()


def _set_encoder_to_posterior(vae):
    """Make the linear encoder output the exact posterior (exact when z_dim = 1)."""
    w, b, sigma = decoder_parameters(vae)
    with torch.no_grad():
        wt_dinv = w.T / sigma**2
        cov = torch.linalg.inv(torch.eye(w.shape[1]) + wt_dinv @ w)
        gain = cov @ wt_dinv  # mean = gain (x - b)
        (linear,) = vae.encoder.net
        k = vae.z_dim
        linear.weight[:k].copy_(gain)
        linear.bias[:k].copy_(-gain @ b)
        linear.weight[k:].zero_()
        linear.bias[k:].copy_(torch.log(cov.diagonal()))


def test_parameter_groups_split_the_vae():
    vae = _linear_gaussian()
    theta, phi = generative_parameters(vae), recognition_parameters(vae)
    assert {id(p) for p in theta}.isdisjoint(id(p) for p in phi)
    assert len(theta) + len(phi) == len(list(vae.parameters()))
    assert any(p is vae.likelihood.log_var for p in theta)


def test_sleep_phase_fits_the_exact_posterior():
    vae = _linear_gaussian()
    x_test = dream(vae, 500).nodes["x"]["value"]
    mean_err0, var_err0 = _posterior_errors(vae, x_test)
    decoder_before = [p.detach().clone() for p in generative_parameters(vae)]
    _, encoder_optim = make_optimizers(vae, "adam", lr=0.05)
    for lr, steps in ((0.05, 300), (0.005, 300), (0.0005, 200)):  # decay the lr to quench SGD noise
        for group in encoder_optim.param_groups:
            group["lr"] = lr
        for _ in range(steps):
            sleep_step(vae, 500, encoder_optim)
    mean_err, var_err = _posterior_errors(vae, x_test)
    # sleep minimizes E_p(x) KL(p(z|x) || q(z|x)): q's mean and marginal variances match p(z|x)'s
    assert mean_err < 0.05 and var_err < 0.02, (mean_err, var_err)
    assert mean_err < mean_err0 / 20 and var_err < var_err0 / 20, (mean_err0, var_err0)
    # the sleep phase leaves the generative model alone
    assert all(torch.equal(p, q) for p, q in zip(decoder_before, generative_parameters(vae)))


def test_sleep_loss_is_scaled_by_total_size():
    vae = _linear_gaussian()
    torch.manual_seed(0)
    unscaled = sleep_loss(vae, 50)
    torch.manual_seed(0)
    assert torch.allclose(sleep_loss(vae, 50, total_size=500), 10 * unscaled)


def test_wake_phase_raises_log_joint_and_likelihood():
    """With q = the exact posterior (z_dim = 1), wake steps are stochastic EM for PPCA."""
    torch.manual_seed(0)
    truth = _linear_gaussian(x_dim=6, z_dim=1, seed=2)
    x = dream(truth, 2000).nodes["x"]["value"]
    vae = _linear_gaussian(x_dim=6, z_dim=1, seed=3)
    encoder_before = [p.detach().clone() for p in recognition_parameters(vae)]
    decoder_optim, _ = make_optimizers(vae, "adam", lr=0.02)
    with torch.no_grad():
        log_px0 = exact_log_marginal(vae, x).mean().item()
        log_joint0 = -sum(wake_loss(vae, x)[0].item() for _ in range(5)) / 5 / len(x)
    for _ in range(40):
        _set_encoder_to_posterior(vae)
        for _ in range(5):
            wake_step(vae, x[torch.randint(len(x), (200,))], decoder_optim)
    _set_encoder_to_posterior(vae)
    with torch.no_grad():
        log_px = exact_log_marginal(vae, x).mean().item()
        log_joint = -sum(wake_loss(vae, x)[0].item() for _ in range(5)) / 5 / len(x)
        log_px_truth = exact_log_marginal(truth, x).mean().item()
    assert log_joint > log_joint0 + 1.0, (log_joint0, log_joint)
    assert log_px > log_px0 + 1.0, (log_px0, log_px)
    assert log_px > log_px_truth - 0.5, (log_px, log_px_truth)  # close to the true model's likelihood
    # wake_step itself never touches the encoder: only _set_encoder_to_posterior did
    vae_fresh = _linear_gaussian(x_dim=6, z_dim=1, seed=3)
    decoder_optim, _ = make_optimizers(vae_fresh, "adam", lr=0.02)
    wake_step(vae_fresh, x[:100], decoder_optim)
    assert all(torch.equal(p, q) for p, q in zip(encoder_before, recognition_parameters(vae_fresh)))


def test_wake_loss_matches_the_log_joint():
    vae = _linear_gaussian()
    x = dream(vae, 7).nodes["x"]["value"]
    torch.manual_seed(0)
    loss, log_q = wake_loss(vae, x, total_size=70)
    torch.manual_seed(0)
    z = vae.posterior(x).sample()
    log_joint = vae.prior().log_prob(z) + vae.decode(z).log_prob(x)
    assert torch.allclose(loss, -10 * log_joint.sum(), rtol=1e-5)
    assert torch.allclose(log_q, 10 * vae.posterior(x).log_prob(z).sum(), rtol=1e-5)
    assert not log_q.requires_grad and loss.requires_grad


def test_dreams_are_binary_for_bernoulli():
    from pyro_vae.models.vae import VAE

    x = dream(VAE(10, 2, hidden=(8,)), 50).nodes["x"]["value"]
    assert x.shape == (50, 10) and set(x.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("algorithm", ["wake-sleep", "rws"])
def test_training_lowers_the_loss(tmp_path, algorithm):
    config = TrainConfig(**SMALL, epochs=4, algorithm=algorithm, num_particles=5 if algorithm == "rws" else 1)
    run = train(config, tmp_path / "run", progress=False)
    elbos = [m["test_elbo"] for m in run.metrics]
    assert elbos[-1] > elbos[0] + 3.0, elbos
    assert run.metrics[-1]["train_elbo"] > run.metrics[0]["train_elbo"] + 3.0
    assert [m["samples_seen"] for m in run.metrics] == [2000, 4000, 6000, 8000]
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,samples_seen,lr,train_elbo,test_elbo,train_seconds,wall_seconds"


def test_num_train_restricts_the_training_set(tmp_path):
    run = train(TrainConfig(**SMALL, epochs=1, num_train=300), tmp_path, progress=False)
    assert len(run.dataset.train) == 300 and len(run.dataset.train_labels) == 300
    assert run.metrics[0]["samples_seen"] == 300


@pytest.mark.parametrize("algorithm", ["wake-sleep", "rws", "aevb"])
@pytest.mark.parametrize("optimizer", ["adagrad", "adam"])
def test_resume_continues_the_same_run(tmp_path, algorithm, optimizer):
    config = dict(SMALL, optimizer=optimizer, algorithm=algorithm, num_particles=3 if algorithm == "rws" else 1)
    straight = train(TrainConfig(**config, epochs=2), tmp_path / "a", progress=False)
    train(TrainConfig(**config, epochs=1), tmp_path / "b", progress=False)
    resumed = train(TrainConfig(**config, epochs=2), tmp_path / "b", resume=True, progress=False)
    for (name, p), q in zip(straight.program.state_dict().items(), resumed.program.state_dict().values()):
        assert torch.equal(p, q), name
    strip = lambda ms: [{k: v for k, v in m.items() if "seconds" not in k} for m in ms]  # noqa: E731
    assert strip(straight.metrics) == strip(resumed.metrics)


def test_resume_refuses_a_different_config(tmp_path):
    train(TrainConfig(**SMALL, epochs=1, algorithm="wake-sleep"), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"config differs.*'algorithm': \('wake-sleep', 'rws'\)"):
        train(TrainConfig(**SMALL, epochs=2, algorithm="rws", num_particles=2), tmp_path, resume=True, progress=False)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(TrainConfig(**SMALL, epochs=1), tmp_path, progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(optimizer="lbfgs"), "unknown optimizer 'lbfgs'"),
        (dict(algorithm="magic"), "unknown algorithm 'magic'; expected one of"),
        (dict(algorithm="rws", num_particles=1), "rws needs num_particles >= 2"),
        (dict(num_train=10), "num_train=10 is smaller than batch_size=100"),
        (dict(lr=0.0), "lr must be a finite number > 0"),
    ],
)
def test_bad_config_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_bad_optimizer_arguments_are_named():
    vae = _linear_gaussian()
    with pytest.raises(
        ValueError, match=r"unknown optimizer 'lbfgs'; expected one of \['adam', 'adamw', 'adagrad', 'sgd', 'rmsprop'\]"
    ):
        make_optimizers(vae, "lbfgs")
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
        make_optimizers(vae, "adam", weight_decay=-1.0)


def test_num_train_larger_than_the_data_is_named(tmp_path):
    with pytest.raises(ValueError, match="num_train=5000 exceeds the 2000 training points of synthetic"):
        train(TrainConfig(**SMALL, num_train=5000), tmp_path, progress=False)


def test_pyro_rws_weights_whole_minibatches_jointly():
    """Documents why Pyro's RWS is not per-datum RWS on minibatches (see ``rws_step``)."""
    import math

    import pyro

    from pyro_vae.inference.evaluate import log_importance_weights
    from pyro_vae.inference.wake_sleep import make_rws, rws_programs
    from pyro_vae.models.vae import VAE

    vae = VAE(10, 2, hidden=(8,))
    x = torch.bernoulli(torch.rand(20, 10, generator=torch.Generator().manual_seed(0)))
    k = 4
    pyro.set_rng_seed(1)
    theta_loss, _ = make_rws(vae, k).loss(*rws_programs(vae), x)
    pyro.set_rng_seed(1)
    log_w = log_importance_weights(vae.model, vae.guide, x, k)  # (K, M), the same draws
    joint = -(torch.logsumexp(log_w.sum(1), 0) - math.log(k))
    per_datum = -(torch.logsumexp(log_w, 0) - math.log(k)).sum()
    assert torch.allclose(torch.as_tensor(theta_loss), joint, rtol=1e-5)
    assert not torch.allclose(per_datum, joint, rtol=1e-3)  # it is not the sum of per-datum IWAE bounds
