"""Figures of graph autoencoders: the node embeddings, projected to 2-D, coloured by class."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure


def project_2d(z: torch.Tensor) -> torch.Tensor:
    """The first two principal components of the rows of ``z`` (PCA by ``torch.pca_lowrank``)."""
    if z.shape[1] <= 2:
        return z[:, :2] - z[:, :2].mean(0)
    centred = z - z.mean(0)
    _, _, v = torch.pca_lowrank(centred, q=2, center=False, niter=10)
    return centred @ v


def embedding_figure(z: torch.Tensor, labels: torch.Tensor | None, title: str) -> Figure:
    """Scatter plot of the 2-D PCA projection of node embeddings ``z`` ``(N, D)``, coloured by ``labels``."""
    points = project_2d(z.detach().cpu().float())
    figure = Figure(figsize=(5.5, 5))
    ax = figure.add_subplot()
    colours = None if labels is None else labels.cpu().numpy()
    ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), c=colours, cmap="tab10", s=4, alpha=0.7, linewidths=0)
    ax.set(title=title, xlabel="principal component 1", ylabel="principal component 2")
    ax.set_xticks([])
    ax.set_yticks([])
    figure.tight_layout()
    return figure
