"""The picture of a latent code: t-SNE (van der Maaten & Hinton 2008) of codes, coloured by class.

A linear projection (the PCA scatter of :func:`pyro_vae.plots.plot_latents`) overlaps the
classes of a 20- or 50-dimensional code; t-SNE keeps each code's nearest neighbours near
it in the plane, so clusters of the code show as clusters of the picture.
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure
from sklearn.manifold import TSNE

from pyro_vae.plots.embedding import embedding_figure


def tsne(codes: torch.Tensor, seed: int = 0, perplexity: float = 30.0) -> torch.Tensor:
    """The 2-D t-SNE embedding ``(N, 2)`` of the rows of ``codes`` ``(N, D)`` (scikit-learn's
    Barnes-Hut t-SNE, PCA initialization, ``random_state=seed``)."""
    codes = codes.detach().cpu().double().reshape(len(codes), -1)
    if len(codes) < 2:
        raise ValueError(f"t-SNE needs at least 2 codes, got {len(codes)}")
    perplexity = min(perplexity, (len(codes) - 1) / 3)  # scikit-learn requires perplexity < N
    embedding = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(codes.numpy())
    return torch.from_numpy(embedding).float()


def tsne_figure(
    codes: torch.Tensor,
    labels: torch.Tensor | None,
    num_points: int = 2000,
    seed: int = 0,
    title: str = "t-SNE of the means of q(z|x) on test data",
) -> Figure:
    """Scatter of the t-SNE embedding (:func:`tsne`) of the first ``num_points`` codes, one colour
    per class of ``labels`` (save it with :func:`pyro_vae.plots.save_figure`)."""
    codes = codes[:num_points]
    figure = embedding_figure(tsne(codes, seed), None if labels is None else labels[: len(codes)], title)
    figure.axes[0].set(xlabel="t-SNE 1", ylabel="t-SNE 2")
    return figure
