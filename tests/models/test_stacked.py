import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_vae.data import UNLABELLED
from pyro_vae.models import CVAE, M2, MODELS, DataSpec, StackedM1M2, build_model
from pyro_vae.models.vae import VAE

X_DIM, Z1, Z2, C, B = 12, 4, 3, 5, 7


def stacked(**options) -> StackedM1M2:
    return build_model("m1-m2", DataSpec((X_DIM,), C), z_dim=Z2, hidden=(6,), m1_z_dim=Z1, m1_hidden=(8,), **options)


def batch(labels: str):
    x = torch.bernoulli(torch.full((B, X_DIM), 0.5))
    y = {
        "none": None,
        "all": torch.arange(B) % C,
        "some": torch.tensor([0, UNLABELLED, 2, UNLABELLED, 4, 1, UNLABELLED]),
    }[labels]
    return x, y


@pytest.mark.parametrize(
    "labels, y_sites",
    [
        ("none", {"m2.y": (B,)}),
        ("all", {"m2.y": (B,)}),
        ("some", {"m2.y": (B,), "m2.y_observed": (B,), "m2.y_unobserved": (B,)}),  # Pyro's obs_mask sites
    ],
)
def test_site_names_and_shapes(labels, y_sites):
    program = stacked()
    x, y = batch(labels)
    guide = poutine.trace(program.guide).get_trace(x, y=y, total_size=70)
    model = poutine.trace(poutine.replay(program.model, trace=guide)).get_trace(x, y=y, total_size=70)
    shapes = {name: tuple(site["value"].shape) for name, site in model.nodes.items() if site["type"] == "sample"}
    assert shapes == {"m1.data": (B,), "m1.z": (B, Z1), "m2.z": (B, Z2), "m2.x": (B, Z1), "m1.x": (B, X_DIM), **y_sites}
    assert model.nodes["m2.x"]["is_observed"]
    assert torch.equal(model.nodes["m2.x"]["value"], guide.nodes["m1.z"]["value"])
    assert not model.nodes["m1.z"]["is_observed"] and model.nodes["m1.x"]["is_observed"]
    latent = {n for n, s in guide.nodes.items() if s["type"] == "sample" and not s["is_observed"]} - {"m1.data"}
    drawn_y = {"none": {"m2.y"}, "some": {"m2.y_unobserved"}, "all": set()}[labels]
    assert latent == {"m1.z", "m2.z"} | drawn_y
    for trace in (guide, model):
        for name, site in trace.nodes.items():
            if site["type"] == "sample" and name != "m1.data":
                assert [f.name for f in site["cond_indep_stack"]] == ["m1.data"]
                assert site["scale"] == 10.0  # total_size / batch: one shared, subsampled plate


def test_log_joint_is_m2_on_the_code_plus_m1s_decoder():
    program = stacked()
    x, y = batch("all")
    guide = poutine.trace(program.guide).get_trace(x, y=y)
    model = poutine.trace(poutine.replay(program.model, trace=guide)).get_trace(x, y=y)
    z1 = guide.nodes["m1.z"]["value"]
    m2 = poutine.trace(poutine.replay(program.m2.model, trace=guide)).get_trace(z1, y=y)
    expected = m2.log_prob_sum() + program.m1.decode(z1).log_prob(x).sum()
    assert torch.allclose(model.log_prob_sum(), expected)


def test_m1_is_frozen_and_m2_learns():
    program = stacked()
    x, y = batch("some")
    Trace_ELBO().differentiable_loss(program.model, program.guide, x, y=y).backward()
    assert all(p.grad is None and not p.requires_grad for p in program.m1.parameters())
    assert all(p.grad is not None for n, p in program.m2.named_parameters() if "classifier" not in n)
    assert program.auxiliary_loss(x=x, y=y) is not None
    assert program.classify(x).shape == (B,)


def test_enumerating_y_gives_a_finite_bound():
    from pyro.infer import TraceEnum_ELBO, config_enumerate

    program = stacked()
    x, y = batch("some")
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    loss = elbo.differentiable_loss(program.model, config_enumerate(program.guide), x, y=y)
    assert torch.isfinite(loss)


