"""M2's semi-supervised training: the alpha-weighted classification term (Kingma et al. 2014, eq. 9),
minibatches that always hold labelled data, the analogies figure and the test error."""

import json
import math

import pyro
import pytest
import torch

from pyro_vae import TrainConfig, load_run
from pyro_vae.cli import main
from pyro_vae.data import UNLABELLED, load_dataset
from pyro_vae.inference import make_estimator
from pyro_vae.inference.classification import classification_error
from pyro_vae.inference.svi import AEVB
from pyro_vae.models import DataSpec, build_model
from pyro_vae.models.linear_gaussian import linear_gaussian_mixture


def _m2(alpha_scale=0.1):
    torch.manual_seed(0)
    return build_model("m2", DataSpec((3,), 4), z_dim=2, hidden=(5,), likelihood="gaussian", alpha_scale=alpha_scale)


@pytest.mark.parametrize("alpha_scale", [0.1, 2.0])
def test_auxiliary_loss_is_alpha_times_the_mean_labelled_log_loss(alpha_scale):
    m2 = _m2(alpha_scale)
    x = torch.rand(6, 3)
    y = torch.tensor([0, -1, 3, -1, -1, 2])
    loss = m2.auxiliary_loss(x=x, y=y, total_size=600)
    log_q = torch.log_softmax(m2.classifier(x), -1)
    expected = -alpha_scale * 600 * (log_q[0, 0] + log_q[2, 3] + log_q[5, 2]) / 3  # alpha = alpha_scale * N
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(m2.auxiliary_loss(x=x, y=y), expected / 100)  # N = the batch without total_size
    assert m2.auxiliary_loss(x=x, y=torch.full((6,), UNLABELLED)) is None
    assert m2.auxiliary_loss(x=x) is None


def test_bad_alpha_scale():
    with pytest.raises(ValueError, match="alpha_scale must be >= 0"):
        _m2(-1.0)


def test_aevb_step_adds_the_auxiliary_loss_and_trains_the_classifier_on_labelled_data():
    config = TrainConfig(dataset="synthetic", lr=1e-2)
    m2 = linear_gaussian_mixture(3, 2, 4)
    x = torch.randn(5, 3)
    y = torch.tensor([0, 1, 2, 3, 1])  # all labelled: the bound itself never uses q(y|x)
    estimator = make_estimator("enum", m2)
    algorithm = AEVB(m2, estimator, config)
    before = [p.detach().clone() for p in m2.classifier.parameters()]
    aux = m2.auxiliary_loss(x=x, y=y, total_size=50).item()
    pyro.set_rng_seed(1)
    bound = estimator.elbo.loss(m2.model, estimator.guide, x, y=y, total_size=50)
    pyro.set_rng_seed(1)  # the same draw of z
    loss = algorithm.step({"x": x, "y": y}, 50)
    assert loss == pytest.approx(bound + aux, rel=1e-6)  # the step's loss is -bound + aux
    assert loss > aux > 0
    assert all(not torch.equal(p, q) for p, q in zip(before, m2.classifier.parameters()))
    # without the term the classifier gets no gradient from a labelled batch
    m2.alpha_scale = 0.0
    before = [p.detach().clone() for p in m2.classifier.parameters()]
    algorithm = AEVB(m2, estimator, config)
    algorithm.step({"x": x, "y": y}, 50)
    assert all(torch.equal(p, q) for p, q in zip(before, m2.classifier.parameters()))


def test_mixed_batches_hold_labelled_data_every_step():
    data = load_dataset("synthetic").with_labels(40, seed=0)
    generator = torch.Generator().manual_seed(0)
    batches = data.train_batches(100, generator, keys=("x", "y"), labelled_per_batch=10)
    assert len(batches) == (len(data.train) - 40) // 90
    for batch in batches:
        labelled = batch["y"] != UNLABELLED
        assert batch["x"].shape == (100, 64) and int(labelled.sum()) == 10
    indices = torch.cat(list(batches.indices()))  # a fresh epoch: every unlabelled point at most once
    unlabelled = indices[data.train_labels[indices] == UNLABELLED]
    assert len(unlabelled.unique()) == len(unlabelled) == len(batches) * 90
    labelled = indices[data.train_labels[indices] != UNLABELLED]
    assert set(labelled.tolist()) == set((data.train_labels != UNLABELLED).nonzero().squeeze(-1).tolist())
    with pytest.raises(ValueError, match="labelled_per_batch must lie in"):
        data.train_batches(100, generator, keys=("x", "y"), labelled_per_batch=100)
    with pytest.raises(ValueError, match="needs a model of labelled data"):
        data.train_batches(100, generator, labelled_per_batch=10)
    with pytest.raises(ValueError, match="labelled_per_batch=10 needs num_labels"):
        TrainConfig(dataset="synthetic", model="m2", labelled_per_batch=10)


