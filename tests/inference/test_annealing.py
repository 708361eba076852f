"""KL warm-up: the latent terms weighted by beta, the schedule, exact resume, refusals."""

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from support import SMALL

from pyro_vae import TrainConfig, load_run, train
from pyro_vae.cli import main
from pyro_vae.inference import svi
from pyro_vae.inference.annealing import AnnealLatents, warmup_factor
from pyro_vae.models import VAE


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_the_bound_weights_the_latent_terms_by_beta(beta):
    torch.manual_seed(0)
    vae = VAE(6, z_dim=2, hidden=(5,))
    x = torch.bernoulli(torch.full((4, 6), 0.4))
    pyro.set_rng_seed(1)
    guide = poutine.trace(vae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x)
    log_px = model.nodes[vae.site("x")]["fn"].log_prob(x).sum()
    log_pz = model.nodes[vae.site("z")]["fn"].log_prob(guide.nodes[vae.site("z")]["value"]).sum()
    log_qz = guide.nodes[vae.site("z")]["fn"].log_prob(guide.nodes[vae.site("z")]["value"]).sum()
    pyro.set_rng_seed(1)  # the same z
    with AnnealLatents(beta):
        loss = Trace_ELBO().loss(vae.model, vae.guide, x)
    assert loss == pytest.approx(-(log_px + beta * (log_pz - log_qz)).item(), rel=1e-5)


@pytest.mark.parametrize(
    "finished, warmup, beta", [(0, 0, 1.0), (5, 0, 1.0), (0, 4, 0.25), (1, 4, 0.5), (3, 4, 1.0), (10, 4, 1.0)]
)
def test_warmup_factor(finished, warmup, beta):
    assert warmup_factor(finished, warmup) == beta


def test_warmup_changes_training_and_resumes_exactly(tmp_path, monkeypatch):
    config = TrainConfig(**SMALL, kl_warmup=3, epochs=4)
    straight = train(config, tmp_path / "a", progress=False)

    def interrupt_in_epoch_2(finished_epochs, warmup_epochs):  # Ctrl-C in the middle of the warm-up
        if finished_epochs == 1:
            raise KeyboardInterrupt
        return warmup_factor(finished_epochs, warmup_epochs)

    monkeypatch.setattr(svi, "warmup_factor", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "b", progress=False)
    monkeypatch.undo()
    assert [row["epoch"] for row in load_run(tmp_path / "b").metrics] == [1]
    resumed = train(config, tmp_path / "b", resume=True, progress=False)
    for p, q in zip(straight.program.parameters(), resumed.program.parameters()):
        assert torch.equal(p, q)
    plain = train(TrainConfig(**SMALL, epochs=1), tmp_path / "c", progress=False)
    assert not torch.equal(
        next(plain.program.parameters()),
        next(train(TrainConfig(**SMALL, kl_warmup=1, epochs=1), tmp_path / "d", progress=False).program.parameters()),
    )


def test_bad_warmups_are_refused(capsys):
    with pytest.raises(ValueError, match="kl_warmup needs an algorithm that optimizes the ELBO"):
        TrainConfig(**SMALL, algorithm="wake-sleep", kl_warmup=2)
    with pytest.raises(ValueError, match="kl_warmup must be >= 0, got -1"):
        TrainConfig(**SMALL, kl_warmup=-1)
    with pytest.raises(
        ValueError, match="^kl_warmup=11 epochs is longer than the run's epochs=10: .*give kl_warmup <= 10"
    ):
        TrainConfig(**SMALL, kl_warmup=11, epochs=10)
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\], got 1.5"):
        AnnealLatents(1.5)
    assert main(["train", "--kl-warmup", "-2"]) == 2
    assert "--kl-warmup must be at least 0, got -2" in capsys.readouterr().err
