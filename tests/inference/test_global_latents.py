"""Programs with a latent outside the data plate (shared by all data): the joint estimate of
log p(x_1..x_n) against closed forms, the minibatch gradient's N/M scaling, and the site search
that works before any particle dimension is added."""

from __future__ import annotations

import math
import re

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam, pyro_method

from pyro_vae.inference import make_estimator
from pyro_vae.inference.evaluate import evaluate, importance_bounds, log_importance_weights
from pyro_vae.inference.joint import global_sites

SIGMA = 0.5  # the noise of x_i = b + z_i + noise


class Offset(PyroModule):
    """x_i = b + z_i + N(0, SIGMA^2), b ~ N(0, 1) shared by all data, z_i ~ N(0, 1).

    Guide q(b) = N(m, s^2) and q(z_i | x_i, b) = N(a (x_i - b) + c, t^2); with a = 1 / (1 + SIGMA^2),
    c = 0 and t^2 = SIGMA^2 / (1 + SIGMA^2) it is the exact p(z_i | x_i, b)."""

    max_plate_nesting = 1
    data_keys = ("x",)

    def __init__(self, m: float, s: float, a: float | None = None, c: float = 0.0, broadcasts: bool = True) -> None:
        super().__init__()
        v = SIGMA**2
        self.m, self.log_s = PyroParam(torch.tensor(m)), PyroParam(torch.tensor(math.log(s)))
        self.a = PyroParam(torch.tensor(1 / (1 + v) if a is None else a))
        self.c, self.t = PyroParam(torch.tensor(c)), (v / (1 + v)) ** 0.5
        self.broadcasts = broadcasts

    def _offset(self, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # a program written without broadcasting repeats b for every datum by hand
        return b if self.broadcasts else b.expand(x.shape[0])

    @pyro_method
    def model(self, x: torch.Tensor, total_size: int | None = None) -> None:
        b = pyro.sample("b", dist.Normal(0.0, 1.0))
        with pyro.plate("data", total_size or x.shape[0], subsample_size=x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(self._offset(b, x) + z, SIGMA), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor, total_size: int | None = None) -> None:
        b = pyro.sample("b", dist.Normal(self.m, self.log_s.exp()))
        with pyro.plate("data", total_size or x.shape[0], subsample_size=x.shape[0]):
            pyro.sample("z", dist.Normal(self.a * (x - self._offset(b, x)) + self.c, self.t))


def exact(x: torch.Tensor) -> tuple[float, float, float]:
    """log p(x_1..x_n) and the posterior p(b | x) = N(mean, sd^2)."""
    n = x.shape[0]
    cov = torch.ones(n, n) + (1 + SIGMA**2) * torch.eye(n)  # Cov(x_i, x_j) = Var b + [i = j](1 + SIGMA^2)
    log_p = dist.MultivariateNormal(torch.zeros(n), cov).log_prob(x).item()
    precision = 1 + n / (1 + SIGMA**2)
    return log_p, x.sum().item() / (1 + SIGMA**2) / precision, precision**-0.5


@pytest.fixture
def data() -> torch.Tensor:
    return torch.randn(12, generator=torch.Generator().manual_seed(0)) * 1.3 + 0.8


def test_the_global_sites_are_found_from_one_trace_without_particles():
    x = torch.randn(5)
    for broadcasts in (True, False):
        program = Offset(0.0, 1.0, broadcasts=broadcasts)
        assert global_sites(program.model, program.guide, x) == ["b"]
    with pytest.raises(ValueError, match="no sample site of the program lies in a plate named 'pairs'"):
        global_sites(program.model, program.guide, x, data_plate_name="pairs")


def test_with_the_exact_guide_every_draw_is_log_p_of_all_the_data(data):
    x = data
    log_p, mean, sd = exact(x)
    # q(b) = p(b | x) and q(z | x, b) = p(z | x, b): every weight is p(x_1..x_n), for any K,
    # and the ELBO is tight; the n data are scored in two batches under the same draws of b
    result = evaluate(Offset(mean, sd), [x[:5], x[5:]], num_samples=7, chunk_size=3)
    assert result.joint and result.count == len(x)  # the joint estimate: log p(x_i) alone is not defined
    assert result.log_px * len(x) == pytest.approx(log_p, abs=1e-3)
    assert result.elbo * len(x) == pytest.approx(log_p, abs=1e-3)


def test_the_joint_estimate_approaches_log_p_and_the_elbo_is_log_p_minus_the_kl(data):
    x = data
    n = len(x)
    log_p, mean, sd = exact(x)
    m, s = mean + 0.4, 1.8 * sd  # q(b) off the posterior: the weights vary
    program = Offset(m, s)
    # the ELBO is log p(x) - KL(q(b) || p(b | x)), since q(z | x, b) is exact
    kl = torch.distributions.kl_divergence(dist.Normal(m, s), dist.Normal(mean, sd)).item()
    torch.manual_seed(1)
    elbos = torch.tensor([evaluate(program, [x], num_samples=2000).elbo * n for _ in range(5)])
    assert elbos.mean().item() == pytest.approx(log_p - kl, abs=4 * elbos.std().item() / 5**0.5 + 1e-3)
    errors = {}
    for k in (3, 3000):
        estimates = torch.tensor([evaluate(program, [x[:7], x[7:]], num_samples=k).log_px * n for _ in range(8)])
        errors[k] = (log_p - estimates).abs().mean().item()
    assert errors[3] > 10 * errors[3000]
    assert errors[3000] < 0.05  # nats for all 12 data


def test_minibatch_gradients_scale_the_data_plate_alone(data):
    # With b = m + s e, z_i = a (x_i - b) + c + t e_i and r_i = x_i - b - z_i, the ELBO's gradient in m is
    #   -m  (log p(b), once)  +  sum_i [a E z_i + (1 - a) E r_i / SIGMA^2]  (log p(z_i) + log p(x_i | b, z_i))
    # summed over all N data; minibatches of M with total_size N estimate it without bias only if
    # N/M scales the data plate and not b.
    x = data
    n, size, a, c, m = len(x), 4, 0.6, 0.1, 2.0
    program = Offset(m, 0.3, a=a, c=c)
    z, r = a * (x - m) + c, (1 - a) * (x - m) - c
    expected = -(-m + (a * z + (1 - a) * r / SIGMA**2).sum().item())  # of the loss, -ELBO
    estimator = make_estimator("reparam", program)
    m_param = dict(program.named_parameters())["m_unconstrained"]
    torch.manual_seed(2)
    draws = []
    for _ in range(800):
        m_param.grad = None
        batch = x[torch.randperm(n)[:size]]
        estimator.elbo.loss_and_grads(program.model, estimator.guide, batch, total_size=n)
        draws.append(m_param.grad.item())
    draws = torch.tensor(draws)
    se = draws.std().item() / len(draws) ** 0.5
    assert draws.mean().item() == pytest.approx(expected, abs=4 * se)
    wrong = expected + (n / size - 1) * m  # the prior term scaled by N/M as well
    assert abs(wrong - expected) > 10 * se


def test_a_program_that_does_not_broadcast_gets_a_message_not_a_shape_error(data):
    x = data
    program = Offset(0.0, 1.0, broadcasts=False)
    with pytest.raises(
        ValueError, match=r"runs on one sample but not on 10 drawn at once in a plate at dim=-2.*broadcast"
    ):
        evaluate(program, [x], num_samples=10)


@pytest.mark.parametrize("broadcasts", [True, False])
@pytest.mark.parametrize("bound", [importance_bounds, log_importance_weights])
def test_the_per_datum_bound_names_the_global_site_before_it_samples(data, bound, broadcasts):
    # a program that does not broadcast over particles would otherwise fail on torch's shape check
    program = Offset(0.0, 1.0, broadcasts=broadcasts)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "the sites ['b'] lie outside the data plate (latents shared by all data), so log p(x) per datum is not "
            "defined; evaluate(program, batches) gives the joint log p(x_1, ..., x_n) / n instead"
        ),
    ):
        bound(program.model, program.guide, data, 500)


def test_the_joint_evaluation_is_not_sharded(data):
    with pytest.raises(ValueError, match="is evaluated on one process, not sharded"):
        evaluate(Offset(0.0, 1.0), [data], num_samples=2, reduce=lambda t: t)
