"""The latent scatter: posterior means of z coloured by label."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure
from pyro.nn import PyroModule

from pyro_vae.plots.figure import save_figure


@torch.no_grad()
def plot_latents(vae: PyroModule, x: torch.Tensor, labels: torch.Tensor | None, path: str | Path, **context) -> Path:
    """Posterior means of z (:meth:`~pyro_vae.models.vae.VAE.embed`) coloured by label. When z has more than 2
    dimensions they are embedded by t-SNE where there are labels (classes overlapping in a linear
    projection stay apart: :mod:`pyro_vae.plots.tsne`), else projected on 2 principal axes."""
    loc = vae.embed(x, **context).reshape(len(x), -1).cpu()
    axes, title = ("z[0]", "z[1]"), "means of q(z|x) on test data"
    if loc.shape[1] > 2 and labels is not None:
        from pyro_vae.plots.tsne import tsne  # scikit-learn, only where it is used

        loc, axes, title = tsne(loc), ("t-SNE 1", "t-SNE 2"), "t-SNE of the means of q(z|x) on test data"
    elif loc.shape[1] > 2:
        centred = loc - loc.mean(0)
        _, _, v = torch.pca_lowrank(centred, q=2, center=False)
        loc, axes = centred @ v, ("principal axis 1", "principal axis 2")
    elif loc.shape[1] == 1:
        loc, axes = torch.cat([loc, torch.zeros_like(loc)], 1), ("z[0]", "")
    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    if labels is None:  # one colour
        scatter = ax.scatter(loc[:, 0], loc[:, 1], s=3, alpha=0.7)
    else:
        scatter = ax.scatter(loc[:, 0], loc[:, 1], c=labels[: len(loc)].cpu(), s=3, cmap="tab10", alpha=0.7)
    if labels is not None:
        fig.colorbar(scatter, ax=ax, label="label")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title)
    return save_figure(fig, path)
