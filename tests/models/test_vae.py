import math
import warnings

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Predictive, Trace_ELBO

from pyro_vae.models.likelihoods import Gaussian
from pyro_vae.models.vae import VAE


@pytest.mark.parametrize("prefix", ["", "vae1"])
@pytest.mark.parametrize("x_shape", [(6,), (1, 3, 2)])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_site_names_and_shapes(prefix, x_shape, likelihood):
    vae = VAE(x_shape, z_dim=3, hidden=(5,), likelihood=likelihood, prefix=prefix)
    x = torch.rand(4, *x_shape).round()
    guide_tr = poutine.trace(vae.guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(x)

    def name(site):
        return f"{prefix}.{site}" if prefix else site

    # the plate's subsample site is named like the plate
    assert set(guide_tr.stochastic_nodes) == {name("data"), name("z")}
    assert set(model_tr.stochastic_nodes) == {name("data"), name("z")}
    assert model_tr.observation_nodes == [name("x")]
    z_site, x_site = model_tr.nodes[name("z")], model_tr.nodes[name("x")]
    assert z_site["value"].shape == (4, 3)
    assert z_site["fn"].event_shape == (3,)
    assert x_site["fn"].event_shape == x_shape and x_site["fn"].batch_shape == (4,)
    assert [f.name for f in x_site["cond_indep_stack"]] == [name("data")]
    params = [n for n in model_tr.nodes if model_tr.nodes[n]["type"] == "param"]
    assert params and all(p.startswith(name("decoder")) or p.startswith(name("likelihood")) for p in params)


@pytest.mark.parametrize("num_generated", [None, 1, 7])
def test_model_generates(num_generated):
    vae = VAE((2, 3), z_dim=2, hidden=(4,))
    x = vae.model(None, num_generated=num_generated)
    assert x.shape == (num_generated or 1, 2, 3)
    assert set(x.unique().tolist()) <= {0.0, 1.0}


def test_predictive_and_condition():
    vae = VAE(5, z_dim=2, hidden=(4,))
    samples = Predictive(vae.model, num_samples=3)(None, num_generated=6)
    assert samples["z"].shape == (3, 6, 2) and samples["x"].shape == (3, 6, 5)
    x = torch.rand(6, 5).round()
    posterior = Predictive(vae.model, guide=vae.guide, num_samples=2, return_sites=["z"])(x)
    assert posterior["z"].shape == (2, 6, 2)
    z = torch.zeros(6, 2)
    tr = poutine.trace(poutine.condition(vae.model, data={"z": z})).get_trace(None, num_generated=6)
    assert torch.equal(tr.nodes["z"]["value"], z)
    assert torch.allclose(tr.nodes["x"]["fn"].base_dist.logits, vae.decoder(z))


def test_total_size_scales_log_density():
    vae = VAE(5, z_dim=2, hidden=(4,))
    x = torch.rand(10, 5).round()
    guide_tr = poutine.trace(vae.guide).get_trace(x)
    lp = [
        poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(x, total_size=n).log_prob_sum()
        for n in (None, 1000)
    ]
    assert torch.allclose(lp[1], 100.0 * lp[0])


def test_two_vaes_in_one_program():
    a = VAE(4, z_dim=2, hidden=(3,), prefix="a")
    b = VAE(6, z_dim=1, hidden=(3,), prefix="b")

    def model(xa, xb):
        a.model(xa)
        b.model(xb)

    def guide(xa, xb):
        a.guide(xa)
        b.guide(xb)

    xa, xb = torch.rand(3, 4).round(), torch.rand(5, 6).round()
    loss = Trace_ELBO().loss(model, guide, xa, xb)
    assert torch.isfinite(torch.tensor(loss))
    names = set(pyro.get_param_store().keys())
    assert any(n.startswith("a.encoder") for n in names) and any(n.startswith("b.decoder") for n in names)
    assert len(names) == len(list(a.parameters())) + len(list(b.parameters()))


def test_homoscedastic_gaussian_registers_its_parameter():
    vae = VAE(4, z_dim=2, hidden=(), likelihood=Gaussian((4,), heteroscedastic=False))
    Trace_ELBO().loss(vae.model, vae.guide, torch.randn(3, 4))
    assert "likelihood$$$log_var" in pyro.get_param_store().keys()


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.rand(3, 7), ValueError, r"shape \(batch, 6\), got \(3, 7\)"),
        (torch.rand(6), ValueError, r"shape \(batch, 6\), got \(6,\)"),
        (torch.ones(3, 6, dtype=torch.long), TypeError, "floating-point.*torch.int64"),
        (torch.tensor([[float("nan")] * 6]), ValueError, "6 NaN or infinite"),
        (torch.full((2, 6), 2.0), ValueError, r"Bernoulli likelihood expects data in \[0, 1\], got values in \[2, 2\]"),
        ([[0.0] * 6], TypeError, "must be a torch.Tensor, got list"),
    ],
)
@pytest.mark.parametrize("method", ["model", "guide"])
def test_bad_data_is_named(x, error, match, method):
    vae = VAE(6, z_dim=2, hidden=(3,))
    with pytest.raises(error, match=match):
        getattr(vae, method)(x)


