"""`pyro-vae variance --run-dir` measures the run as it was trained: its estimator with its
options and particles as the reference, and for a program with discrete latents only the
estimators that apply to it."""

import csv

import pytest
from pyro.infer import Trace_ELBO

from pyro_vae.cli import main
from pyro_vae.inference import ESTIMATORS, Estimator, register_estimator
from pyro_vae.training import TrainConfig, train


class ScaledELBO(Trace_ELBO):
    """``factor`` times Trace_ELBO: its gradient variance is factor^2 times reparam's."""

    def __init__(self, factor: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.factor = factor

    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss = self.differentiable_loss(model, guide, *args, **kwargs) * self.factor
        loss.backward()
        return loss.item()


@pytest.fixture
def scaled():
    def build(program, num_particles: int = 1, factor: float = 1.0) -> Estimator:
        elbo = ScaledELBO(factor, num_particles=num_particles, max_plate_nesting=program.max_plate_nesting)
        return Estimator("test-scaled", elbo, program.guide)

    register_estimator("test-scaled", build, help="a user's estimator with an option")
    yield
    ESTIMATORS._entries.pop("test-scaled")


def _rows(folder):
    return {(r["estimator"], r["params"]): r for r in csv.DictReader(open(folder / "variance.csv"))}


@pytest.mark.slow
def test_a_run_is_measured_with_its_estimators_options(scaled, tmp_path):
    run = tmp_path / "run"
    train(
        TrainConfig(
            dataset="synthetic",
            z_dim=2,
            hidden=(8,),
            epochs=1,
            estimator="test-scaled",
            estimator_options={"factor": 4.0},
        ),
        run,
        progress=False,
    )
    out = tmp_path / "variance"
    assert (
        main(
            [
                "variance",
                "--run-dir",
                str(run),
                "--estimators",
                "test-scaled",
                "reparam",
                "--draws",
                "200",
                "--adapt-steps",
                "0",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    rows = _rows(out)
    assert rows["test-scaled", "guide"]["reference"] == "test-scaled" and rows["test-scaled", "guide"]["ratio"] == "1.0"
    assert rows["test-scaled", "guide"]["options"] == "{'factor': 4.0}"
    # measured at factor 4, not the builder's default 1: reparam has 1/16 of its variance
    assert 1 / 16 / 1.6 < float(rows["reparam", "guide"]["ratio"]) < 1 / 16 * 1.6
    assert "| test-scaled (factor=4.0) |" in (out / "summary.md").read_text()
    assert "ratio to test-scaled" in (out / "summary.md").read_text()


@pytest.mark.slow
def test_a_discrete_run_gets_the_estimators_that_apply_and_a_clear_refusal(tmp_path, capsys):
    run = tmp_path / "sbn"
    train(
        TrainConfig(
            dataset="synthetic", model="sbn", z_dim=4, hidden=(8,), epochs=1, estimator="vimco", num_particles=2
        ),
        run,
        progress=False,
    )
    out = tmp_path / "variance"
    assert (
        main(
            [
                "variance",
                "--run-dir",
                str(run),
                "--draws",
                "3",
                "--adapt-steps",
                "1",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    measured = {name for name, _ in _rows(out)}
    assert {"vimco", "score-loo", "score", "score-nvil"} <= measured
    assert not measured & {"reparam", "stl", "iwae", "dreg", "reparam-analytic-kl"}  # pathwise: no discrete latent
    assert {r["reference"] for r in _rows(out).values()} == {"vimco"}
    capsys.readouterr()
    assert (
        main(
            [
                "variance",
                "--run-dir",
                str(run),
                "--estimators",
                "reparam",
                "--draws",
                "3",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("pyro-vae: error: the estimator 'reparam' cannot be measured on this program with K = 2: ")
    assert "no reparameterized sampler" in err and err.count("\n") == 1
