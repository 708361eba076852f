import json
import re

import matplotlib.image as mpimg
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import pyro_method
from torch import nn

from pyro_vae.data import UNLABELLED, Dataset
from pyro_vae.experiments.probe import (
    CLASSIFIERS,
    Codes,
    encode,
    labelled_subset,
    latent_site,
    probe,
    spread,
    write_probe,
)
from pyro_vae.models import DataSpec, build_model
from pyro_vae.models.vae import VAE
from pyro_vae.training import Run
from pyro_vae.training.config import TrainConfig

NUM_CLASSES, X_DIM = 4, 6


class FirstCoordinates(nn.Module):
    """An encoder whose code is known: loc = the first two coordinates of x, scale = ``scale``."""

    def __init__(self, scale: float = 1e-3) -> None:
        super().__init__()
        self.scale = scale
        self.unused = nn.Parameter(torch.zeros(()))  # a module with parameters, like any encoder

    def forward(self, x):
        return x[..., :2], torch.full_like(x[..., :2], self.scale)


def clustered(num_train=400, num_test=200, shuffle=False) -> Dataset:
    """Four classes at the corners of a square in the first two coordinates (separable),
    the other coordinates noise; ``shuffle`` permutes the labels, so the code says nothing of them."""
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(num_train + num_test) % NUM_CLASSES
    corners = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    x = torch.randn(len(labels), X_DIM, generator=g)
    x[:, :2] = 3 * corners[labels] + 0.3 * x[:, :2]
    if shuffle:
        labels = labels[torch.randperm(len(labels), generator=g)]
    return Dataset(
        "clustered",
        x[:num_train],
        x[num_train:],
        labels[:num_train],
        labels[num_train:],
        image_shape=(1, 2, 3),
        likelihood="gaussian",
    )


def make_run(dataset: Dataset, program=None, model: str = "vae") -> Run:
    program = program or VAE(X_DIM, z_dim=2, hidden=(3,), likelihood="gaussian", encoder=FirstCoordinates())
    return Run(TrainConfig(dataset="synthetic", model=model), dataset, program, estimator=None)


@pytest.mark.parametrize("use", ["mean", "sample"])
def test_separable_code_classifies_and_clusters_almost_perfectly(use):
    result = probe(make_run(clustered()), num_labels=(4, 40), draws=2, use=use)
    assert len(result.rows) == 2 * 2 * len(CLASSIFIERS)
    assert {r["classifier"] for r in result.rows} == set(CLASSIFIERS.names())
    assert all(r["test_error"] <= 0.02 for r in result.rows)
    assert result.clustering["nmi"] > 0.95 and result.clustering["ari"] > 0.95
    assert (result.site, result.code_dim, result.num_train, result.num_test) == ("z", 2, 400, 200)


def test_shuffled_labels_leave_the_classifiers_at_chance():
    result = probe(make_run(clustered(shuffle=True)), num_labels=(40,), draws=3)
    for summary in result.summary():
        assert abs(summary["mean"] - (1 - 1 / NUM_CLASSES)) < 0.12, summary
    assert result.clustering["nmi"] < 0.05


def test_codes_are_the_guide_means_or_reproducible_draws():
    program = VAE(X_DIM, z_dim=2, hidden=(3,), likelihood="gaussian", encoder=FirstCoordinates(scale=1.0))
    x = clustered().test
    assert torch.equal(encode(program, x, "z", "mean", batch_size=7), x[:, :2])
    torch.manual_seed(3)
    drawn = encode(program, x, "z", "sample", batch_size=7)
    torch.manual_seed(3)
    assert torch.equal(drawn, encode(program, x, "z", "sample", batch_size=7))
    assert not torch.equal(drawn, encode(program, x, "z", "sample", batch_size=7))
    assert 0.7 < (drawn - x[:, :2]).std() < 1.3  # one draw of N(x[:2], 1)


def test_the_same_seed_gives_the_same_rows():
    run = make_run(clustered())
    first = probe(run, num_labels=(8,), draws=2, use="sample", seed=5)
    again = probe(run, num_labels=(8,), draws=2, use="sample", seed=5)
    assert first.rows == again.rows and sorted({r["seed"] for r in first.rows}) == [5, 6]


