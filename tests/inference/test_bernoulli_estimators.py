"""What the estimators of Bernoulli latents (ARM, DisARM, REBAR, RELAX and the multi-sample DisARM) share:
unbiased against the exact gradient of their bound (every binary latent of a small sigmoid belief network
of one or two layers summed out), a loss that estimates minus the bound, the programs and K they refuse,
and an SBN of two layers that trains with each."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam, pyro_method
from support import SBN_DATA as X
from support import estimator_gradient_draws, exact_sbn_bound, exact_sbn_gradient, small_sbn
from test_multi_sample import CategoricalMixture

from pyro_vae.inference import ESTIMATORS, make_estimator
from pyro_vae.models.program import member
from pyro_vae.models.vae import VAE

NAMES = ["arm", "disarm", "rebar", "relax", "disarm-k"]


CASES = [
    ("arm", 1, {}),
    ("arm", 3, {}),
    ("disarm", 1, {}),
    ("disarm", 3, {}),
    ("rebar", 1, {}),
    ("rebar", 3, {}),
    ("rebar", 1, {"eta": 0.3, "temperature": 2.0}),
    ("rebar", 1, {"tune": True, "eta": 0.3, "temperature": 2.0}),
    ("relax", 1, {}),
    ("disarm-k", 2, {}),
    ("disarm-k", 3, {}),
]


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize(
    "name, num_particles, options", CASES, ids=[f"{n}-K{k}" + "".join(f"-{key}" for key in o) for n, k, o in CASES]
)
def test_the_mean_gradient_is_the_exact_one(name, num_particles, options, layers):
    sbn = small_sbn(layers)
    torch.manual_seed(1)
    estimator = make_estimator(name, sbn, num_particles, options)
    exact = exact_sbn_gradient(sbn, estimator.objective, num_particles)
    mean, se = estimator_gradient_draws(sbn, estimator, copies=500, rounds=40)
    assert ((mean - exact).abs() <= 4 * se + 1e-9).all(), (mean, exact, se)
    assert se.max() < 0.1 * exact.abs().max()  # the check has power: errors well below the gradient's size


@pytest.mark.parametrize("name", NAMES)
def test_the_loss_estimates_minus_the_bound(name):
    sbn, copies = small_sbn(2), 200
    estimator = make_estimator(name, sbn, 2)
    exact = exact_sbn_bound(sbn, 2 if estimator.objective == "iwae" else 1).item()
    torch.manual_seed(3)
    losses = torch.tensor([estimator.elbo.loss(sbn.model, estimator.guide, X.repeat(copies, 1)) for _ in range(40)])
    mean, se = losses.mean() / copies, losses.std() / copies / math.sqrt(len(losses))
    assert abs(mean + exact) <= 4 * se, (mean, exact, se)
    assert se < 0.01 * abs(exact)


class GlobalSwitch(PyroModule):
    """A Bernoulli switch s shared by all data (outside the data plate) shifts every x_i ~ N(s, 1)."""

    max_plate_nesting = 1
    z_dim = 1

    def __init__(self) -> None:
        super().__init__()
        self.logit = PyroParam(torch.zeros(()))

    @pyro_method
    def model(self, x):
        s = pyro.sample("s", dist.Bernoulli(0.5))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(s, 1.0), obs=x)

    @pyro_method
    def guide(self, x):
        pyro.sample("s", dist.Bernoulli(logits=self.logit))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "program, x, message",
    [
        (VAE(3, z_dim=2, hidden=()), torch.ones(2, 3), "site 'z' is a Normal latent: {} takes Bernoulli latents only"),
        (CategoricalMixture(), torch.tensor([0.0, 1.0]), "site 'c' is a Categorical latent: {} takes Bernoulli"),
        (GlobalSwitch(), torch.tensor([0.0, 1.0]), "site 's' lies outside the data plate 'data'.*the {} estimator"),
    ],
    ids=["gaussian", "categorical", "global"],
)
def test_other_latents_are_refused_by_name(name, program, x, message):
    if name == "relax" and member(program, "z_dim") is None:  # no code size for its net: refused when built
        with pytest.raises(ValueError, match="relax needs a program with one code of known size"):
            make_estimator(name, program, 1)
        return
    estimator = make_estimator(name, program, 1)
    with pytest.raises(ValueError, match=message.format(name)):
        estimator.elbo.loss_and_grads(program.model, estimator.guide, x)


@pytest.mark.parametrize("name", NAMES)
def test_zero_draws_are_refused(name):
    with pytest.raises(ValueError, match=rf"{name} needs K >= 1 .* \(--num-particles\), got 0"):
        ESTIMATORS[name](small_sbn(1), 0)


@pytest.mark.parametrize("name", NAMES)
def test_an_sbn_of_two_layers_trains_with_it(tmp_path, name):
    from pyro_vae.training import TrainConfig, build_run, train

    config = TrainConfig(
        dataset="synthetic",
        model="sbn",
        model_options={"layers": 2},
        z_dim=4,
        hidden=(),
        epochs=1,
        estimator=name,
        num_train=200,
        batch_size=50,
    )

    def guide_state(program):
        return {**program.encoder.state_dict(), **program.upper_encoders.state_dict()}

    start = guide_state(build_run(config).program)
    run = train(config, tmp_path / "run", progress=False)
    assert len(run.metrics) == 1 and math.isfinite(run.metrics[0]["train_elbo"])
    trained = guide_state(run.program)
    assert all(torch.isfinite(trained[k]).all() and not torch.equal(trained[k], start[k]) for k in start)


@pytest.mark.parametrize("name", NAMES)
def test_a_uniform_draw_of_exactly_zero_leaves_every_gradient_finite(name, monkeypatch):
    """torch.rand_like can return 0 (once in 2^24 float32 draws); its logit is -inf, which made
    RELAX's network and then every parameter NaN. Here every uniform draw is 0."""
    sbn = small_sbn(2)
    estimator = make_estimator(name, sbn, 2)
    monkeypatch.setattr(torch, "rand_like", lambda like, **kwargs: torch.zeros_like(like, **kwargs))
    params = [*sbn.parameters(), *estimator.modules.parameters()]
    for p in params:
        p.grad = None
    loss = estimator.elbo.loss_and_grads(sbn.model, estimator.guide, X)
    assert math.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in params if p.grad is not None)