def _particle_traces(program, x, y, num_particles):
    """Guide and model traces as the library's evaluation makes them: K particles in a plate at
    dim -1 - max_plate_nesting, y enumerated in the dimensions left of it."""
    from pyro.infer import config_enumerate

    guide = poutine.enum(config_enumerate(program.guide, "parallel", expand=False), first_available_dim=-3)
    with pyro.plate("_particles", num_particles, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(x, y=y)
        model_trace = poutine.trace(poutine.replay(program.model, trace=guide_trace)).get_trace(x, y=y)
    return guide_trace, model_trace


@pytest.mark.parametrize("labels", ["none", "all", "some"])
def test_sites_and_shapes_under_a_particle_plate(labels):
    program, K = stacked(), 3
    x, y = batch(labels)
    guide, model = _particle_traces(program, x, y, K)
    shapes = {
        name: tuple(site["value"].shape)
        for name, site in model.nodes.items()
        if site["type"] == "sample" and name != "m1.data"
    }
    enumerated = {
        "none": {"m2.y": (C, 1, 1)},
        "all": {"m2.y": (B,)},
        "some": {"m2.y": (C, 1, B), "m2.y_observed": (B,), "m2.y_unobserved": (C, 1, 1)},
    }[labels]
    z2 = (K, B, Z2) if labels == "all" else (C, K, B, Z2)  # one z2 per enumerated y
    assert shapes == {"m1.z": (K, B, Z1), "m2.x": (K, B, Z1), "m2.z": z2, "m1.x": (B, X_DIM), **enumerated}
    assert torch.equal(model.nodes["m2.x"]["value"], guide.nodes["m1.z"]["value"])  # M2's data: the K codes
    model.compute_log_prob()
    assert model.nodes["m2.x"]["log_prob"].shape[-2:] == (K, B)


def test_vectorized_particles_give_the_unvectorized_log_weights():
    """log w = log p(x, y, z2, z1) - log q(z2, z1 | x, y) per datum, with K = 1 particle in the
    evaluation's plate: the same numbers as one trace without the plate, from the same draws."""
    from pyro_vae.inference.evaluate import log_importance_weights

    program = stacked()
    x, y = batch("all")
    pyro.set_rng_seed(3)
    log_w = log_importance_weights(program.model, program.guide, x, 1, data_plate_name="m1.data", y=y)
    pyro.set_rng_seed(3)
    guide = poutine.trace(program.guide).get_trace(x, y=y)
    model = poutine.trace(poutine.replay(program.model, trace=guide)).get_trace(x, y=y)
    expected = torch.zeros(B)
    for trace, sign in ((model, 1.0), (guide, -1.0)):
        trace.compute_log_prob()
        expected += sign * sum(
            s["log_prob"] for n, s in trace.nodes.items() if s["type"] == "sample" and n != "m1.data"
        )
    assert log_w.shape == (1, B) and torch.allclose(log_w[0], expected, atol=1e-5)


def test_evaluation_elbo_is_the_enumerated_training_objective():
    """With y summed out, the evaluation's ELBO (K = 1) is -TraceEnum_ELBO's loss on the same draws."""
    from pyro.infer import TraceEnum_ELBO, config_enumerate

    from pyro_vae.inference.evaluate import importance_bounds

    program = stacked()
    x, _ = batch("none")
    pyro.set_rng_seed(4)
    bounds = importance_bounds(program.model, program.guide, x, 1, data_plate_name="m1.data")
    pyro.set_rng_seed(4)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(program.model, config_enumerate(program.guide), x)
    assert bounds["elbo"].shape == (B,) and bounds["elbo"].sum().item() == pytest.approx(-loss, rel=1e-5)
    assert bool((bounds["log_px"] >= bounds["elbo"] - 1e-4).all())  # K = 1: log w >= the ELBO's sum over y


def test_only_the_nested_m2_takes_leading_dims():
    program = stacked()
    codes = torch.randn(2, B, Z1)
    assert program.m2.nested and not program.m1.nested
    assert program.m2.batch_size(codes, None, {}) == B
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., batch, 4\), got \(2, 7, 5\)"):
        program.m2.batch_size(torch.randn(2, B, Z1 + 1), None, {})
    top_level = M2(Z1, C, Z2, (6,), likelihood="gaussian")  # an M2 given user data: exactly (batch, 4)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\), got \(2, 7, 4\)"):
        top_level.model(codes)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 12\), got \(2, 7, 12\)"):
        program.guide(torch.zeros(2, B, X_DIM))  # the images are M1's: checked as user data
    bad = codes.clone()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="x contains 1 NaN"):
        program.m2.batch_size(bad, None, {})


def test_generate_and_reconstruct_go_through_m1s_decoder():
    program = stacked()
    x, _ = batch("none")
    assert torch.allclose(program.reconstruct(x), program.m1.decode(program.code(x)).mean)
    z2 = torch.randn(4, Z2)
    y = torch.arange(4)
    z1 = program.m2.generate(4, {"z": z2}, y=y)
    assert torch.allclose(program.generate(4, {"z": z2}, y=y), program.m1.decode(z1).mean)
    assert program.embed(x, y=torch.arange(B) % C).shape == (B, Z2)


def test_a_trained_m1_is_plugged_in():
    m1 = VAE(X_DIM, z_dim=Z1, hidden=(8,))  # a plain VAE: sites z, x in the plate "data", until plugged in
    state = {k: v.clone() for k, v in m1.state_dict().items()}
    program = StackedM1M2(X_DIM, C, z_dim=Z2, hidden=(6,), m1=m1)
    assert program.m1 is m1 and program.m2.x_shape == (Z1,)
    assert all(torch.equal(program.state_dict()["m1." + k], v) for k, v in state.items())
    x, _ = batch("none")
    assert torch.equal(program.code(x), m1.encode(x)[0])
    nodes = poutine.trace(program.guide).get_trace(x).nodes
    assert {n for n, s in nodes.items() if s["type"] == "sample"} == {"m1.data", "m1.z", "m2.y", "m2.z"}
    params = {n for n, s in nodes.items() if s["type"] == "param"}
    assert params and all(n.startswith("m2.") for n in params)  # the frozen M1 is no parameter of the guide


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: build_model("m1-m2", DataSpec((X_DIM,)), m1_hidden=(8,)),
            r"stacked M1 \+ M2 needs a labelled data set",
        ),
        (
            lambda: StackedM1M2(X_DIM, C, m1=VAE(X_DIM + 1, hidden=(8,))),
            r"M1 models images of shape \(13,\), the data are of shape \(12,\): give the M1 trained on this data set",
        ),
        (
            lambda: StackedM1M2(X_DIM, C, m1=CVAE(X_DIM, C, hidden=(8,))),
            r"M1 must be a VAE of unlabelled images \(data x\), got a CVAE of the data \['x', 'y'\]",
        ),
        (lambda: stacked().model(None), "scores data against its guide"),
    ],
)
def test_refusals(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_registered():
    assert MODELS["m1-m2"] is StackedM1M2