def test_bad_construction_is_named():
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'; expected one of"):
        VAE(6, likelihood="poisson")
    with pytest.raises(ValueError, match="unknown activation 'sigmoidal'"):
        VAE(6, activation="sigmoidal")
    with pytest.raises(ValueError, match="guide q\\(z\\|x\\) needs data"):
        VAE(6).guide(None)
    with pytest.raises(ValueError, match="total_size=5 is smaller than the batch"):
        VAE(6).model(torch.zeros(10, 6), total_size=5)


def test_gaussian_likelihood_accepts_any_real_data():
    vae = VAE(3, z_dim=2, hidden=(4,), likelihood="gaussian")
    assert torch.isfinite(torch.tensor(Trace_ELBO().loss(vae.model, vae.guide, 5 * torch.randn(4, 3))))


# --- bad values get one clear error up front (issue #13, item 7) ----------------------------
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(x_shape=0), ValueError, r"x_shape must be positive integers, got \(0,\)"),
        (dict(x_shape=(28, -1)), ValueError, r"x_shape must be positive integers, got \(28, -1\)"),
        (dict(z_dim=0), ValueError, "z_dim must be an integer >= 1, got 0"),
        (dict(z_dim=-3), ValueError, "z_dim must be an integer >= 1, got -3"),
        (dict(hidden=(-5,)), ValueError, r"hidden layer sizes must be integers >= 1, got \(-5,\)"),
        (dict(hidden=(4, 0)), ValueError, r"hidden layer sizes must be integers >= 1, got \(4, 0\)"),
        (dict(init_std=-1.0), ValueError, "init_std must be a finite number > 0"),
        (dict(init_std=float("nan")), ValueError, "init_std must be a finite number > 0"),
        (dict(likelihood=None), TypeError, "likelihood must be a name .* or a Likelihood, got None"),
    ],
)
def test_bad_constructor_values(kwargs, error, match):
    kwargs = {"x_shape": 6, "z_dim": 2, "hidden": (4,), **kwargs}
    with pytest.raises(error, match=match):
        VAE(kwargs.pop("x_shape"), **kwargs)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda vae: vae.model(torch.rand(4, 6, dtype=torch.float64)),
            TypeError,
            "x has dtype torch.float64 but the VAE's parameters are torch.float32",
        ),
        (lambda vae: vae.guide(torch.rand(4, 6).half()), TypeError, "x has dtype torch.float16"),
        (lambda vae: vae.model(torch.zeros(0, 6)), ValueError, r"x is an empty batch \(0 data points\)"),
        (lambda vae: vae.guide(torch.zeros(0, 6)), ValueError, "x is an empty batch"),
        (lambda vae: vae.model(None, num_generated=0), ValueError, "num_generated must be an integer >= 1, got 0"),
        (lambda vae: vae.model(None, num_generated=-2), ValueError, "num_generated must be an integer >= 1, got -2"),
    ],
)
def test_bad_data_is_refused_before_torch(call, error, match):
    vae = VAE(6, z_dim=2, hidden=(4,))
    with pytest.raises(error, match=match):
        call(vae)


