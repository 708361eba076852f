"""The catalogue of the AEVB paper's settings (Kingma & Welling 2013, Section 5 and Appendix C):
the budgets of the reproductions (:data:`BUDGETS`), the paper's training configuration
(:func:`paper_config`, :func:`budget_config`) and each run's folder name (:func:`run_name`).
:mod:`pyro_vae.experiments.reproduce` runs and draws them."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path

from pyro_vae.data import load_dataset
from pyro_vae.training import PRESETS, TrainConfig
from pyro_vae.training.config import RENAMED_KEYS


@dataclass(frozen=True)
class Budget:
    """How much of each experiment runs: training samples per run, latent sizes, evaluation."""

    mnist_samples: int  # training samples per MNIST run of fig2, fig4, fig5 (rounded up to whole epochs)
    frey_samples: int  # per Frey Face run
    mnist_z_dims: tuple[int, ...]  # fig2
    frey_z_dims: tuple[int, ...]  # fig2
    sample_z_dims: tuple[int, ...]  # fig5
    fig3_num_train: tuple[int, ...]
    fig3_samples: int  # training samples per fig3 run of AEVB and wake-sleep
    mcem_samples: int  # per MCEM run: its HMC E-step costs ~100 decoder gradients per datum
    evals_per_decade: int  # metrics rows (and fig3's log p(x) estimates) per decade of samples
    metrics_num_samples: int  # z per test image of each row's test ELBO
    num_samples: int  # importance samples K of fig3
    eval_points: int  # training and test images whose log p(x) fig3 estimates
    paper_axes: bool = False  # draw the paper's x range, 10^5 to 10^8 training samples
    mnist_hidden: int = 500
    frey_hidden: int = 200
    fig3_hidden: int = 100


#: The budgets of the reproductions by name (``--budget``), from ``tiny`` (a smoke run) to the paper's.
BUDGETS: dict[str, Budget] = {
    "tiny": Budget(
        mnist_samples=60_000,
        frey_samples=3_400,
        mnist_z_dims=(3,),
        frey_z_dims=(2,),
        sample_z_dims=(2, 5),
        fig3_num_train=(1000,),
        fig3_samples=3_000,
        mcem_samples=2_000,
        evals_per_decade=2,
        metrics_num_samples=1,
        num_samples=5,
        eval_points=100,
        mnist_hidden=50,
        frey_hidden=50,
        fig3_hidden=20,
    ),
    "small": Budget(
        mnist_samples=180_000,
        frey_samples=51_000,
        mnist_z_dims=(3, 20),
        frey_z_dims=(2, 10),
        sample_z_dims=(2, 5, 10, 20),
        fig3_num_train=(1000, 50000),
        fig3_samples=150_000,
        mcem_samples=150_000,
        evals_per_decade=5,
        metrics_num_samples=1,
        num_samples=100,
        eval_points=500,
    ),
    # Two decades of the paper's axis (it goes to 1e8), every latent size of the paper.
    "medium": Budget(
        mnist_samples=10_000_000,
        frey_samples=10_000_000,
        mnist_z_dims=(3, 5, 10, 20, 200),
        frey_z_dims=(2, 5, 10, 20),
        sample_z_dims=(2, 5, 10, 20),
        fig3_num_train=(1000, 50000),
        fig3_samples=10_000_000,
        mcem_samples=1_000_000,
        evals_per_decade=10,
        metrics_num_samples=10,
        num_samples=200,
        eval_points=1000,
        paper_axes=True,
    ),
    "full": Budget(
        mnist_samples=100_000_000,
        frey_samples=100_000_000,
        mnist_z_dims=(3, 5, 10, 20, 200),
        frey_z_dims=(2, 5, 10, 20),
        sample_z_dims=(2, 5, 10, 20),
        fig3_num_train=(1000, 50000),
        fig3_samples=100_000_000,
        mcem_samples=10_000_000,
        evals_per_decade=10,
        metrics_num_samples=10,
        num_samples=1000,
        eval_points=1000,
        paper_axes=True,
    ),
}


def get_budget(budget: str | Budget) -> Budget:
    """A :class:`Budget` by name (one of :data:`BUDGETS`), or ``budget`` itself."""
    if isinstance(budget, Budget):
        return budget
    try:
        return BUDGETS[budget]
    except KeyError:
        raise ValueError(f"unknown budget {budget!r}; expected one of {sorted(BUDGETS)}") from None


#: The data sets of Figure 2, in the order of its panels.
FIG2_DATASETS = ("mnist", "frey")


def select_settings(
    budget: Budget, z_dims: Sequence[int] | None = None, datasets: Sequence[str] | None = None
) -> Budget:
    """``budget`` with Figure 2's settings cut down to the latent sizes ``z_dims`` (each one
    of the budget's MNIST or Frey Face sizes) and the data sets ``datasets`` (of
    :data:`FIG2_DATASETS`): the same runs, fewer of them, e.g. to train or draw the Nz = 200
    MNIST runs alone. A data set left with no size drops out of the figure."""
    offered = sorted({*budget.mnist_z_dims, *budget.frey_z_dims})
    if z_dims is not None and (not z_dims or set(z_dims) - set(offered)):
        raise ValueError(f"--z-dims {' '.join(map(str, z_dims))}: this budget's fig2 latent sizes are {offered}")
    if datasets is not None and (not datasets or set(datasets) - set(FIG2_DATASETS)):
        raise ValueError(f"--datasets {' '.join(datasets)}: fig2's data sets are {list(FIG2_DATASETS)}")
    keep_z = set(offered if z_dims is None else z_dims)
    keep_data = set(FIG2_DATASETS if datasets is None else datasets)
    return replace(
        budget,
        mnist_z_dims=tuple(z for z in budget.mnist_z_dims if z in keep_z and "mnist" in keep_data),
        frey_z_dims=tuple(z for z in budget.frey_z_dims if z in keep_z and "frey" in keep_data),
    )


def paper_config(dataset: str, z_dim: int, hidden: int, epochs: int, algorithm: str = "aevb", **changes) -> TrainConfig:
    """The paper's setting (the CLI's ``paper`` preset) for ``dataset``.

    Frey Face uses Adagrad with lr 0.01 (the paper searched {0.01, 0.02, 0.1})
    and the data set's Gaussian decoder.
    """
    values = {**PRESETS["paper"], "dataset": dataset, "z_dim": z_dim, "hidden": (hidden,), "epochs": epochs}
    if dataset == "frey":
        values["lr"] = 0.01
    values.update(changes)
    return TrainConfig(**values, algorithm=algorithm)


@cache
def _train_size(dataset: str, data_dir: str | Path | None) -> int:
    return len(load_dataset(dataset, data_dir).train)


def budget_config(
    b: Budget,
    dataset: str,
    z_dim: int,
    hidden: int,
    samples: int,
    data_dir: str | Path | None,
    algorithm: str = "aevb",
    num_train: int | None = None,
) -> TrainConfig:
    """:func:`paper_config` trained for ``samples`` training samples (rounded up to whole
    epochs of M = 100) with the budget's evaluation schedule."""
    n = num_train or _train_size(dataset, data_dir)
    per_epoch = (n // PRESETS["paper"]["batch_size"]) * PRESETS["paper"]["batch_size"]
    return paper_config(
        dataset,
        z_dim,
        hidden,
        math.ceil(samples / per_epoch),
        algorithm,
        num_train=num_train,
        evals_per_decade=b.evals_per_decade,
        metrics_num_samples=b.metrics_num_samples,
    )


def run_name(config: TrainConfig) -> str:
    """A readable, unique folder name: data set, algorithm, sizes and a hash of the settings
    that differ from :class:`TrainConfig`'s defaults (less epochs), so that a field added
    later with a default does not rename existing runs; a renamed field is hashed under its
    old name (:data:`~pyro_vae.training.config.RENAMED_KEYS`), for the same reason."""
    defaults, old_names = asdict(TrainConfig()), {new: old for old, new in RENAMED_KEYS.items()}
    settings = {old_names.get(k, k): v for k, v in asdict(config).items() if k != "epochs" and v != defaults[k]}
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    subset = f"-n{config.num_train}" if config.num_train else ""
    return f"{config.dataset}-{config.algorithm}-z{config.z_dim}-h{'x'.join(map(str, config.hidden or ()))}{subset}-{digest}"
