"""Figures: samples, reconstructions, training curves, latent scatter, 2-D manifold, M2's analogies.

Image grids are built with ``torchvision.utils.make_grid`` and drawn with
matplotlib's object-oriented ``Figure`` (no pyplot state, so notebooks keep
their own backend).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter
import torch
from torchvision.utils import make_grid

from pyro_vae.models.vae import VAE


def save_image_grid(
    images: torch.Tensor,
    image_shape: Sequence[int],
    path: str | Path,
    nrow: int = 10,
    title: str | None = None,
) -> Path:
    """Tile ``images`` (``(N, *x_shape)``, values in [0, 1]) into one PNG."""
    images = images.detach().cpu().reshape(-1, *image_shape).clamp(0, 1)
    grid = make_grid(images, nrow=nrow, padding=1, pad_value=1.0)
    scale = max(1.0, 4.0 / (grid.shape[2] / 40))  # at least 4 inches wide
    width, height = scale * grid.shape[2] / 40, scale * grid.shape[1] / 40
    fig = Figure(figsize=(width, height + (0.4 if title else 0)))
    ax = fig.subplots()
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray", interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_samples(vae: VAE, image_shape: Sequence[int], path: str | Path, n: int = 100, **context) -> Path:
    """Means of p(x|latents) for latents drawn from the model's prior (paper Fig. 5);
    ``context`` (e.g. labels ``y``, one per sample) conditions the model."""
    return save_image_grid(vae.generate(n, **context), image_shape, path, title=f"samples, z_dim={vae.z_dim}")


def plot_reconstructions(
    vae: VAE, x: torch.Tensor, image_shape: Sequence[int], path: str | Path, n: int = 50, **context
) -> Path:
    """Rows alternate data and reconstructions (mean of p(x|latents) at the posterior means of the guide)."""
    x = x[:n]
    recon = vae.reconstruct(x, **{k: v[:n] for k, v in context.items()})
    pairs = torch.stack([x.reshape(len(x), -1), recon.reshape(len(x), -1)], 1)
    pairs = pairs.reshape(-1, 10, 2, pairs.shape[-1]).transpose(1, 2).reshape(-1, pairs.shape[-1])
    return save_image_grid(pairs, image_shape, path, title="data (odd rows) and reconstructions (even rows)")


def samples_axis(ax, samples: Sequence[float], xlim: tuple[float, float] | None = None) -> None:
    """A log x axis of training samples that labels only the decades (10^5, 10^6, ...), so tick
    labels never run into each other, over ``xlim`` or the whole decades around ``samples``."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=12))
    ax.xaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=True))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if xlim is None and samples:
        xlim = (10 ** math.floor(math.log10(min(samples))), 10 ** math.ceil(math.log10(max(samples)) + 1e-9))
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.set_xlabel("training samples evaluated")


def plot_curves(metrics: list[dict], path: str | Path) -> Path:
    """Train and test ELBO per datum against training samples seen (log scale, as paper Fig. 2);
    beside them the test error of a program that classifies, where the rows carry one."""
    scored = [m for m in metrics if m.get("test_error") is not None]
    fig = Figure(figsize=(10 if scored else 5, 3.5))
    ax, *error_ax = fig.subplots(1, 2 if scored else 1, squeeze=False)[0]
    seen = [m["samples_seen"] for m in metrics]
    ax.plot(seen, [m["train_elbo"] for m in metrics], label="train ELBO", marker=".")
    ax.plot(seen, [m["test_elbo"] for m in metrics], label="test ELBO", marker=".")
    samples_axis(ax, seen)
    ax.set_ylabel("ELBO (nats per datum)")
    ax.legend()
    for axis in (ax, *error_ax):
        axis.grid(alpha=0.3)
    if scored:
        error_ax[0].plot([m["samples_seen"] for m in scored], [100 * m["test_error"] for m in scored], marker=".",
                         color="C2")
        samples_axis(error_ax[0], seen)
        error_ax[0].set_ylabel("test error of the classifier (%)")
    return save_figure(fig, path)


@torch.no_grad()
def plot_latents(
    vae: VAE, x: torch.Tensor, labels: torch.Tensor | None, path: str | Path, **context
) -> Path:
    """Posterior means of z (:meth:`VAE.embed`) coloured by label; projected on 2
    principal axes when z has more than 2 dimensions."""
    loc = vae.embed(x, **context).reshape(len(x), -1).cpu()
    axes = ("z[0]", "z[1]")
    if loc.shape[1] > 2:
        centred = loc - loc.mean(0)
        _, _, v = torch.pca_lowrank(centred, q=2, center=False)
        loc, axes = centred @ v, ("principal axis 1", "principal axis 2")
    elif loc.shape[1] == 1:
        loc, axes = torch.cat([loc, torch.zeros_like(loc)], 1), ("z[0]", "")
    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    colours = None if labels is None else labels[: len(loc)].cpu()
    scatter = ax.scatter(loc[:, 0], loc[:, 1], c=colours, s=3, cmap="tab10", alpha=0.7)
    if labels is not None:
        fig.colorbar(scatter, ax=ax, label="label")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title("means of q(z|x) on test data")
    return save_figure(fig, path)


@torch.no_grad()
def plot_manifold(vae: VAE, image_shape: Sequence[int], path: str | Path, n: int = 20, **context) -> Path:
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
    return save_image_grid(rows.reshape(-1, rows.shape[-1]), image_shape, path, nrow=vae.num_classes + 1,
                           title="test image, then its style z with each class y")


def write_figures(run, out_dir: str | Path, num_points: int = 2000) -> list[Path]:
    """All figures for a :class:`~pyro_vae.training.loop.Run` into ``out_dir``."""
    out_dir = Path(out_dir)
    vae, data = run.vae, run.dataset
    vae.eval()
    device = vae.prior_loc.device
    x = data.test[:num_points].to(device)
    labels = None if data.test_labels is None else data.test_labels[:num_points].to(device)
    test, generated = {}, {}
    if "y" in vae.data_keys:  # a model of labelled data: condition on the labels, one class per column
        test = {"y": labels}
        generated = {"y": torch.arange(100, device=device) % data.num_classes}
    paths = [
        plot_samples(vae, data.image_shape, out_dir / "samples.png", **generated),
        plot_reconstructions(vae, x, data.image_shape, out_dir / "reconstructions.png", **test),
        plot_latents(vae, x, data.test_labels, out_dir / "latents.png", **test),
    ]
    if run.metrics:
        paths.append(plot_curves(run.metrics, out_dir / "curves.png"))
    if hasattr(vae, "classify"):
        paths.append(plot_analogies(vae, x, data.image_shape, out_dir / "analogies.png"))
    if vae.z_dim == 2:
        one_class = {"y": torch.zeros(400, dtype=torch.long, device=device)} if generated else {}
        paths.append(plot_manifold(vae, data.image_shape, out_dir / "manifold.png", **one_class))
    return paths


def save_figure(fig, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG, creating folders (tight layout unless it has a layout engine)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
