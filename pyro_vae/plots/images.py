"""Image grids: samples, reconstructions, the 2-D manifold (paper Figs. 4, 5) and M2's analogies."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from pyro.nn import PyroModule

from pyro_vae.plots.figure import save_figure


def image_grid(images: torch.Tensor, nrow: int = 10, padding: int = 1, pad_value: float = 1.0) -> torch.Tensor:
    """Tile ``images`` ``(N, C, H, W)`` into one ``(3, H', W')`` image, ``nrow`` per row, with
    ``padding`` pixels of ``pad_value`` around each (one channel repeated as RGB): the
    grid ``torchvision.utils.make_grid`` draws, without importing torchvision."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    num, channels, height, width = images.shape
    cols = min(nrow, num)
    rows = math.ceil(num / cols)
    step_y, step_x = height + padding, width + padding
    grid = images.new_full((channels, rows * step_y + padding, cols * step_x + padding), pad_value)
    for i, image in enumerate(images):
        y, x = padding + (i // cols) * step_y, padding + (i % cols) * step_x
        grid[:, y : y + height, x : x + width] = image
    return grid


def save_image_grid(
    images: torch.Tensor,
    image_shape: Sequence[int],
    path: str | Path,
    nrow: int = 10,
    title: str | None = None,
) -> Path:
    """Tile ``images`` (``(N, *x_shape)``, values in [0, 1]) into one PNG."""
    images = images.detach().cpu().reshape(-1, *image_shape).clamp(0, 1)
    grid = image_grid(images, nrow=nrow)
    scale = max(1.0, 4.0 / (grid.shape[2] / 40))  # at least 4 inches wide
    width, height = scale * grid.shape[2] / 40, scale * grid.shape[1] / 40
    fig = Figure(figsize=(width, height + (0.4 if title else 0)))
    ax = fig.subplots()
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray", interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_samples(vae: PyroModule, image_shape: Sequence[int], path: str | Path, n: int = 100, **context) -> Path:
    """Means of p(x|latents) for latents drawn from the model's prior (paper Fig. 5);
    ``context`` (e.g. labels ``y``, one per sample) conditions the model."""
    return save_image_grid(vae.generate(n, **context), image_shape, path, title=f"samples, z_dim={vae.z_dim}")


def plot_reconstructions(
    vae: PyroModule, x: torch.Tensor, image_shape: Sequence[int], path: str | Path, n: int = 50, **context
) -> Path:
    """Rows alternate data and reconstructions (mean of p(x|latents) at the posterior means of the guide)."""
    pairs = reconstruction_rows(vae, x[:n], **{k: v[:n] for k, v in context.items()})
    return save_image_grid(pairs, image_shape, path, title="data (odd rows) and reconstructions (even rows)")


def reconstruction_rows(vae: PyroModule, x: torch.Tensor, nrow: int = 10, **context) -> torch.Tensor:
    """``(2 N, D)``: rows of ``nrow`` data images alternating with rows of their reconstructions
    (``N`` a multiple of ``nrow``)."""
    recon = vae.reconstruct(x, **context)
    pairs = torch.stack([x.reshape(len(x), -1), recon.reshape(len(x), -1)], 1)
    return pairs.reshape(-1, nrow, 2, pairs.shape[-1]).transpose(1, 2).reshape(-1, pairs.shape[-1])


@torch.no_grad()
def plot_manifold(vae: PyroModule, image_shape: Sequence[int], path: str | Path, n: int = 20, **context) -> Path:
    """Decoder means over z = Phi^-1(u) for u on an n x n grid of the unit square (paper Fig. 4);
    ``context`` (e.g. ``y``, one label per grid point) conditions the model."""
    if vae.z_dim != 2:
        raise ValueError(f"the latent manifold needs z_dim = 2, this VAE has z_dim = {vae.z_dim}")
    u = torch.linspace(0.5 / n, 1 - 0.5 / n, n, device=vae.prior_loc.device)
    z1 = torch.distributions.Normal(0.0, 1.0).icdf(u)
    grid = torch.stack(torch.meshgrid(z1.flip(0), z1, indexing="ij"), -1).reshape(-1, 2)
    z = grid.flip(-1)  # rows: z[1] from top to bottom, columns: z[0] left to right
    images = vae.generate(len(z), latents={"z": z}, **context)
    title = "learned 2-D manifold" + (f" (y = {int(context['y'][0])})" if "y" in context else "")
    return save_image_grid(images, image_shape, path, nrow=n, title=title)


@torch.no_grad()
def plot_analogies(vae, x: torch.Tensor, image_shape: Sequence[int], path: str | Path, n: int = 10) -> Path:
    """Analogies of a model that classifies (M2; Kingma et al. 2014, Fig. 1b): each row is a test
    image, then the means of p(x | z, y) for every class y, with the style z the mean of
    q(z | x, y^) at that image's predicted class y^ = ``vae.classify(x)``."""
    x = x[:n]
    y = vae.classify(x)
    z = vae.embed(x, y=y)
    classes = torch.arange(vae.num_classes, device=x.device).repeat(len(x))
    generated = vae.generate(len(classes), latents={"z": z.repeat_interleave(vae.num_classes, 0)}, y=classes)
    rows = torch.cat([x.reshape(len(x), 1, -1), generated.reshape(len(x), vae.num_classes, -1)], 1)
    return save_image_grid(
        rows.reshape(-1, rows.shape[-1]),
        image_shape,
        path,
        nrow=vae.num_classes + 1,
        title="test image, then its style z with each class y",
    )