def test_vaes_share_an_enclosing_data_plate():
    a = VAE(4, z_dim=2, hidden=(3,), prefix="a", data_plate_name="data")
    b = VAE(4, z_dim=2, hidden=(3,), prefix="b", data_plate_name="data")
    x = torch.rand(5, 4)

    def model(x):
        with pyro.plate("data", 5):
            a.model(x)
            b.model(x)

    trace = pyro.poutine.trace(model).get_trace(x)
    frames = {
        name: [f.name for f in site["cond_indep_stack"]]
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not name.endswith("data")
    }
    assert frames == {"a.z": ["data"], "a.x": ["data"], "b.z": ["data"], "b.x": ["data"]}
    with pytest.raises(ValueError, match="enclosing plate 'data' has size 5, the batch 3"):
        with pyro.plate("data", 5):
            a.model(x[:3])


def test_encoder_exposes_its_features():
    vae = VAE(6, z_dim=2, hidden=(5, 4))
    x = torch.rand(3, 6)
    h = vae.encoder.features(x)
    assert h.shape == (3, 4) and vae.encoder.num_features == 4
    loc, scale = vae.encoder.head(h)
    torch.testing.assert_close(torch.cat([loc, scale], -1), torch.cat(vae.encoder(x), -1))
    assert isinstance(vae.encoder.net[:2], torch.nn.Sequential) and len(vae.encoder.net[:2]) == 2


@pytest.mark.parametrize(
    "x_shape, code_shape",
    [
        ((7, 6), (3, 1, 4)),  # the code repeats x (M2's enumerated classes): the split first layer
        ((3, 7, 6), (3, 1, 4)),  # x already as wide as the broadcast: the concatenation
        ((7, 6), (7, 4)),
    ],
)
@pytest.mark.parametrize("hidden", [(5, 4), ()])
def test_an_mlp_on_x_and_a_code_is_the_mlp_of_their_concatenation(x_shape, code_shape, hidden):
    from pyro_vae.models.nets import MLP, GaussianEncoder, with_code

    torch.manual_seed(0)
    x, code = torch.randn(x_shape), torch.randn(code_shape)
    joined = with_code(x, code)
    assert joined.shape == (*torch.broadcast_shapes(x_shape[:-1], code_shape[:-1]), 10)
    mlp = MLP(10, hidden, 3)
    torch.testing.assert_close(mlp.run(x, code), mlp(joined))
    encoder = GaussianEncoder(10, 2, hidden)
    torch.testing.assert_close(encoder.features(x, code), encoder.features(joined))
    for a, b in zip(encoder(x, code), encoder(joined)):
        torch.testing.assert_close(a, b)
    (mlp.run(x, code) ** 2).sum().backward()  # the split layer's gradient is the joined one's
    grads = [p.grad.clone() for p in mlp.parameters()]
    mlp.zero_grad()
    (mlp(joined) ** 2).sum().backward()
    for g, p in zip(grads, mlp.parameters()):
        torch.testing.assert_close(g, p.grad)


def test_an_mlp_refuses_a_code_of_the_wrong_width():
    from pyro_vae.models.nets import MLP

    with pytest.raises(ValueError, match=r"\[x, code\] has 6 \+ 3 features, the first layer takes 10"):
        MLP(10, (5,), 3).run(torch.randn(7, 6), torch.randn(2, 1, 3))


def test_a_float32_code_joins_float64_weights(float64):
    from pyro_vae.models.nets import MLP, with_code

    mlp, x, code = MLP(10, (5,), 3), torch.randn(7, 6), torch.eye(4, dtype=torch.float32)[:, None]
    torch.testing.assert_close(mlp.run(x, code), mlp(with_code(x, code.double())))


