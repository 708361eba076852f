"""Figures: samples, reconstructions, training curves, latent scatter, 2-D manifold, M2's analogies,
and the learning-curve panels of the paper's figures.

One job per module: :mod:`~pyro_vae.plots.figure` (saving), :mod:`~pyro_vae.plots.images`
(image grids, drawn with plain torch), :mod:`~pyro_vae.plots.latents`,
:mod:`~pyro_vae.plots.embedding` (2-D scatter of embeddings by class), :mod:`~pyro_vae.plots.tsne`
(t-SNE of a latent code; imports scikit-learn, so it is imported where used),
:mod:`~pyro_vae.plots.curves` (learning curves) and :mod:`~pyro_vae.plots.run` (all figures
of a run). Figures are matplotlib's object-oriented ``Figure`` (no pyplot state, so
notebooks keep their own backend).
"""

from pyro_vae.plots.curves import (
    ALGORITHM_COLORS,
    ALGORITHM_LABELS,
    PAPER_XLIM,
    curve_grid_figure,
    curve_panel,
    curve_ylim,
    plot_curves,
    samples_axis,
)
from pyro_vae.plots.embedding import embedding_figure, project_2d
from pyro_vae.plots.figure import save_figure
from pyro_vae.plots.images import (
    image_grid,
    plot_analogies,
    plot_manifold,
    plot_reconstructions,
    plot_samples,
    save_image_grid,
)
from pyro_vae.plots.latents import plot_latents
from pyro_vae.plots.run import write_figures

__all__ = [
    "ALGORITHM_COLORS",
    "ALGORITHM_LABELS",
    "PAPER_XLIM",
    "curve_grid_figure",
    "curve_panel",
    "curve_ylim",
    "embedding_figure",
    "image_grid",
    "plot_analogies",
    "plot_curves",
    "plot_latents",
    "plot_manifold",
    "plot_reconstructions",
    "plot_samples",
    "project_2d",
    "samples_axis",
    "save_figure",
    "save_image_grid",
    "write_figures",
]
