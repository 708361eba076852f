import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_vae.data import UNLABELLED
from pyro_vae.models import MODELS, DataSpec, StackedM1M2, build_model
from pyro_vae.models.vae import VAE

X_DIM, Z1, Z2, C, B = 12, 4, 3, 5, 7


def stacked(**options) -> StackedM1M2:
    return build_model("m1-m2", DataSpec((X_DIM,), C), z_dim=Z2, hidden=(6,), m1_z_dim=Z1, m1_hidden=(8,),
                       **options)


def batch(labels: str):
    x = torch.bernoulli(torch.full((B, X_DIM), 0.5))
    y = {"none": None, "all": torch.arange(B) % C,
         "some": torch.tensor([0, UNLABELLED, 2, UNLABELLED, 4, 1, UNLABELLED])}[labels]
    return x, y


@pytest.mark.parametrize("labels, y_sites", [
    ("none", {"m2.y": (B,)}),
    ("all", {"m2.y": (B,)}),
    ("some", {"m2.y": (B,), "m2.y_observed": (B,), "m2.y_unobserved": (B,)}),  # Pyro's obs_mask sites
])
def test_site_names_and_shapes(labels, y_sites):
    program = stacked()
    x, y = batch(labels)
    guide = poutine.trace(program.guide).get_trace(x, y=y, total_size=70)
    model = poutine.trace(poutine.replay(program.model, trace=guide)).get_trace(x, y=y, total_size=70)
    shapes = {name: tuple(site["value"].shape) for name, site in model.nodes.items() if site["type"] == "sample"}
    assert shapes == {"m1.data": (B,), "m1.z": (B, Z1), "m2.z": (B, Z2), "m2.x": (B, Z1), "m1.x": (B, X_DIM),
                      **y_sites}
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


def test_vectorized_particles_are_refused_by_name():
    from pyro_vae.inference.evaluate import evaluate

    program = stacked()
    x, y = batch("all")
    message = r"runs one particle at a time: M2 takes its data z1 as \(batch, 4\), got \(1, 7, 4\)"
    with pytest.raises(ValueError, match=message):
        evaluate(program, [{"x": x, "y": y}], num_samples=1)


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


@pytest.mark.parametrize("make, message", [
    (lambda: build_model("m1-m2", DataSpec((X_DIM,)), m1_hidden=(8,)), r"stacked M1 \+ M2 needs a labelled data set"),
    (lambda: StackedM1M2(X_DIM, C, m1=VAE(X_DIM + 1, hidden=(8,))), r"M1 models data of shape \(13,\), not 12"),
    (lambda: stacked().model(None), "scores data against its guide"),
])
def test_refusals(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_registered():
    assert MODELS["m1-m2"] is StackedM1M2
