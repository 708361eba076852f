"""All figures of a trained run (``pyro-vae train`` and ``pyro-vae plot`` write them)."""

from __future__ import annotations

from pathlib import Path

import torch

from pyro_vae.plots.curves import plot_curves
from pyro_vae.plots.images import plot_analogies, plot_manifold, plot_reconstructions, plot_samples
from pyro_vae.plots.latents import plot_latents


def label_context(vae, data, labels: torch.Tensor | None, num_generated: int, device: str | torch.device
                  ) -> tuple[dict, dict]:
    """``(test, generated)``: the keywords that condition a model of labelled data (``"y"`` in
    its ``data_keys``) on the test ``labels``, and ``num_generated`` draws on one class per column
    of ten; empty for other models."""
    if "y" not in vae.data_keys:
        return {}, {}
    return {"y": labels}, {"y": torch.arange(num_generated, device=device) % data.num_classes}


def write_figures(run, out_dir: str | Path, num_points: int = 2000) -> list[Path]:
    """All figures for a :class:`~pyro_vae.training.loop.Run` into ``out_dir``."""
    out_dir = Path(out_dir)
    vae, data = run.vae, run.dataset
    vae.eval()
    device = vae.prior_loc.device
    x = data.test[:num_points].to(device)
    labels = None if data.test_labels is None else data.test_labels[:num_points].to(device)
    test, generated = label_context(vae, data, labels, 100, device)
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
