"""A training callback that writes a run's progress for TensorBoard (``torch.utils.tensorboard``).

Everything is logged against one step, the training samples seen (a graph run, one full-graph
step per epoch, counts epochs instead), so TensorBoard's step slider lines scalars and images up:

* at its first call, once: the run's config as text (``config``) and as hyperparameters for the
  HParams dashboard (:func:`hparams`), written into the same folder, so TensorBoard shows one run;
* at every metrics row: its numbers (train and test ELBO, learning rate, times, test error) and
  the gradient norm of the last step, at the row's ``samples_seen``;
* at the end of every epoch that wrote a metrics row (each epoch by default), for image data:
  grids of samples (decoder means at z ~ p(z)) and of test images beside their reconstructions,
  at that row's step (the epoch's last: with ``evals_per_decade`` a row can fall inside an epoch);
* at the final evaluation (``on_evaluate``, :func:`pyro_vae.training.report.evaluate_run` with
  ``callbacks=``): the report's numbers as ``evaluation/NAME`` (``test_log_px``, the K-sample
  ``test_elbo``, ``test_error``, ...) and the report as text, at the run's last step.

The HParams dashboard's metric columns are a run's scalars at their last step: the final test
ELBO (``test_elbo``) and, when the run was evaluated, ``evaluation/test_log_px`` and
``evaluation/test_elbo``. ``pyro-vae train --tensorboard [DIR]`` attaches the callback (default
``RUN_DIR/tensorboard``); then ``tensorboard --logdir DIR``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pyro_vae.plots.images import image_grid, reconstruction_rows
from pyro_vae.plots.run import label_context

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

#: Entries of a metrics row or report that are its place on the step axis, not a metric.
STEP_KEYS = ("epoch", "samples_seen")


def gradient_norm(module: torch.nn.Module) -> float | None:
    """The Euclidean norm of the gradients the last step left on ``module``'s parameters
    (``None`` where none has one)."""
    grads = [p.grad.detach().flatten() for p in module.parameters() if p.grad is not None]
    return torch.cat(grads).norm().item() if grads else None


def step_of(row: dict) -> int:
    """The global step of a metrics ``row``: the training samples seen by it (the epoch in a
    graph run's rows, which count no samples)."""
    return int(row.get("samples_seen", row["epoch"]))


def hparams(config: DataclassInstance) -> dict[str, bool | int | float | str]:
    """A run's config (a dataclass, e.g. ``TrainConfig``) as TensorBoard hyperparameters: each
    field, a dict field's entries as ``FIELD.KEY``; a value that is not a number, string or
    boolean (a tuple of hidden sizes, ``None``) as its JSON text."""
    flat: dict[str, object] = {}
    for name, value in asdict(config).items():
        if isinstance(value, dict):
            flat.update({f"{name}.{key}": entry for key, entry in value.items()})
        else:
            flat[name] = value
    return {
        name: value if isinstance(value, (bool, int, float, str)) else json.dumps(value) for name, value in flat.items()
    }


def json_text(entries: dict) -> str:
    """``entries`` as a Markdown code block of JSON, for TensorBoard's text dashboard."""
    return "```json\n" + json.dumps(entries, indent=2, default=str) + "\n```"


class TensorBoard:
    """The callback (see the module docstring): ``log_dir`` gets the event files;
    ``num_images`` samples and test reconstructions per grid (a multiple of ten)."""

    def __init__(self, log_dir: str | Path, num_images: int = 50) -> None:
        from torch.utils.tensorboard import SummaryWriter  # tensorboard, only where it is used

        if num_images < 10 or num_images % 10:
            raise ValueError(f"num_images must be a positive multiple of 10, got {num_images}")
        self.log_dir, self.num_images = Path(log_dir), num_images
        self.writer = SummaryWriter(str(self.log_dir))
        self._started = False
        self._row_step: int | None = None  # the step of a row written since the last epoch's end

    def _start(self, run, step: int) -> None:
        """At the first call: the config as text and as the HParams dashboard's hyperparameters."""
        if self._started:
            return
        from tensorboard.plugins.hparams.summary_v2 import hparams_pb

        self._started = True
        self.writer.add_text("config", json_text(asdict(run.config)), step)
        # torch infers file_writer's type as None (its __init__ sets it None before opening it)
        self.writer.file_writer.add_summary(hparams_pb(hparams(run.config)), step)  # type: ignore[attr-defined]

    def _scalars(self, prefix: str, entries: dict, step: int) -> None:
        """Every finite number of ``entries`` (not a step key) as scalar ``prefix + name``."""
        for key, value in entries.items():
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if key not in STEP_KEYS and number and math.isfinite(value):
                self.writer.add_scalar(prefix + key, value, step)

    def on_eval(self, run, row: dict) -> None:
        step = self._row_step = step_of(row)
        self._start(run, step)
        self._scalars("", row, step)
        norm = gradient_norm(run.program)
        if norm is not None:
            self.writer.add_scalar("grad_norm", norm, step)

    @torch.no_grad()
    def on_epoch_end(self, run, row: dict | None) -> None:
        step, self._row_step = self._row_step, None
        self._start(run, 0 if row is None else step_of(row))
        data, vae = run.dataset, run.program
        shape = getattr(data, "image_shape", None)
        if shape is None or step is None:  # a graph, or no row this epoch
            return
        device = next(vae.parameters()).device
        x = data.test[: self.num_images].to(device)
        labels = None if data.test_labels is None else data.test_labels[: self.num_images].to(device)
        test, generated = label_context(vae, data, labels, self.num_images, device)
        samples = vae.generate(self.num_images, **generated)
        pairs = reconstruction_rows(vae, x, **test)
        for tag, images in (("samples", samples), ("reconstructions", pairs)):
            self.writer.add_image(tag, image_grid(images.cpu().reshape(-1, *shape).clamp(0, 1)), step)
        self.writer.flush()

    def on_train_end(self, run, row: dict | None) -> None:
        self._start(run, 0 if row is None else step_of(row))
        self.writer.close()  # a later write (on_evaluate) opens a new event file in the same folder

    def on_evaluate(self, run, report: dict) -> None:
        step = step_of(run.metrics[-1]) if run.metrics else 0
        self._start(run, step)
        self._scalars("evaluation/", report, step)
        self.writer.add_text("evaluation", json_text(report), step)
        self.writer.close()
