"""The figures of a run are chosen by what the program has: a user's program that is not a
`VAE` finishes its training with the figures it can have and one line for the others."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, pyro_method
from torch import nn

from pyro_vae.cli import main
from pyro_vae.models import MODELS, register_model
from pyro_vae.plots.run import RUN_FIGURES, write_figures
from pyro_vae.training import TrainConfig, train


class PairVAE(PyroModule):
    """A user's program: two codes of one image (top and bottom halves), one plate, no VAE methods."""

    max_plate_nesting = 1
    data_keys = ("x",)

    def __init__(self, x_dim: int, z_dim: int = 2) -> None:
        super().__init__()
        self.half, self.z_dim = x_dim // 2, z_dim
        self.encoders = nn.ModuleList(nn.Linear(self.half, 2 * z_dim) for _ in range(2))
        self.decoders = nn.ModuleList(nn.Linear(z_dim, self.half) for _ in range(2))

    @classmethod
    def build(cls, spec, z_dim: int = 2, **network):  # linear maps: the MLP settings (hidden, ...) go unused
        return cls(spec.x_shape[0], z_dim)

    @pyro_method
    def model(self, x, total_size=None):
        with pyro.plate("data", total_size or len(x), subsample_size=len(x)):
            for k, part in enumerate(x.split(self.half, -1)):
                z = pyro.sample(f"z{k}", dist.Normal(torch.zeros(self.z_dim), 1.0).to_event(1))
                pyro.sample(f"x{k}", dist.Bernoulli(logits=self.decoders[k](z)).to_event(1), obs=part)

    @pyro_method
    def guide(self, x, total_size=None):
        with pyro.plate("data", total_size or len(x), subsample_size=len(x)):
            for k, part in enumerate(x.split(self.half, -1)):
                loc, log_scale = self.encoders[k](part).chunk(2, -1)
                pyro.sample(f"z{k}", dist.Normal(loc, log_scale.exp()).to_event(1))


@pytest.fixture
def pair():
    register_model("test-pair", replace=True)(PairVAE)
    yield
    MODELS._entries.pop("test-pair")


def test_a_users_program_trains_to_exit_0_and_says_which_figures_it_has_not(pair, tmp_path, capsys):
    argv = [
        "train",
        "--model",
        "test-pair",
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--no-progress",
        "-k",
        "2",
        "--run-dir",
        str(tmp_path / "run"),
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'run' / 'figures' / 'curves.png'}" in out
    assert (
        "figures not drawn: samples (the program has no generate method); reconstructions (the program has no "
        "reconstruct method)" in out
    )
    assert main(["plot", str(tmp_path / "run"), "--figures", "samples"]) == 2
    assert (
        "the figure 'samples' cannot be drawn for this run: the program has no generate method"
        in capsys.readouterr().err
    )


def test_a_figure_that_fails_to_draw_is_reported_not_raised(tmp_path):
    run = train(TrainConfig(dataset="synthetic", z_dim=2, hidden=(8,), epochs=1), tmp_path / "run", progress=False)
    run.program.generate = lambda *args, **kwargs: (_ for _ in ()).throw(KeyError("x"))  # a user's site names
    skipped = []
    paths = write_figures(run, tmp_path / "figures", skipped=lambda name, why: skipped.append((name, why)))
    assert ("samples", "KeyError: 'x'") in skipped and ("manifold", "KeyError: 'x'") in skipped
    assert {p.name for p in paths} == {"reconstructions.png", "latents.png", "curves.png"}


def test_an_unknown_figure_lists_the_registered_ones(tmp_path):
    run = train(TrainConfig(dataset="synthetic", z_dim=2, hidden=(8,), epochs=1), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match=r"unknown figure 'pretty'; expected one of \['samples', 'reconstructions'"):
        write_figures(run, tmp_path / "figures", names=["pretty"])
    assert RUN_FIGURES.names()[-1] == "manifold"


@pytest.mark.parametrize("deaf", [False, True])
def test_analogies_need_a_decoder_that_uses_the_label(tmp_path, deaf):
    config = TrainConfig(
        dataset="synthetic", model="m2", estimator="enum", z_dim=2, hidden=(8,), epochs=1, num_labels=40, num_train=400
    )
    run = train(config, tmp_path / "run", progress=False)
    if deaf:  # a labelled program whose decoder ignores y: the same z gives the same image for every class
        decode = run.program.decode
        run.program.decode = lambda z, *, y, **context: decode(z, y=torch.zeros_like(y), **context)
    skipped = {}
    paths = write_figures(run, tmp_path / "figures", names=None, skipped=skipped.__setitem__)
    drawn = "analogies.png" in {p.name for p in paths}
    assert drawn != deaf
    assert deaf == ("the decoder ignores the label y" in skipped.get("analogies", ""))
