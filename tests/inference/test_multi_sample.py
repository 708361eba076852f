"""VIMCO and REINFORCE with the leave-one-out baseline: unbiased against the exact gradient,
computed by enumerating every binary latent of a small sigmoid belief network."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam, pyro_method
from support import SBN_DATA as X
from support import estimator_gradient_draws, exact_sbn_gradient, small_sbn

from pyro_vae.inference import make_estimator
from pyro_vae.inference.multi_sample import VIMCO, LeaveOneOut, leave_one_out_mean

K = 3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vimco", "score-loo"])
def test_the_mean_gradient_is_the_exact_one(name):
    sbn = small_sbn()
    estimator = make_estimator(name, sbn, K)
    exact = exact_sbn_gradient(sbn, estimator.objective, K)
    mean, se = estimator_gradient_draws(sbn, estimator, copies=500, rounds=40)
    assert ((mean - exact).abs() <= 4 * se + 1e-9).all(), (mean, exact, se)
    assert se.max() < 0.1 * exact.abs().max()  # the check has power: errors well below the gradient's size


def test_the_loss_is_minus_the_bound():
    sbn = small_sbn()
    torch.manual_seed(1)
    for elbo_class in (VIMCO, LeaveOneOut):
        elbo = elbo_class(K, 1, "data")
        log_w, _, scale = elbo._terms(sbn.model, sbn.guide, (X,), {})
        assert log_w.shape == (K, 2) and scale == 1.0
        expected = torch.logsumexp(log_w, 0) - math.log(K) if elbo_class is VIMCO else log_w.mean(0)
        assert elbo._surrogate(log_w, torch.zeros_like(log_w), scale)[1] == pytest.approx(-expected.sum().item())


def test_vimco_signal_is_the_bound_minus_the_bound_with_the_particle_replaced():
    log_w = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    signal = VIMCO(3, 1, "data").signal(log_w)
    bound = torch.logsumexp(log_w, 0) - math.log(3)
    for k in range(3):
        others = torch.cat([log_w[:k], log_w[k + 1 :]])
        replaced = torch.cat([others, others.mean(0, keepdim=True)])
        assert signal[k] == pytest.approx((bound - (torch.logsumexp(replaced, 0) - math.log(3))).item())
    torch.testing.assert_close(leave_one_out_mean(log_w), torch.tensor([[2.0], [1.5], [0.5]], dtype=torch.float64))


@pytest.mark.parametrize("name", ["vimco", "score-loo"])
def test_one_particle_is_refused(name):
    with pytest.raises(ValueError, match=f"{name} needs K >= 2 particles \\(--num-particles\\), got 1"):
        make_estimator(name, small_sbn(), 1)


class CategoricalMixture(PyroModule):
    """A user's program, not a VAE: c_i ~ Cat(pi) per datum, x_i ~ N(mu_c, 1); q(c|x) = Cat(softmax(a x + b)).
    With ``shared=True`` a Bernoulli switch s shared by all data shifts every mean (a global latent)."""

    max_plate_nesting = 1

    def __init__(self, shared: bool = False) -> None:
        super().__init__()
        self.mu = PyroParam(torch.tensor([-2.0, 0.0, 2.0]))
        self.a, self.b = PyroParam(torch.tensor([1.0, 0.0, -1.0])), PyroParam(torch.zeros(3))
        self.shared = shared

    @pyro_method
    def model(self, x):
        shift = pyro.sample("s", dist.Bernoulli(0.5)) if self.shared else 0.0
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(logits=torch.zeros(3)))
            pyro.sample("x", dist.Normal(self.mu[c] + shift, 1.0), obs=x)

    @pyro_method
    def guide(self, x):
        if self.shared:
            pyro.sample("s", dist.Bernoulli(0.5))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Categorical(logits=self.a * x.unsqueeze(-1) + self.b))


@pytest.mark.parametrize("name", ["vimco", "score-loo"])
def test_a_users_categorical_program_gets_a_finite_gradient_for_every_parameter(name):
    program = CategoricalMixture()
    estimator = make_estimator(name, program, 4)
    loss = estimator.elbo.loss_and_grads(program.model, estimator.guide, torch.tensor([-2.0, 0.1, 1.9]))
    assert math.isfinite(loss)
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in program.parameters()
    )


@pytest.mark.parametrize("name", ["vimco", "score-loo"])
def test_a_latent_shared_by_all_data_is_refused_by_name(name):
    program = CategoricalMixture(shared=True)
    estimator = make_estimator(name, program, 2)
    with pytest.raises(ValueError, match=f"site 's' lies outside the data plate 'data'.* the {name} estimator needs"):
        estimator.elbo.loss_and_grads(program.model, estimator.guide, torch.tensor([0.0, 1.0]))
