"""Reproductions of the AEVB paper's figures (Kingma & Welling 2013, Section 5), on a budget.

Each ``figN(out_dir, budget)`` trains what it needs under ``out_dir/runs/``
(one resumable run directory per configuration, named by its settings and a
hash of its config, so figures share runs and a second call resumes or reuses
them), writes ``out_dir/figN.csv`` and PNG figures, and returns the CSV rows;
fig2 and fig3 also write ``figN.md``, each run's last row (how far it has got).
With ``progress=True``, a tqdm bar on stderr counts the runs as they finish.

Paper settings (Section 5 and Appendix C): one hidden tanh layer (500 units for
MNIST, 200 for Frey Face), weights ~ N(0, 0.01^2), Adagrad, minibatches of
M = 100, L = 1 sample per datum, and weight decay 1 on the N/M-scaled bound
(a N(0, I) prior on the weights). The objective maximized by AEVB is the ELBO

    L(theta, phi; x) = E_{q_phi(z|x)}[log p_theta(x|z)] - KL(q_phi(z|x) || p(z)),

estimated with one reparameterized sample z = mu(x) + sigma(x) * eps. The
baseline is wake-sleep (:mod:`pyro_vae.inference.wake_sleep`) with the same networks.

``fig2``
    train and test ELBO per datum against training samples evaluated (log
    axis), AEVB vs wake-sleep, MNIST with Nz in {3, 5, 10, 20, 200} and Frey
    Face (Gaussian decoder with sigmoid means) with Nz in {2, 5, 10, 20}.
``fig3``
    the importance-sampled marginal likelihood
    log p(x) ~ log (1/K) sum_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x), of training
    and test images against training samples evaluated, Nz = 3, 100 hidden
    units, training sets of 1000 and 50000 MNIST images, AEVB vs wake-sleep and
    Monte Carlo EM with an HMC E-step (:mod:`pyro_vae.inference.mcem`). The proposal
    is each model's own q, so the estimate is a stochastic lower bound (the IWAE bound).
``fig4``
    the learned 2-D manifolds: decoder means at z = Phi^-1(u) on a grid of u
    in the unit square, for MNIST and Frey Face models with Nz = 2.
``fig5``
    random samples (decoder means at z ~ p(z)) of MNIST models with Nz in {2, 5, 10, 20}.

Budgets (:data:`~pyro_vae.experiments.paper_settings.BUDGETS`, with the paper's settings in
:mod:`~pyro_vae.experiments.paper_settings`) count training samples per run: ``small`` finishes
each figure in minutes on two CPU cores (fewer latent sizes, 1.8e5 MNIST
samples), ``medium`` runs every setting of the paper for 1e7 samples (two
decades of its axis, hours on a CPU), ``full`` for the paper's 1e8 (a GPU job),
``tiny`` is for smoke tests. Learning curves are evaluated at points evenly spaced
on the log axis (``evals_per_decade``) with the same evaluation noise at every
point (:class:`~pyro_vae.training.metrics.EvalSchedule`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial as bind
from pathlib import Path

import pyro
import torch

from pyro_vae.experiments.jobs import run_jobs
from pyro_vae.experiments.paper_settings import (
    FIG2_DATASETS,
    Budget,
    budget_config,
    get_budget,
    run_name,
    select_settings,
)
from pyro_vae.files import atomic_write_text, write_csv
from pyro_vae.inference.evaluate import evaluate
from pyro_vae.plots import PAPER_XLIM, curve_grid_figure, plot_manifold, plot_samples
from pyro_vae.training import Run, TrainConfig, train_or_resume
from pyro_vae.training.checkpoint import load_checkpoint
from pyro_vae.training.folder import CHECKPOINT

#: The paper's figures that :func:`reproduce` reproduces, by name.
FIGURES = ("fig2", "fig3", "fig4", "fig5")


def train_named(
    config: TrainConfig,
    out_dir: Path,
    data_dir: str | Path | None,
    device: str,
    on_eval: Callable[[Run], dict] | None = None,
) -> tuple[Run, Path]:
    """Train ``config`` in ``out_dir/runs/<run_name>``, resuming (or reusing) a checkpoint there."""
    run_dir = out_dir / "runs" / run_name(config)
    run = train_or_resume(config, run_dir, data_dir=data_dir, device=device, progress=False, on_eval=on_eval)
    return run, run_dir


def run_metrics(
    config: TrainConfig,
    out_dir: Path,
    data_dir: str | Path | None,
    device: str,
    on_eval: Callable[[Run], dict] | None = None,
    partial: bool = False,
) -> list[dict]:
    """The metrics rows of ``config``'s run: trained (or resumed) to the end, or with ``partial``
    those of its last checkpoint as they stand (none for a run not started), training nothing."""
    if not partial:
        return train_named(config, out_dir, data_dir, device, on_eval)[0].metrics
    path = out_dir / "runs" / run_name(config) / CHECKPOINT
    return load_checkpoint(path)["metrics"] if path.exists() else []


def runs_metrics(
    configs: Sequence[TrainConfig],
    out_dir: Path,
    data_dir: str | Path | None,
    device: str,
    on_eval: Callable[[Run], dict] | None = None,
    partial: bool = False,
    jobs: int = 1,
    progress: bool = False,
) -> list[list[dict]]:
    """:func:`run_metrics` of each config, training ``jobs`` runs at once in worker processes
    (:func:`~pyro_vae.experiments.jobs.run_jobs`; ``on_eval`` must then pickle); ``progress``:
    a tqdm bar on stderr over the runs."""
    job = bind(run_metrics, out_dir=out_dir, data_dir=data_dir, device=device, on_eval=on_eval, partial=partial)
    return run_jobs(job, configs, 1 if partial else jobs, progress=progress)


# --- tables ---------------------------------------------------------------------------
def last_rows_table(rows: list[dict], keys: Sequence[str], metrics: Sequence[str]) -> str:
    """Markdown table of each run's last metrics row (runs told apart by ``keys``): where it
    has got to (training samples), its ``metrics`` and its wall time."""
    last: dict[tuple, dict] = {}
    for row in rows:
        run = tuple(row[k] for k in keys)
        if run not in last or row["samples_seen"] > last[run]["samples_seen"]:
            last[run] = row
    lines = [
        "| " + " | ".join([*keys, "training samples", *metrics, "wall time (min)"]) + " |",
        "|" + " --- |" * (len(keys) + len(metrics) + 2),
    ]
    for run, row in last.items():
        values = [
            *map(str, run),
            f"{row['samples_seen']:.2e}",
            *(f"{row[m]:.2f}" for m in metrics),
            f"{row['wall_seconds'] / 60:.1f}",
        ]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


# --- Figure 2 -------------------------------------------------------------------------
def fig2(
    out_dir: str | Path = "runs/reproduce",
    budget: str | Budget = "small",
    data_dir: str | Path | None = None,
    device: str = "cpu",
    partial: bool = False,
    jobs: int = 1,
    progress: bool = False,
) -> list[dict]:
    """Figure 2: train and test ELBO vs training samples, AEVB vs wake-sleep.

    Writes ``fig2.csv`` (one row per algorithm, data set, Nz and metrics row of the
    run, with the columns of ``metrics.csv``) and ``fig2.png`` (top row MNIST, bottom
    row Frey Face). The train ELBO is the mean minibatch bound since the previous row,
    the test ELBO the bound of the test set with ``budget.metrics_num_samples`` z per image.
    """
    out_dir, b = Path(out_dir), get_budget(budget)
    # Frey Face first: its runs are the quicker ones
    settings = [("frey", z, b.frey_hidden, b.frey_samples) for z in b.frey_z_dims]
    settings += [("mnist", z, b.mnist_hidden, b.mnist_samples) for z in b.mnist_z_dims]
    runs = [
        (dataset, z_dim, algorithm, budget_config(b, dataset, z_dim, hidden, samples, data_dir, algorithm))
        for dataset, z_dim, hidden, samples in settings
        for algorithm in ("aevb", "wake-sleep")
    ]
    metrics = runs_metrics(
        [run[-1] for run in runs], out_dir, data_dir, device, partial=partial, jobs=jobs, progress=progress
    )
    rows = [
        {"dataset": dataset, "z_dim": z_dim, "algorithm": algorithm, **m}
        for (dataset, z_dim, algorithm, _), run_rows in zip(runs, metrics)
        for m in run_rows
    ]
    write_csv(rows, out_dir / "fig2.csv")
    atomic_write_text(
        out_dir / "fig2.md", last_rows_table(rows, ("dataset", "z_dim", "algorithm"), ("train_elbo", "test_elbo"))
    )
    panels = {}
    grid_rows = [(dataset, getattr(b, f"{dataset}_z_dims")) for dataset in FIG2_DATASETS]
    for r, (dataset, z_dims) in enumerate([row for row in grid_rows if row[1]]):  # a data set without sizes: no row
        for c, z_dim in enumerate(z_dims):
            mine = [row for row in rows if row["dataset"] == dataset and row["z_dim"] == z_dim]
            panels[r, c] = (mine, f"{'MNIST' if dataset == 'mnist' else 'Frey Face'}, $N_z$ = {z_dim}")
    series = {"train_elbo": ("train", "-"), "test_elbo": ("test", "--")}
    curve_grid_figure(
        panels, series, "ELBO (nats per datum)", out_dir / "fig2.png", PAPER_XLIM if b.paper_axes else None
    )
    return rows


# --- Figure 3 -------------------------------------------------------------------------
def _eval_points(run: Run, n: int, device: str) -> dict[str, torch.Tensor]:
    """The first ``n`` training images (binarized once, with a fixed seed, if the data are) and test images."""
    data = run.dataset
    x_train = data.train[:n]
    if data.binarize:
        x_train = torch.bernoulli(x_train, generator=torch.Generator().manual_seed(0))
    return {"train": x_train.to(device), "test": data.test[:n].to(device)}


def marginal_likelihood(run: Run, num_points: int, num_samples: int, device: str = "cpu") -> dict[str, float]:
    """Mean importance-sampled log p(x) (K = ``num_samples``, proposal q(z|x)) of ``num_points`` training and test images."""
    points = _eval_points(run, num_points, device)
    return {
        f"{split}_log_px": evaluate(
            run.program, x.split(100), num_samples=num_samples, chunk_size=min(num_samples, 500)
        ).log_px
        for split, x in points.items()
    }


def _log_px_columns(run: Run, num_points: int, num_samples: int, device: str) -> dict:
    """Figure 3's columns of a metrics row (an ``on_eval`` of :func:`~pyro_vae.training.loop.train`)."""
    return {
        "num_samples": num_samples,
        "num_points": num_points,
        **marginal_likelihood(run, num_points, num_samples, device),
    }