def test_m2_trains_through_the_cli_with_labelled_batches(tmp_path, capsys):
    args = [
        "train",
        "--model",
        "m2",
        "--estimator",
        "enum",
        "--dataset",
        "synthetic",
        "--z-dim",
        "2",
        "--hidden",
        "16",
        "--epochs",
        "2",
        "--num-labels",
        "40",
        "--labelled-per-batch",
        "10",
        "--run-dir",
        str(tmp_path),
        "-k",
        "5",
        "--no-progress",
        "--lr",
        "1e-2",
    ]
    assert main(args) == 0, capsys.readouterr().err
    assert (tmp_path / "figures" / "analogies.png").is_file()
    assert main(["evaluate", str(tmp_path), "-k", "5", "--num-test", "200"]) == 0
    out = capsys.readouterr().out
    assert "test error" in out and "log p(x, y) (IS, K=5)" in out
    report = json.loads(next(tmp_path.glob("eval-epoch0002-k5-n200.json")).read_text())
    run = load_run(tmp_path)
    assert run.config.labelled_per_batch == 10
    batches = run.dataset.test_batches(100, keys=("x", "y"), num=200)
    assert report["test_error"] == pytest.approx(classification_error(run.program, batches))
    assert 0.0 <= report["test_error"] < 0.75  # better than chance among the 4 classes
    errors = [row["test_error"] for row in run.metrics]  # the classifier's learning curve, one per epoch
    assert len(errors) == 2 and all(0.0 <= e <= 1.0 for e in errors)
    assert errors[-1] == pytest.approx(
        classification_error(run.program, run.dataset.test_batches(1000, keys=("x", "y")))
    )
    assert math.isfinite(report["test_log_px"]) and report["log_likelihood_of"] == "log p(x, y)"
    # y summed out by M2's own q(y|x): log p(x) = log sum_y p(x, y) > log p(x, y_true), on every image
    assert main(["evaluate", str(tmp_path), "-k", "200", "--num-test", "200", "--marginal"]) == 0
    assert "log p(x) (IS, K=200)" in capsys.readouterr().out
    marginal = json.loads((tmp_path / "eval-epoch0002-k200-n200-marginal.json").read_text())
    assert marginal["log_likelihood_of"] == "log p(x)" and "test_error" in marginal
    assert main(["evaluate", str(tmp_path), "-k", "200", "--num-test", "200"]) == 0
    joint = json.loads((tmp_path / "eval-epoch0002-k200-n200.json").read_text())
    assert marginal["test_log_px"] > joint["test_log_px"]


def test_classification_error_sums_the_shards_of_several_processes():
    torch.manual_seed(0)
    m2 = build_model("m2", DataSpec((1, 8, 8), 4), z_dim=2, hidden=(5,))  # untrained: errs on some, not all
    data = load_dataset("synthetic")
    keys = ("x", "y")
    whole = classification_error(m2, data.test_batches(7, keys=keys))
    counts = [
        (classification_error(m2, data.test_batches(7, keys=keys, shard=(r, 2))), len(data.test[r::2])) for r in (0, 1)
    ]
    (e0, n0), (e1, n1) = counts
    assert whole == pytest.approx((e0 * n0 + e1 * n1) / (n0 + n1))
    other = torch.tensor([e1 * n1, n1], dtype=torch.float64)  # what the all-reduce adds on process 0
    sharded = classification_error(m2, data.test_batches(7, keys=keys, shard=(0, 2)), reduce=lambda t: t + other)
    assert sharded == pytest.approx(whole)
    assert 0.0 < whole < 1.0


def test_default_classification_weight_is_pyros_example_recipe():
    """M2 defaults to alpha = 2.3 N (Pyro's ss_vae_M2 weight at 3000 labels, docs/results.md);
    the stacked M1 + M2 and the structures table keep the paper's 0.1 N."""
    from pyro_vae.experiments.structures import ENTRIES

    assert build_model("m2", DataSpec((3,), 4), z_dim=2, hidden=(5,)).alpha_scale == 2.3
    stacked = build_model("m1-m2", DataSpec((4,), 3), z_dim=2, hidden=(5,), m1_z_dim=2, m1_hidden=(3,))
    assert stacked.m2.alpha_scale == 0.1
    assert ENTRIES["m2-100"].config({"epochs": 1, "seed": 0}).model_options == {"alpha_scale": 0.1}
