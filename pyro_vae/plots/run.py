"""All figures of a trained run (``pyro-vae train`` and ``pyro-vae plot`` write them).

Each figure is registered once in :data:`RUN_FIGURES` with what it needs of the program (a
method, a 2-D code, labels, metrics rows): a figure is drawn where the program has what it
needs, and otherwise skipped with the reason. A figure that fails to draw for a program it
seemed to fit (a user's program that names its sites otherwise, say) is skipped with its
error's first line too: a finished training never fails for want of a picture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from pyro_vae.models.program import member
from pyro_vae.plots.curves import plot_curves
from pyro_vae.plots.images import plot_analogies, plot_manifold, plot_reconstructions, plot_samples
from pyro_vae.plots.latents import plot_latents
from pyro_vae.registry import Registry
from pyro_vae.training.build import Run
from pyro_vae.training.kinds import run_kind


def label_context(
    vae, data, labels: torch.Tensor | None, num_generated: int, device: str | torch.device
) -> tuple[dict, dict]:
    """``(test, generated)``: the keywords that condition a model of labelled data (``"y"`` in
    its ``data_keys``) on the test ``labels``, and ``num_generated`` draws on one class per column
    of ten; empty for other models."""
    if "y" not in member(vae, "data_keys"):
        return {}, {}
    return {"y": labels}, {"y": torch.arange(num_generated, device=device) % data.num_classes}


@dataclass
class FigureInputs:
    """What every figure of a run draws from: the run, the folder, the first test data, their
    labels and the keywords that condition a labelled model (:func:`label_context`)."""

    run: Run
    out_dir: Path
    x: torch.Tensor
    labels: torch.Tensor | None
    test: dict
    generated: dict


@dataclass(frozen=True)
class RunFigure:
    """A figure of a run: ``draw(inputs) -> path``, and ``lacks(run)``, what the program lacks for
    it in words (``None`` when it has all it needs)."""

    draw: Callable[[FigureInputs], Path]
    lacks: Callable[[Run], str | None]


def _missing_methods(*names: str) -> Callable[[Run], str | None]:
    def lacks(run: Run) -> str | None:
        missing = [name for name in names if not callable(getattr(run.program, name, None))]
        return f"the program has no {', '.join(missing)} method" if missing else None

    return lacks


def _manifold(inputs: FigureInputs) -> Path:
    device = inputs.x.device
    one_class: dict[str, Any] = {"y": torch.zeros(400, dtype=torch.long, device=device)} if inputs.generated else {}
    return plot_manifold(
        inputs.run.program, inputs.run.dataset.image_shape, inputs.out_dir / "manifold.png", **one_class
    )


def _labels_shape_samples(run) -> str | None:
    """What an analogies figure needs: ``classify``, ``embed`` and ``generate``, and a decoder whose
    output changes with the label y (the same z, y = 0 and y = 1 generate different means)."""
    lacks = _missing_methods("classify", "embed", "generate")(run)
    if lacks:
        return lacks
    vae = run.program
    parameter = next(vae.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    z = torch.zeros(2, member(vae, "z_dim") or 1, device=device)
    try:
        means = vae.generate(2, latents={"z": z}, y=torch.tensor([0, 1], device=device))
    except Exception as err:  # noqa: BLE001  told, not raised: the figure is left out
        return f"generate(2, latents={{'z': ...}}, y=...) fails ({type(err).__name__}: {str(err).splitlines()[0]})"
    return "the decoder ignores the label y (y = 0 and 1 generate the same means)" if torch.equal(*means) else None


def _two_dimensional(run) -> str | None:
    lacks = _missing_methods("generate")(run)
    return lacks or (None if member(run.program, "z_dim") == 2 else "the code is not 2-D")


#: The figures of a run, in the order they are drawn (``pyro-vae plot --figures NAME ...`` chooses).
RUN_FIGURES: Registry[RunFigure] = Registry("figure")
RUN_FIGURES.register(
    "samples",
    RunFigure(
        lambda i: plot_samples(i.run.program, i.run.dataset.image_shape, i.out_dir / "samples.png", **i.generated),
        _missing_methods("generate"),
    ),
    help="means of p(x|z) for z from the prior (paper Fig. 5)",
)
RUN_FIGURES.register(
    "reconstructions",
    RunFigure(
        lambda i: plot_reconstructions(
            i.run.program, i.x, i.run.dataset.image_shape, i.out_dir / "reconstructions.png", **i.test
        ),
        _missing_methods("reconstruct"),
    ),
    help="test images and their reconstructions",
)
RUN_FIGURES.register(
    "latents",
    RunFigure(
        lambda i: plot_latents(i.run.program, i.x, i.labels, i.out_dir / "latents.png", **i.test),
        _missing_methods("embed"),
    ),
    help="the code of the test images, by class (t-SNE beyond 2-D)",
)
RUN_FIGURES.register(
    "curves",
    RunFigure(
        lambda i: plot_curves(i.run.metrics, i.out_dir / "curves.png"),
        lambda run: None if run.metrics else "the run has no metrics rows",
    ),
    help="the learning curves",
)
RUN_FIGURES.register(
    "analogies",
    RunFigure(
        lambda i: plot_analogies(i.run.program, i.x, i.run.dataset.image_shape, i.out_dir / "analogies.png"),
        _labels_shape_samples,
    ),
    help="style and class apart (M2; Kingma et al. 2014)",
)
RUN_FIGURES.register(
    "manifold", RunFigure(_manifold, _two_dimensional), help="the decoder over a grid of a 2-D code (paper Fig. 4)"
)


def write_figures(
    run: Run,
    out_dir: str | Path,
    num_points: int = 2000,
    names: Sequence[str] | None = None,
    skipped: Callable[[str, str], None] | None = None,
    *,
    progress: bool = False,
) -> list[Path]:
    """The figures ``names`` (all that the program has what they need for, by default) of a
    :class:`~pyro_vae.training.build.Run` into ``out_dir``; the paths written. A figure the
    program lacks something for, or that fails to draw, is reported to ``skipped(name, reason)``
    (one line) and left out; a figure named explicitly that the program lacks something for is
    refused (``ValueError``), as is a run whose kind has no figures (a graph run:
    :class:`~pyro_vae.training.kinds.RunKind`), and a folder that cannot be written raises its ``OSError``. With
    ``progress``, a tqdm bar on stderr counts the figures and names the one being drawn (the
    t-SNE of the latents figure, beyond a 2-D code, is the slow one)."""
    run_kind(run.config).refuse("figures")
    for name in names or ():
        RUN_FIGURES.check(name)
        reason = RUN_FIGURES[name].lacks(run)
        if reason is not None:
            raise ValueError(f"the figure {name!r} cannot be drawn for this run: {reason}")
    out_dir = Path(out_dir)
    vae, data = run.program, run.dataset
    vae.eval()
    device = next(vae.parameters(), torch.zeros(())).device
    labels = None if data.test_labels is None else data.test_labels[:num_points].to(device)
    inputs = FigureInputs(
        run, out_dir, data.test[:num_points].to(device), labels, *label_context(vae, data, labels, 100, device)
    )
    paths = []
    bar = tqdm(list(names or RUN_FIGURES.names()), unit="figure", disable=not progress, leave=False)
    for name in bar:
        bar.set_description(f"figure {name}")
        reason = RUN_FIGURES[name].lacks(run)
        if reason is None:
            try:
                paths.append(RUN_FIGURES[name].draw(inputs))
                continue
            except OSError:  # the folder cannot be written (read-only, full): that is the user's to know
                raise
            except Exception as err:  # noqa: BLE001  a picture the program cannot give fails nothing; reported
                reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if skipped is not None:
            skipped(name, reason)
    return paths