def fig3(
    out_dir: str | Path = "runs/reproduce",
    budget: str | Budget = "small",
    data_dir: str | Path | None = None,
    device: str = "cpu",
    partial: bool = False,
    jobs: int = 1,
    progress: bool = False,
) -> list[dict]:
    """Figure 3: importance-sampled log p(x) vs training samples, Nz = 3, N_train in {1000, 50000}.

    Each run estimates log p(x) of ``budget.eval_points`` training and test images
    at every metrics row (``budget.evals_per_decade`` per decade, the same z at every
    row); ``num_train`` restricts the training set. Monte Carlo EM stops after
    ``budget.mcem_samples``, its curve ends there.
    Writes ``fig3.csv`` and ``fig3.png``.
    """
    out_dir, b = Path(out_dir), get_budget(budget)
    runs = [
        (
            num_train,
            algorithm,
            budget_config(
                b,
                "mnist",
                3,
                b.fig3_hidden,
                b.mcem_samples if algorithm == "mcem" else b.fig3_samples,
                data_dir,
                algorithm,
                num_train,
            ),
        )
        for num_train in b.fig3_num_train
        for algorithm in ("aevb", "wake-sleep", "mcem")
    ]
    log_px = bind(_log_px_columns, num_points=b.eval_points, num_samples=b.num_samples, device=device)
    metrics = runs_metrics([run[-1] for run in runs], out_dir, data_dir, device, log_px, partial, jobs, progress)
    rows = [
        {"num_train": num_train, "algorithm": algorithm, **m}
        for (num_train, algorithm, _), run_rows in zip(runs, metrics)
        for m in run_rows
    ]
    write_csv(rows, out_dir / "fig3.csv")
    atomic_write_text(
        out_dir / "fig3.md", last_rows_table(rows, ("num_train", "algorithm"), ("train_log_px", "test_log_px"))
    )
    panels = {
        (0, c): ([r for r in rows if r["num_train"] == n], f"MNIST, $N_{{train}}$ = {n}, $N_z$ = 3")
        for c, n in enumerate(b.fig3_num_train)
    }
    series = {"train_log_px": ("train", "-"), "test_log_px": ("test", "--")}
    curve_grid_figure(
        panels,
        series,
        f"log p(x), IS with K = {b.num_samples}",
        out_dir / "fig3.png",
        PAPER_XLIM if b.paper_axes else None,
    )
    return rows


