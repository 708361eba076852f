"""Programs the library has never seen, written as a user would: training, figures and evaluation
either work for them or say in one line what the program lacks (issue #38)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import pyro_method
from support import SMALL

from pyro_vae import VAE, TrainConfig, evaluate, load_dataset, train
from pyro_vae.inference.variance import compare_estimators
from pyro_vae.models import MODELS, register_model
from pyro_vae.models.nets import GaussianEncoder
from pyro_vae.plots import write_figures


class TwoViewVAE(VAE):
    """The top and bottom halves of an image as two observed sites sharing one z; the guide is a
    product of Gaussian experts, one per view and the prior's."""

    def __init__(self, x_shape, z_dim=2, hidden=(16,), **kwargs):
        super().__init__(x_shape, z_dim, hidden, **kwargs)
        self.half = self.x_dim // 2
        self.experts = torch.nn.ModuleList(GaussianEncoder(self.half, z_dim, hidden) for _ in range(2))

    @pyro_method
    def model(self, x=None, *, num_generated=None, total_size=None):
        with self.data_plate(self.batch_size(x, num_generated, {}), total_size):
            z = pyro.sample("z", self.prior())
            logits = self.decoder(z)  # [..., :half]: broadcast over particles drawn at once
            views = (None, None) if x is None else (x[..., : self.half], x[..., self.half :])
            top = pyro.sample("x_top", dist.Bernoulli(logits=logits[..., : self.half]).to_event(1), obs=views[0])
            bottom = pyro.sample("x_bottom", dist.Bernoulli(logits=logits[..., self.half :]).to_event(1), obs=views[1])
            return torch.cat([top, bottom], -1)

    @pyro_method
    def guide(self, x=None, *, num_generated=None, total_size=None):
        experts = [expert(view) for expert, view in zip(self.experts, (x[..., : self.half], x[..., self.half :]))]
        precision = 1.0 + sum(scale.pow(-2) for _, scale in experts)  # the prior N(0, I) is an expert too
        loc = sum(loc * scale.pow(-2) for loc, scale in experts) / precision
        with self.data_plate(x.shape[0], total_size):
            return pyro.sample("z", dist.Normal(loc, precision.rsqrt()).to_event(1))


class TwoViewWithMeans(TwoViewVAE):
    """The same program, telling the figures how to read its observations' means."""

    def _observation_mean(self, trace):
        return torch.cat([trace.nodes[name]["fn"].base_dist.probs for name in ("x_top", "x_bottom")], -1)


class RowChainVAE(VAE):
    """A chain of one-dimensional latents z_1..z_8 over the 8 rows of an 8x8 image (``pyro.markov``)."""

    def __init__(self, x_shape, z_dim=1, hidden=(16,), **kwargs):
        super().__init__(x_shape, z_dim, hidden, **kwargs)
        self.row_decoder = torch.nn.Linear(1, 8)
        self.row_encoder = torch.nn.Linear(8, 2)

    @pyro_method
    def model(self, x=None, *, num_generated=None, total_size=None):
        with self.data_plate(self.batch_size(x, num_generated, {}), total_size) as index:
            z = torch.zeros(len(index), 1)
            rows = []
            for t in pyro.markov(range(8)):
                z = pyro.sample(f"z_{t}", dist.Normal(0.9 * z, 1.0).to_event(1))
                obs = None if x is None else x[..., 8 * t : 8 * t + 8]
                rows.append(pyro.sample(f"x_{t}", dist.Bernoulli(logits=self.row_decoder(z)).to_event(1), obs=obs))
            return torch.cat(rows, -1)

    @pyro_method
    def guide(self, x=None, *, num_generated=None, total_size=None):
        with self.data_plate(x.shape[0], total_size):
            for t in pyro.markov(range(8)):
                loc, log_scale = self.row_encoder(x[..., 8 * t : 8 * t + 8]).chunk(2, -1)
                pyro.sample(f"z_{t}", dist.Normal(loc, log_scale.exp()).to_event(1))


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))
    monkeypatch.setattr(MODELS, "_help", dict(MODELS._help))
    for name, cls in {"two-view": TwoViewVAE, "two-view-means": TwoViewWithMeans, "row-chain": RowChainVAE}.items():
        register_model(name)(cls)


def _trained(model, tmp_path):
    config = TrainConfig(**{**SMALL, "z_dim": 1 if model == "row-chain" else 2}, model=model, epochs=2)
    return train(config, tmp_path / model, progress=False, jit=False)


@pytest.mark.parametrize(
    "model, not_drawn",
    [
        ("two-view", {"samples": "override _observation_mean", "reconstructions": "override _observation_mean"}),
        ("two-view-means", {}),
        ("row-chain", {"latents": "pass site=NAME"}),
    ],
)
def test_training_evaluation_and_figures_of_a_users_program(tmp_path, model, not_drawn):
    run = _trained(model, tmp_path)
    skipped = {}
    paths = write_figures(run, tmp_path / "figures", skipped=skipped.__setitem__)
    for name, reason in not_drawn.items():
        assert reason in skipped[name], skipped
    assert {p.stem for p in paths} >= {"curves"} and not set(not_drawn) & {p.stem for p in paths}
    test = load_dataset("synthetic").test[:100]
    result = evaluate(run.program, [test], num_samples=20)
    assert result.elbo <= result.log_px < 0  # both observed sites (or all rows) in the weights
    resumed = train(
        TrainConfig(**{**run.config.__dict__, "epochs": 3}), tmp_path / model, resume=True, progress=False, jit=False
    )
    assert len(resumed.metrics) == 3


def test_embed_and_generate_name_the_sites_a_program_has(tmp_path):
    chain = RowChainVAE((64,))
    x = load_dataset("synthetic").test[:5]
    with pytest.raises(ValueError, match=r"embed reads the sample site 'z'.*'z_0'.*pass site=NAME"):
        chain.embed(x)
    assert chain.embed(x, site="z_3").shape == (5, 1)
    with pytest.raises(ValueError, match=r"reads the sample site 'x'.*'x_top', 'x_bottom'.*_observation_mean"):
        TwoViewVAE((64,)).generate(3)
    assert TwoViewWithMeans((64,)).generate(3).shape == (3, 64)


@pytest.mark.parametrize("cls", [TwoViewVAE, RowChainVAE])
def test_the_estimator_comparison_measures_a_users_program(cls):
    torch.manual_seed(0)
    program = cls((64,))
    x = load_dataset("synthetic").test[:20]
    rows = compare_estimators(program, x, ["reparam", "score", "stl"], num_draws=20)
    guide = {row["estimator"]: row["ratio"] for row in rows if row["params"] == "guide"}
    assert guide["reparam"] == 1.0 and guide["score"] > 10  # REINFORCE is far the noisier on these programs too
