"""The sigmoid belief network VAE (binary latents): its program, and the evaluator's log p(x)
against the exact one summed over every z."""

import itertools

import pyro.poutine as poutine
import pytest
import torch

from pyro_vae.inference.evaluate import evaluate
from pyro_vae.models import MODELS, DataSpec, build_model
from pyro_vae.models.sbn import SigmoidBeliefVAE


def test_two_layers_have_their_sites_and_binary_values():
    sbn = build_model("sbn", DataSpec((4, 3)), z_dim=5, hidden=(), layers=2)
    x = torch.bernoulli(torch.full((6, 4, 3), 0.5))
    guide = poutine.trace(sbn.guide).get_trace(x)
    model = poutine.trace(poutine.replay(sbn.model, trace=guide)).get_trace(x)
    assert [n for n, s in guide.nodes.items() if s["type"] == "sample"][-2:] == ["z", "z2"]
    assert {n for n, s in model.nodes.items() if s["type"] == "sample"} >= {"z", "z2", "x"}
    for name in ("z", "z2"):
        value = guide.nodes[name]["value"]
        assert value.shape == (6, 5) and set(value.unique().tolist()) <= {0.0, 1.0}
    assert sbn.generate(3).shape == (3, 4, 3)


@pytest.mark.parametrize("layers, message", [(0, "layers must be an int >= 1, got 0"), (1.5, "got 1.5")])
def test_bad_layers_are_named(layers, message):
    with pytest.raises(ValueError, match=message):
        SigmoidBeliefVAE(4, z_dim=2, layers=layers)


def test_the_evaluator_finds_the_exact_log_px(float64):
    torch.manual_seed(0)
    sbn = SigmoidBeliefVAE(3, z_dim=2, hidden=())
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    z = torch.tensor(list(itertools.product([0.0, 1.0], repeat=2))).unsqueeze(1)
    exact = torch.logsumexp(sbn.prior().log_prob(z) + sbn.decode(z).log_prob(x), 0).mean().item()
    result = evaluate(sbn, [x], num_samples=20000)
    assert result.log_px == pytest.approx(exact, abs=2e-3)
    assert result.elbo < result.log_px  # q(z|x) is not the posterior: a real gap


def test_it_is_registered_as_a_model_of_vectors():
    assert MODELS["sbn"] is SigmoidBeliefVAE


@pytest.mark.parametrize("preset, layers", [("sbn-linear", 1), ("sbn-nonlinear", 3)])
def test_the_papers_presets_build_their_networks(preset, layers):
    from pyro_vae.training import TrainConfig, build_run
    from pyro_vae.training.config import PRESETS

    run = build_run(TrainConfig(**PRESETS[preset], dataset="synthetic", estimator="vimco", num_particles=2))
    encoder = [m for m in run.program.encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert len(encoder) == layers and encoder[-1].out_features == 200
    assert run.estimator.objective == "iwae"