# --- Figures 4 and 5 ------------------------------------------------------------------------
def fig4(
    out_dir: str | Path = "runs/reproduce",
    budget: str | Budget = "small",
    data_dir: str | Path | None = None,
    device: str = "cpu",
    jobs: int = 1,
    progress: bool = False,
) -> list[dict]:
    """Figure 4: learned 2-D manifolds of AEVB models (Nz = 2) of MNIST and Frey Face.

    Writes ``fig4-mnist.png``, ``fig4-frey.png`` and ``fig4.csv`` (final test ELBO of each model).
    """
    out_dir, b = Path(out_dir), get_budget(budget)
    configs = [
        budget_config(b, dataset, 2, hidden, samples, data_dir)
        for dataset, hidden, samples in (
            ("mnist", b.mnist_hidden, b.mnist_samples),
            ("frey", b.frey_hidden, b.frey_samples),
        )
    ]
    runs_metrics(configs, out_dir, data_dir, device, jobs=jobs, progress=progress)
    rows = []
    for config in configs:
        run, _ = train_named(config, out_dir, data_dir, device)  # trained above: this loads it
        path = plot_manifold(run.program.eval(), run.dataset.image_shape, out_dir / f"fig4-{config.dataset}.png")
        rows.append({"dataset": config.dataset, "z_dim": 2, **_final(run), "figure": path.name})
    write_csv(rows, out_dir / "fig4.csv")
    return rows