def test_labelled_images_are_the_num_labels_draw_of_the_data_module():
    dataset = clustered()
    for seed in (0, 1):
        index = labelled_subset(dataset, 8, seed)
        kept = dataset.with_labels(8, seed).train_labels
        assert torch.equal(index, (kept != UNLABELLED).nonzero().squeeze(-1))
        assert torch.bincount(dataset.train_labels[index], minlength=NUM_CLASSES).tolist() == [2] * NUM_CLASSES
    assert not torch.equal(labelled_subset(dataset, 8, 0), labelled_subset(dataset, 8, 1))


@pytest.mark.parametrize(
    "model, options, site",
    [
        ("vae", {}, "z"),
        ("two-layer", {"z2_dim": 2, "hidden2": (3,)}, "z"),  # the layer next to x, not z2
        ("m2", {}, "z"),  # the continuous z after the discrete y
    ],
)
def test_the_probed_site_is_the_first_continuous_per_datum_latent(model, options, site):
    spec = DataSpec((X_DIM,), NUM_CLASSES)
    program = build_model(model, spec, z_dim=3, hidden=(5,), likelihood="gaussian", **options)
    x = clustered().test
    assert latent_site(program, x[:2]) == site
    assert encode(program, x, site).shape == (len(x), 3)


class DiscreteOnly(VAE):
    """A guide whose only per-datum latent is a class."""

    @pyro_method
    def guide(self, x=None, **kwargs):
        with self.data_plate(len(x)):
            return pyro.sample("c", dist.Categorical(logits=torch.zeros(len(x), 3)))


class GlobalOnly(VAE):
    """A guide with a continuous latent outside the data plate only."""

    @pyro_method
    def guide(self, x=None, **kwargs):
        return pyro.sample("scale", dist.LogNormal(0.0, 1.0))


@pytest.mark.parametrize(
    "program, model, message",
    [
        (
            DiscreteOnly(X_DIM, z_dim=2, hidden=(3,), likelihood="gaussian"),
            "vae",
            "the guide of model 'vae' has no per-datum continuous latent to probe; its latent sites: c (discrete)",
        ),
        (
            GlobalOnly(X_DIM, z_dim=2, hidden=(3,), likelihood="gaussian"),
            "vae",
            "no per-datum continuous latent to probe; its latent sites: scale (global, outside the data plate)",
        ),
        (
            build_model("cvae", DataSpec((X_DIM,), NUM_CLASSES), z_dim=2, hidden=(3,), likelihood="gaussian"),
            "cvae",
            "the guide of model 'cvae' cannot encode images alone: CVAE needs the labels y of its data",
        ),
    ],
)
def test_a_guide_without_a_code_of_x_is_refused(program, model, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        probe(make_run(clustered(), program, model), num_labels=(4,), draws=1)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train_labels": None}, "the data set 'clustered' has no labels: the probe scores the code against them"),
        ({"test_labels": None}, "the data set 'clustered' has no labels"),
    ],
)
def test_a_data_set_without_labels_is_refused(change, message):
    import dataclasses

    with pytest.raises(ValueError, match=message):
        probe(make_run(dataclasses.replace(clustered(), **change)), num_labels=(4,), draws=1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_labels": (6,)}, "num_labels must be a positive multiple of the 4 classes, got 6"),
        ({"num_labels": (800,)}, "class 0 has only 100 training points"),
        ({"use": "mode"}, r"use must be one of \('mean', 'sample'\), got 'mode'"),
        ({"draws": 0}, "draws must be an integer >= 1, got 0"),
        ({"classifiers": ("tsvm",)}, "unknown probe classifier 'tsvm'; expected one of"),
    ],
)
def test_bad_arguments_fail_before_encoding(kwargs, message, monkeypatch):
    import pyro_vae.experiments.probe as module

    monkeypatch.setattr(module, "encode", lambda *a, **k: pytest.fail("encoded before checking"))
    with pytest.raises(ValueError, match=message):
        probe(make_run(clustered()), **{"num_labels": (4,), **kwargs})


