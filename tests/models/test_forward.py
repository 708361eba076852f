"""``program(x)``, the module's ``forward``: the reconstruction of x at the posterior mean, with gradients,
for every registered model (the graph models: the reconstructed adjacency)."""

import pytest
import torch

from pyro_vae.data import UNLABELLED
from pyro_vae.data.graphs import planted_partition
from pyro_vae.models import MODELS, DataSpec, build_model
from pyro_vae.models.vgae import VGAE
from pyro_vae.validation import InputError

X_SHAPE, C, B = (2, 3), 4, 5

#: Small options per vector model (every registered one but the graph models).
OPTIONS = {
    "vae": dict(z_dim=2, hidden=(4,)),
    "categorical-vae": dict(hidden=(4,), num_variables=2, num_categories=3),
    "cvae": dict(z_dim=2, hidden=(4,)),
    "iaf": dict(z_dim=2, hidden=(4,), num_flows=1, flow_hidden=(4,)),
    "m2": dict(z_dim=2, hidden=(4,)),
    "mog-prior": dict(z_dim=2, hidden=(4,), num_components=3),
    "vampprior": dict(z_dim=2, hidden=(4,), num_components=3),
    "sbn": dict(z_dim=3, layers=2),
    "m1-m2": dict(z_dim=2, hidden=(4,), m1_z_dim=3, m1_hidden=(4,)),
    "two-layer": dict(z_dim=3, z2_dim=2, hidden=(4,), hidden2=(4,)),
}


def program_and_data(name: str):
    torch.manual_seed(0)
    program = build_model(name, DataSpec(X_SHAPE, C), **OPTIONS[name])
    x = torch.bernoulli(torch.full((B, *X_SHAPE), 0.5))
    return program, x, ({"y": torch.arange(B) % C} if "y" in program.data_keys else {})


def test_every_vector_model_is_covered():
    shipped = [name for name in MODELS if MODELS[name].__module__.startswith("pyro_vae.")]  # not the tests' own
    assert set(OPTIONS) == {name for name in shipped if getattr(MODELS[name], "data_kind", "vectors") == "vectors"}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_forward_is_the_reconstruction_with_gradients(name):
    program, x, labels = program_and_data(name)
    torch.manual_seed(1)  # the same draws where a latent has no mean (a flow, binary units)
    out = program(x, **labels)
    torch.manual_seed(1)
    assert out.shape == x.shape
    assert torch.equal(out.detach(), program.reconstruct(x, **labels))
    if name == "m1-m2":  # M1, whose decoder reconstructs, is frozen in the stacked program
        assert not out.requires_grad
        return
    out.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in program.decoder.parameters())


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_the_vae_decodes_the_encoder_mean(likelihood):
    program = build_model("vae", DataSpec(X_SHAPE), z_dim=2, hidden=(4,), likelihood=likelihood)
    x = torch.rand(B, *X_SHAPE)
    expected = program.decode(program.encode(x)[0]).mean
    assert torch.allclose(program(x), expected)
    assert torch.equal(program(x), program(x))  # deterministic: no draw
    program(x).sum().backward()
    assert all(p.grad is not None for p in program.parameters())  # through z = mu(x) to the encoder


def test_the_conditional_vae_decodes_at_its_labels_and_needs_them():
    program, x, labels = program_and_data("cvae")
    loc = program.posterior(x, **labels).mean
    assert torch.allclose(program(x, **labels), program.decode(loc, **labels).mean)
    with pytest.raises(InputError, match=r"CVAE needs the labels y of its data \(y=...\)"):
        program(x)


def test_m2_uses_the_most_probable_class_where_no_label_is_given():
    program, x, _ = program_and_data("m2")
    guess = program.classify(x)
    assert torch.allclose(program(x), program(x, y=guess))
    given = torch.tensor([0, UNLABELLED, 2, UNLABELLED, 1])
    assert torch.allclose(program(x, y=given), program(x, y=torch.where(given >= 0, given, guess)))
    with pytest.raises(InputError, match="y has 2 entries for a batch of 5"):
        program(x, y=torch.tensor([0, 1]))


def test_the_stacked_program_reconstructs_through_m1():
    program, x, labels = program_and_data("m1-m2")
    assert torch.allclose(program(x, **labels), program.m1.decode(program.code(x)).mean)
    assert torch.allclose(program(x), program(x, **labels))  # x depends on y only through z1


def test_a_graph_autoencoder_reconstructs_the_adjacency():
    graph = planted_partition(num_nodes=12, p_in=0.8, p_out=0.1)
    vgae = VGAE(12, hidden=8, z_dim=3)
    adjacency = vgae(graph.x, graph.edge_index)
    mu = vgae.embed(graph.x, graph.edge_index)
    assert adjacency.shape == (12, 12) and adjacency.requires_grad
    assert torch.allclose(adjacency, torch.sigmoid(mu @ mu.T))