def fig5(
    out_dir: str | Path = "runs/reproduce",
    budget: str | Budget = "small",
    data_dir: str | Path | None = None,
    device: str = "cpu",
    jobs: int = 1,
    progress: bool = False,
) -> list[dict]:
    """Figure 5: 100 random samples (means of p(x|z), z ~ N(0, I)) of MNIST AEVB models per Nz.

    Writes ``fig5-z<Nz>.png`` and ``fig5.csv`` (final test ELBO of each model).
    """
    out_dir, b = Path(out_dir), get_budget(budget)
    configs = [budget_config(b, "mnist", z_dim, b.mnist_hidden, b.mnist_samples, data_dir) for z_dim in b.sample_z_dims]
    runs_metrics(configs, out_dir, data_dir, device, jobs=jobs, progress=progress)
    rows = []
    for z_dim, config in zip(b.sample_z_dims, configs):
        run, _ = train_named(config, out_dir, data_dir, device)  # trained above: this loads it
        pyro.set_rng_seed(z_dim)
        path = plot_samples(run.program.eval(), run.dataset.image_shape, out_dir / f"fig5-z{z_dim}.png")
        rows.append({"dataset": "mnist", "z_dim": z_dim, **_final(run), "figure": path.name})
    write_csv(rows, out_dir / "fig5.csv")
    return rows


def _final(run: Run) -> dict:
    last = run.metrics[-1]
    return {k: last[k] for k in ("epoch", "samples_seen", "train_elbo", "test_elbo")}


REPRODUCTIONS: dict[str, Callable[..., list[dict]]] = {"fig2": fig2, "fig3": fig3, "fig4": fig4, "fig5": fig5}
PARTIAL = ("fig2", "fig3")  # the figures --partial can draw from runs in progress


def reproduce(
    figure: str,
    out_dir: str | Path = "runs/reproduce",
    budget: str | Budget = "small",
    data_dir: str | Path | None = None,
    device: str = "cpu",
    partial: bool = False,
    jobs: int = 1,
    z_dims: Sequence[int] | None = None,
    datasets: Sequence[str] | None = None,
    *,
    progress: bool = False,
) -> list[dict]:
    """Run the reproduction of ``figure`` (one of :data:`FIGURES`), training ``jobs`` of its runs
    at once (:func:`~pyro_vae.experiments.jobs.run_jobs`); with ``partial``, draw the
    learning curves of fig2 or fig3 from their runs as far as they have gone (long budgets
    train for hours; their runs resume where they stopped); ``z_dims`` and ``datasets`` keep
    only those latent sizes and data sets of fig2 (:func:`select_settings`); ``progress``: a tqdm
    bar on stderr over the figure's runs."""
    if figure not in REPRODUCTIONS:
        raise ValueError(f"unknown figure {figure!r}; expected one of {list(FIGURES)}")
    budget = get_budget(budget)
    if z_dims is not None or datasets is not None:
        if figure != "fig2":
            raise ValueError(f"--z-dims and --datasets select fig2's settings; {figure} has no choice of them")
        budget = select_settings(budget, z_dims, datasets)
    if not partial:
        return REPRODUCTIONS[figure](out_dir, budget, data_dir, device, jobs=jobs, progress=progress)
    if figure not in PARTIAL:
        raise ValueError(f"--partial draws the learning curves {list(PARTIAL)} only, not {figure!r}")
    return REPRODUCTIONS[figure](out_dir, budget, data_dir, device, partial=True, progress=progress)