def test_table_sets_the_errors_beside_the_paper_and_files_are_written(tmp_path):
    dataset = clustered()
    dataset.name = "mnist"  # the paper's anchors are MNIST's
    result = probe(make_run(dataset), num_labels=(4, 40), draws=2, figure=tmp_path / "tsne.png", tsne_points=50)
    table = result.table()
    assert (
        "| labels | logistic on means of q(z|x) | knn on means of q(z|x) | svm on means of q(z|x) "
        "| spreading on means of q(z|x) | spreading-svm on means of q(z|x) | NN on pixels (Kingma et al. 2014) | M1 + TSVM (Kingma et al. 2014) |"
        in table
    )
    row = next(line for line in table.splitlines() if line.startswith("| 40 |"))
    assert row.endswith("|  |  |")  # the paper has no column of 40 labels
    assert "mean ± sd over 2 draws" in table and "k-means (4 clusters)" in table
    assert mpimg.imread(result.figure).ndim == 3
    csv, record, markdown = write_probe(result, tmp_path / "out")
    assert len(csv.read_text().splitlines()) == 1 + len(result.rows)
    assert json.loads(record.read_text())["rows"] == result.rows
    assert markdown.read_text() == table


def moons(labels_per_class: int) -> tuple[Codes, np.ndarray, np.ndarray]:
    """Two interleaved half circles (scikit-learn's moons): codes, the labelled ones (at the outer tip of
    each moon) and the test labels."""
    from sklearn.datasets import make_moons

    x, y = make_moons(1200, noise=0.05, random_state=0)
    train, test = x[:1000], x[1000:]
    tips = [np.argsort(train[:, 0] * (1 if c == 0 else -1) + 10 * (y[:1000] != c))[:labels_per_class] for c in (0, 1)]
    return Codes(train, test, y[:1000], 2), np.concatenate(tips), y[1000:]


def test_spreading_svm_follows_the_unlabelled_codes_where_the_labelled_ones_mislead():
    codes, index, test_labels = moons(labels_per_class=3)
    inductive = np.mean(CLASSIFIERS["svm"](codes, index) != test_labels)
    transductive = np.mean(CLASSIFIERS["spreading-svm"](codes, index) != test_labels)
    assert inductive > 0.1 and transductive < 0.02, (inductive, transductive)
    assert (spread(codes, index)[index].argmax(1) == codes.train_labels[index]).all()


def test_the_spreading_graph_does_not_depend_on_the_units_of_a_dimension():
    codes, index, _ = moons(labels_per_class=3)
    stretched = Codes(codes.train * [1000.0, 0.001], codes.test * [1000.0, 0.001], codes.train_labels, 2)
    assert abs(codes.graph - stretched.graph).max() < 1e-9
    assert codes.graph.shape == (1200, 1200) and np.allclose(codes.graph.toarray(), codes.graph.toarray().T)


def test_mnist_columns_carry_the_paper_numbers():
    from pyro_vae.experiments.probe import ProbeResult

    rows = [{"num_labels": 100, "draw": d, "classifier": "logistic", "test_error": e} for d, e in enumerate((0.1, 0.2))]
    table = ProbeResult("vae", "mnist", "z", "mean", 20, 60000, 10000, rows).table()
    assert "| 100 | 15.00 ± 7.07 | 25.81 | 11.82 |" in table


def test_tsne_embeds_every_code_in_the_plane():
    from pyro_vae.plots.tsne import tsne

    assert tsne(torch.randn(5, 3)).shape == (5, 2)  # perplexity lowered below the number of codes
    with pytest.raises(ValueError, match="t-SNE needs at least 2 codes, got 1"):
        tsne(torch.randn(1, 3))


def test_probe_runs_from_the_command_line(tmp_path, capsys):
    from pyro_vae.cli import main
    from pyro_vae.training import train

    run_dir = tmp_path / "run"
    train(TrainConfig(dataset="synthetic", z_dim=2, hidden=(8,), epochs=1), run_dir, progress=False)
    argv = ["probe", str(run_dir), "--num-labels", "20", "40", "--draws", "2", "--classifiers", "logistic", "knn"]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"wrote {run_dir / 'probe' / 'probe.csv'}" in out and (run_dir / "probe" / "tsne.png").is_file()
    rows = (run_dir / "probe" / "probe.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2 * 2  # header, then labels x draws x classifiers
    assert main(["probe", str(run_dir), "--num-labels", "0"]) == 2