def test_evaluation_refuses_bad_data_in_a_later_batch():
    # Pyro's validation runs on the first batch only; the data check runs on every batch
    from pyro_vae.inference.evaluate import evaluate

    vae = VAE(4, z_dim=2, hidden=(8,))
    good = torch.bernoulli(torch.full((3, 4), 0.5))
    bad = good.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        evaluate(vae, [good, bad], num_samples=2)
    with pytest.raises(ValueError, match=r"expects data in \[0, 1\]"):
        evaluate(vae, [good, good * 3], num_samples=2)


def test_with_code_broadcasts_an_enumerated_code_against_the_batch():
    from pyro_vae import with_code

    h = torch.randn(3, 5)
    code = torch.eye(4).reshape(4, 1, 4)  # 4 enumerated classes, broadcast over the batch of 3
    joined = with_code(h, code)
    assert joined.shape == (4, 3, 9)
    assert torch.equal(joined[2, 1], torch.cat([h[1], torch.eye(4)[2]]))


@pytest.mark.parametrize("total_size", [None, 30])
def test_two_vaes_sharing_a_plate_run_one_after_the_other(total_size):
    from pyro.infer import SVI

    a = VAE(6, z_dim=2, hidden=(5,), prefix="a", data_plate_name="pairs")
    b = VAE(4, z_dim=2, hidden=(5,), prefix="b", data_plate_name="pairs")

    def model(xa, xb):
        a.model(xa, total_size=total_size)
        b.model(xb, total_size=total_size)

    def guide(xa, xb):
        a.guide(xa, total_size=total_size)
        b.guide(xb, total_size=total_size)

    xa, xb = torch.bernoulli(torch.full((3, 6), 0.5)), torch.bernoulli(torch.full((3, 4), 0.5))
    trace = poutine.trace(model).get_trace(xa, xb)
    sites = {name: site for name, site in trace.nodes.items() if site["type"] == "sample"}
    assert list(sites) == ["pairs", "a.z", "a.x", "b.z", "b.x"]  # one subsample site: the second plate's is hidden
    latent = [site for name, site in sites.items() if name != "pairs"]
    assert all(site["scale"] == (total_size or 3) / 3 for site in latent)  # N/M inside the shared plate
    assert all([f.name for f in site["cond_indep_stack"]] == ["pairs"] for site in latent)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    assert math.isfinite(svi.step(xa, xb))


def test_glorot_draws_every_affine_layer_within_its_bound():
    from pyro_vae.models.nets import initialize

    vae = VAE(784, z_dim=50, hidden=(200, 200))
    initialize(vae, "glorot")
    layers = [m for m in vae.modules() if isinstance(m, torch.nn.Linear)]
    assert len(layers) == 6
    for layer in layers:
        bound = math.sqrt(6 / (layer.in_features + layer.out_features))
        w = layer.weight.detach()
        assert w.abs().max() <= bound and w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
        assert not layer.bias.any()


def test_the_torch_initialization_leaves_the_program_and_the_random_stream_alone():
    from pyro_vae.models.nets import initialize

    vae = VAE(10, z_dim=2, hidden=(5,))
    before, rng = {k: v.clone() for k, v in vae.state_dict().items()}, torch.get_rng_state()
    initialize(vae, "torch")
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())  # a run started before `init` existed draws the same numbers


def test_a_model_written_with_num_samples_still_generates_with_a_warning():
    # a user's subclass from before 0.1.0: num_samples= where the library now says num_generated=
    class OldStyle(VAE):
        @pyro.nn.pyro_method
        def model(self, x=None, num_samples=None, total_size=None, **context):
            return super().model(x, num_generated=num_samples, total_size=total_size, **context)

    vae = OldStyle(6, z_dim=2, hidden=(4,))
    with pytest.warns(DeprecationWarning, match=r"takes num_samples=; since pyro_vae 0.1.0 .* num_generated="):
        assert vae.generate(5).shape == (5, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert VAE(6, z_dim=2, hidden=(4,)).generate(3).shape == (3, 6)  # the current keyword: no warning
