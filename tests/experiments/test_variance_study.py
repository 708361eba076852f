"""`pyro-vae variance --run-dir` measures the run as it was trained: its estimator with its
options and particles as the reference, and for a program with discrete latents only the
estimators that apply to it. The full study on a discrete program: each estimator with its own
number of particles, against a reference that applies, with its cost (log-likelihood evaluations
per datum, time per estimate, variance x time)."""

import csv

import pytest
from pyro.infer import Trace_ELBO

from pyro_vae.cli import main
from pyro_vae.experiments.variance_study import StudyConfig, model_evaluations, run_study
from pyro_vae.inference import ESTIMATORS, Estimator, register_estimator
from pyro_vae.training import TrainConfig, build_run, train


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
    # and 4 times its mean: against it, reparam's mean is off by 3/4 of the reference's
    for group in ("guide", "model"):
        lo, hi = float(rows["reparam", group]["rel_bias_lo"]), float(rows["reparam", group]["rel_bias_hi"])
        assert lo <= 0.75 <= hi < lo + 0.1, (group, lo, hi)
        assert float(rows["test-scaled", group]["sq_bias"]) == 0.0
    assert "| test-scaled (factor=4.0) |" in (out / "summary.md").read_text()
    assert "ratio to test-scaled" in (out / "summary.md").read_text()
    assert "| guide rel. bias to test-scaled [95% CI] |" in (out / "summary.md").read_text()


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


# The full study on a discrete program: each estimator with its own particles, measured against
# a reference that applies (disarm), with what a user pays for its variance.

SBN = TrainConfig(dataset="synthetic", model="sbn", z_dim=3, hidden=(), epochs=1, batch_size=50, num_train=100)


@pytest.mark.parametrize(
    "name, particles, evaluations",
    [("score", 1, 1), ("vimco", 2, 2), ("score-loo", 3, 3), ("arm", 1, 2), ("disarm", 2, 4), ("rebar", 1, 3)],
)
def test_model_evaluations_count_the_log_likelihoods_per_datum(name, particles, evaluations):
    run = build_run(SBN)
    x = run.dataset.test[:7]
    assert model_evaluations(run.program, name, x, particles) == evaluations
    assert all(p.grad is None for p in run.program.parameters())  # the count leaves no gradient behind


@pytest.mark.slow
def test_a_discrete_study_prices_each_estimator_against_its_reference(tmp_path):
    study = StudyConfig(
        base=SBN,
        estimators=["score", "vimco", "disarm"],
        reference="disarm",
        estimator_particles={"vimco": 2},
        num_draws=4,
        adapt_steps=1,
        num_particles=(1, 3),
        z_dims=(2,),
    )
    rows = run_study(study, tmp_path)
    training = {(r["estimator"], r["epoch"], r["params"]): r for r in rows if r["experiment"] == "training"}
    assert {(e, ep) for e, ep, _ in training} == {(e, ep) for e in ("score", "vimco", "disarm") for ep in (0, 1)}
    assert {r["num_particles"] for k, r in training.items() if k[0] == "vimco"} == {2}
    assert {r["num_particles"] for k, r in training.items() if k[0] != "vimco"} == {1}
    assert {r["reference"] for r in rows} == {"disarm"} and training["disarm", 1, "guide"]["ratio"] == 1.0
    assert {e: r["evaluations_per_datum"] for (e, _, _), r in training.items()} == {"score": 1, "vimco": 2, "disarm": 2}
    for r in rows:
        assert r["variance_x_seconds"] == pytest.approx(r["total_variance"] * r["ms_per_estimate"] / 1e3)
    # K = 1: vimco refuses one particle, so that sweep leaves it out; K = 3 measures it
    particles = {(r["estimator"], r["num_particles"]) for r in rows if r["experiment"] == "particles"}
    assert particles == {("score", 1), ("disarm", 1), ("score", 3), ("vimco", 3), ("disarm", 3)}
    assert {r["estimator"] for r in rows if r["experiment"] == "latent"} == {"score", "vimco", "disarm"}
    # only the reference keeps its epochs (the points of the comparison)
    assert [p.name for p in (tmp_path / "train-disarm" / "checkpoints").iterdir()] == ["epoch-0001.pt"]
    assert not list((tmp_path / "train-score").glob("checkpoints/*"))
    # the learning curves at equal compute: each run's steps at its estimator's measured cost
    for r in csv.DictReader(open(tmp_path / "training.csv")):
        ms = training[r["estimator"], 1, "guide"]["ms_per_estimate"]
        assert float(r["estimate_seconds"]) == pytest.approx(int(r["steps"]) * ms / 1e3)
    summary = (tmp_path / "summary.md").read_text()
    assert "| evals / datum | ms / estimate | guide tr Cov x s |" in summary
    assert "| vimco | 2 |" in summary
    assert (tmp_path / "variance_time.png").exists()


def test_a_study_whose_reference_does_not_apply_asks_for_one(tmp_path):
    with pytest.raises(ValueError, match=r"reference 'reparam'.*--reference NAME \(e\.g\. disarm"):
        run_study(StudyConfig(base=SBN, estimators=["score"], z_dims=(2,)), tmp_path)


@pytest.mark.parametrize(
    "estimators, options, message",
    [
        (["disarm", "reparam"], {}, "the estimator 'reparam' cannot be measured on this program: "),
        (["disarm", "gumbel"], {"gumbel": {"anneal_rate": 0.1}}, "'gumbel' cannot .*: its temperature anneals"),
    ],
)
def test_a_study_refuses_an_estimator_it_cannot_measure_before_any_training(estimators, options, message, tmp_path):
    study = StudyConfig(base=SBN, estimators=estimators, reference="disarm", estimator_options=options, z_dims=(2,))
    with pytest.raises(ValueError, match=message):
        run_study(study, tmp_path)
    assert not list(tmp_path.iterdir())  # no run trained


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--estimator-particles", "vimco=0", "expected NAME=K with a registered estimator NAME and K >= 1"),
        ("--estimator-particles", "magic=2", "expected NAME=K with a registered estimator NAME and K >= 1"),
        ("--estimator-option", "magic:temperature=0.5", "expected NAME:KEY=VALUE with a registered estimator"),
    ],
)
def test_bad_per_estimator_flags_are_refused_in_one_line(flag, value, message, capsys):
    assert main(["variance", flag, value]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
