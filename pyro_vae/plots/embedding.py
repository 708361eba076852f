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
    """Scatter plot of the 2-D PCA projection of node embeddings ``z`` ``(N, D)``, one colour
    (and legend entry) per class of ``labels``. The axes span the 0.5-99.5 percentiles of the
    points, so that a few outlying nodes do not shrink the rest into a corner."""
    points = project_2d(z.detach().cpu().float())
    figure = Figure(figsize=(6.2, 5), layout="constrained")
    ax = figure.add_subplot()
    if labels is None:
        ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=4, alpha=0.7, linewidths=0)
    else:
        labels = labels.cpu()
        for c in torch.unique(labels).tolist():
            mine = points[labels == c]
            ax.scatter(
                mine[:, 0].numpy(),
                mine[:, 1].numpy(),
                s=4,
                alpha=0.7,
                linewidths=0,
                color=f"C{c % 10}",
                label=f"class {c}",
            )
        figure.legend(loc="outside right upper", markerscale=3, fontsize=8)
    low, high = torch.quantile(points, torch.tensor([0.005, 0.995]), dim=0)
    pad = 0.05 * (high - low)
    ax.set_xlim(float(low[0] - pad[0]), float(high[0] + pad[0]))
    ax.set_ylim(float(low[1] - pad[1]), float(high[1] + pad[1]))
    ax.set(title=title, xlabel="principal component 1", ylabel="principal component 2")
    ax.set_xticks([])
    ax.set_yticks([])
    return figure
