"""A training callback that writes a run's progress for TensorBoard (``torch.utils.tensorboard``).

At every metrics row: its numbers (train and test ELBO, learning rate, times, test error) and
the gradient norm of the last step, against the training samples seen; at each epoch's end, for
image data, grids of samples (decoder means at z ~ p(z)) and of test images beside their
reconstructions. ``pyro-vae train --tensorboard [DIR]`` attaches it (default ``RUN_DIR/tensorboard``);
then ``tensorboard --logdir DIR``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from pyro_vae.plots.images import image_grid, reconstruction_rows
from pyro_vae.plots.run import label_context


def gradient_norm(module: torch.nn.Module) -> float | None:
    """The Euclidean norm of the gradients the last step left on ``module``'s parameters
    (``None`` where none has one)."""
    grads = [p.grad.detach().flatten() for p in module.parameters() if p.grad is not None]
    return torch.cat(grads).norm().item() if grads else None


class TensorBoard:
    """The callback (see the module docstring): ``log_dir`` gets the event files;
    ``num_images`` samples and test reconstructions per grid (a multiple of ten)."""

    def __init__(self, log_dir: str | Path, num_images: int = 50) -> None:
        from torch.utils.tensorboard import SummaryWriter  # tensorboard, only where it is used

        if num_images < 10 or num_images % 10:
            raise ValueError(f"num_images must be a positive multiple of 10, got {num_images}")
        self.log_dir, self.num_images = Path(log_dir), num_images
        self.writer = SummaryWriter(str(self.log_dir))

    def on_eval(self, run, row: dict) -> None:
        step = int(row.get("samples_seen", row["epoch"]))
        for key, value in row.items():
            if key not in ("epoch", "samples_seen") and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        norm = gradient_norm(run.vae)
        if norm is not None:
            self.writer.add_scalar("grad_norm", norm, step)

    @torch.no_grad()
    def on_epoch_end(self, run, row: dict | None) -> None:
        data, vae = run.dataset, run.vae
        shape = getattr(data, "image_shape", None)
        if shape is None or row is None:  # a graph, or nothing trained yet
            return
        device = next(vae.parameters()).device
        x = data.test[: self.num_images].to(device)
        labels = None if data.test_labels is None else data.test_labels[: self.num_images].to(device)
        test, generated = label_context(vae, data, labels, self.num_images, device)
        samples = vae.generate(self.num_images, **generated)
        pairs = reconstruction_rows(vae, x, **test)
        for tag, images in (("samples", samples), ("reconstructions", pairs)):
            self.writer.add_image(tag, image_grid(images.cpu().reshape(-1, *shape).clamp(0, 1)), row["epoch"])
        self.writer.flush()

    def on_train_end(self, run, row: dict | None) -> None:
        self.writer.close()
