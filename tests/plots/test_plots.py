import math

import matplotlib.image as mpimg
import pytest
import torch

from pyro_vae.models.vae import VAE
from pyro_vae.plots import plot_latents, plot_manifold, save_image_grid


def test_manifold_needs_two_latent_dimensions(tmp_path):
    with pytest.raises(ValueError, match="needs z_dim = 2, this VAE has z_dim = 3"):
        plot_manifold(VAE(4, z_dim=3, hidden=(3,)), (1, 2, 2), tmp_path / "m.png")
    path = plot_manifold(VAE(4, z_dim=2, hidden=(3,)), (1, 2, 2), tmp_path / "m.png", n=5)
    assert mpimg.imread(path).ndim == 3


def test_image_grid_tiles_values_in_unit_range(tmp_path):
    images = torch.linspace(-1, 2, 6 * 12).reshape(6, 12)  # clamped to [0, 1]
    path = save_image_grid(images, (1, 3, 4), tmp_path / "g.png", nrow=3)
    assert mpimg.imread(path).shape[1] >= 4 * 120  # at least 4 inches at 120 dpi


@pytest.mark.parametrize("z_dim", [1, 2, 5])
@pytest.mark.parametrize("labelled", [True, False])
def test_latent_scatter_any_dimension(tmp_path, z_dim, labelled, monkeypatch):
    import pyro_vae.plots.tsne

    calls = []
    tsne = pyro_vae.plots.tsne.tsne
    monkeypatch.setattr(pyro_vae.plots.tsne, "tsne", lambda codes: calls.append(codes.shape) or tsne(codes))
    vae = VAE(4, z_dim=z_dim, hidden=(3,))
    labels = torch.randint(3, (30,)) if labelled else None
    assert plot_latents(vae, torch.rand(30, 4), labels, tmp_path / "l.png").exists()
    assert calls == ([(30, z_dim)] if labelled and z_dim > 2 else [])  # t-SNE for labelled codes of > 2 dims


@pytest.mark.parametrize("samples", [[6e4 * e for e in range(1, 11)], [1.7e3, 1e7], [2e3, 3e3]])
def test_samples_axis_labels_only_whole_decades(samples):
    # the main job's curves (6e4 to 6e5) used to label minor ticks, "3x10^4x10^5" in one run
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from pyro_vae.plots import samples_axis

    fig = Figure()
    ax = fig.subplots()
    ax.plot(samples, range(len(samples)))
    samples_axis(ax, samples)
    fig.draw(FigureCanvasAgg(fig).get_renderer())
    labels = [t.get_text() for t in ax.get_xticklabels(which="both") if t.get_visible() and t.get_text()]
    assert len(labels) >= 2 and all(t.startswith("$\\mathdefault{10^{") for t in labels)
    low, high = ax.get_xlim()
    assert low <= min(samples) and max(samples) <= high
    assert math.log10(low) == round(math.log10(low)) and math.log10(high) == round(math.log10(high))


@pytest.mark.parametrize("errors", [None, [None, 0.5, 0.25]])
def test_curves_add_the_classifier_error_where_the_rows_carry_it(tmp_path, monkeypatch, errors):
    import pyro_vae.plots.curves as plots

    rows = [{"samples_seen": 6e4 * e, "train_elbo": -100.0 + e, "test_elbo": -101.0 + e} for e in (1, 2, 3)]
    for row, error in zip(rows, errors or []):
        if error is not None:  # a run resumed under a version that did not score the classifier
            row["test_error"] = error
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or path)
    plots.plot_curves(rows, tmp_path / "c.png")
    (fig,) = figures
    assert len(fig.axes) == (1 if errors is None else 2)
    if errors is not None:
        (line,) = fig.axes[1].get_lines()
        assert list(line.get_xdata()) == [1.2e5, 1.8e5] and list(line.get_ydata()) == [50.0, 25.0]
        assert "error" in fig.axes[1].get_ylabel()


def test_variance_panels_label_the_particle_counts(tmp_path, monkeypatch):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    import pyro_vae.experiments.variance_report as study

    rows = [
        {"experiment": "particles", "estimator": e, "params": g, "num_particles": k, "total_variance": v * k}
        for e, v in (("reparam", 1.0), ("score", 100.0))
        for g in ("guide", "model")
        for k in (1, 4, 16)
    ]
    figures = []
    monkeypatch.setattr(study, "save_figure", lambda fig, path: figures.append(fig) or path)
    study.plot_variance(rows, "particles", "num_particles", tmp_path / "v.png")
    (fig,) = figures
    fig.draw(FigureCanvasAgg(fig).get_renderer())
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels(which="both") if t.get_visible() and t.get_text()]
    assert labels == ["1", "4", "16"]


@pytest.mark.parametrize(
    "num, nrow, shape", [(7, 3, (1, 5, 4)), (10, 10, (1, 28, 20)), (4, 6, (3, 2, 2)), (12, 5, (1, 3, 3))]
)
def test_image_grid_is_torchvisions_make_grid(num, nrow, shape):
    from torchvision.utils import make_grid

    from pyro_vae.plots import image_grid

    images = torch.rand(num, *shape)
    assert torch.equal(image_grid(images, nrow=nrow), make_grid(images, nrow=nrow, padding=1, pad_value=1.0))
