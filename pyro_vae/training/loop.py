"""Training: SVI on minibatches, with per-epoch test ELBO, metrics and resumable checkpoints.

``config.algorithm`` picks the update: ``aevb`` (SVI with ``config.estimator``,
the default), or the paper's baselines ``wake-sleep`` and ``rws``
(:mod:`pyro_vae.inference.wake_sleep`) and ``mcem`` (:mod:`pyro_vae.inference.mcem`); everything else (data, loop, metrics,
checkpoints) is shared.

One call of :func:`train` runs (or resumes) a run directory holding

* ``config.json``: the :class:`TrainConfig`;
* ``metrics.csv``: one row per epoch (samples seen, learning rate, train and test ELBO per datum, time);
* ``checkpoint.pt``: model, optimizer, scheduler and RNG state after the last finished
  epoch, written atomically, from which ``resume=True`` continues exactly as
  if the run had not stopped.

The minibatch ELBO is scaled by N/M (``total_size`` of the data plate), so the
loss estimates the negative ELBO of the whole training set, as in the paper's
Algorithm 1; ``weight_decay=1`` is then exactly a N(0, I) prior on the weights.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pyro
import pyro.optim
import torch
from pyro.infer import SVI
from tqdm import tqdm

from pyro_vae.training.checkpoint import (
    load_checkpoint, load_module_state, restore_state, save_checkpoint, verify_checkpoint,
)
from pyro_vae.training.run_dir import (
    atomic_copy, atomic_write_json, atomic_write_text, clean_stale_temp_files, lock_run_dir,
    repair_snapshots, snapshot_path,
)
from pyro_vae.validation import check_model_fits, check_train_config
from pyro_vae.data import Dataset, load_dataset
from pyro_vae.inference.estimators import ESTIMATORS, Estimator, make_estimator
from pyro_vae.inference.evaluate import evaluate
from pyro_vae.models.likelihoods import LIKELIHOODS, Gaussian
from pyro_vae.inference.lr_schedules import LR_SCHEDULES
from pyro_vae.inference.mcem import MCEMUpdater
from pyro_vae.models.vae import VAE
from pyro_vae.inference.wake_sleep import TORCH_OPTIMIZERS, RWSUpdater, WakeSleepUpdater

OPTIMIZERS = TORCH_OPTIMIZERS  # by name; SVI wraps the class in pyro.optim.PyroOptim
ALGORITHMS = ("aevb", "wake-sleep", "rws", "mcem")
PRESETS: dict[str, dict] = {
    # Kingma & Welling (2013), Section 5 / Appendix C: MNIST.
    "paper": dict(
        hidden=(500,), z_dim=20, optimizer="adagrad", lr=0.02, init_std=0.01,
        weight_decay=1.0, batch_size=100, num_particles=1,
    ),
    # Burda et al. (2016), single stochastic layer: 784-200-200-50, Adam.
    "iwae": dict(hidden=(200, 200), z_dim=50, optimizer="adam", lr=1e-3, batch_size=100),
}

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
CONFIG = "config.json"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (not where it runs)."""

    dataset: str = "mnist"
    z_dim: int = 20
    hidden: tuple[int, ...] = (500,)
    activation: str = "tanh"
    likelihood: str | None = None  # None: the data set's own
    init_std: float | None = None
    estimator: str = "reparam"
    num_particles: int = 1
    optimizer: str = "adam"
    lr: float = 1e-3
    lr_schedule: str = "constant"  # a name in pyro_vae.inference.lr_schedules.LR_SCHEDULES
    weight_decay: float = 0.0
    batch_size: int = 100
    epochs: int = 10
    seed: int = 0
    eval_samples: int = 1
    algorithm: str = "aevb"  # or wake-sleep, rws (pyro_vae.inference.wake_sleep), mcem (pyro_vae.inference.mcem)
    num_train: int | None = None  # train on the first num_train points only

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; expected one of {list(ALGORITHMS)}")
        if self.algorithm == "rws" and self.num_particles < 2:
            raise ValueError(f"rws needs num_particles >= 2 (self-normalized weights), got {self.num_particles}")
        if self.num_train is not None and self.num_train < self.batch_size:
            raise ValueError(f"num_train={self.num_train} is smaller than batch_size={self.batch_size}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {self.estimator!r}; expected one of {list(ESTIMATORS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {sorted(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; expected one of {sorted(LR_SCHEDULES)}")
        if self.likelihood is not None and self.likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {self.likelihood!r}; expected one of {sorted(LIKELIHOODS)}")
        for name in ("z_dim", "num_particles", "batch_size", "epochs", "eval_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        check_train_config(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config entries {sorted(unknown)}")
        return cls(**d)


@dataclass
class Run:
    """A trained (or training) VAE with its data, estimator and history."""

    config: TrainConfig
    dataset: Dataset
    vae: VAE
    estimator: Estimator
    metrics: list[dict] = field(default_factory=list)


def build_vae(config: TrainConfig, dataset: Dataset) -> VAE:
    """The VAE a config describes, shaped for ``dataset``.

    A Gaussian decoder squashes its means into (0, 1) with a sigmoid, like the
    paper's Frey Face decoder (all bundled data sets lie in [0, 1]).
    """
    name = config.likelihood or dataset.likelihood
    likelihood = Gaussian(dataset.x_shape, squash_mean=True) if name == "gaussian" else name
    return VAE(
        dataset.x_shape,
        z_dim=config.z_dim,
        hidden=config.hidden,
        activation=config.activation,
        likelihood=likelihood,
        init_std=config.init_std,
    )


def build_run(config: TrainConfig, data_dir: str | None = None, device: str = "cpu") -> Run:
    """Seed every RNG, load the data, and build the VAE and estimator on ``device``.

    Clears Pyro's global param store: the run's modules own their parameters.
    """
    pyro.clear_param_store()
    pyro.set_rng_seed(config.seed)
    dataset = load_dataset(config.dataset, data_dir)
    if config.num_train is not None:
        if config.num_train > len(dataset.train):
            raise ValueError(f"num_train={config.num_train} exceeds the {len(dataset.train)} training points of {dataset.name}")
        labels = None if dataset.train_labels is None else dataset.train_labels[: config.num_train]
        dataset = dataclasses.replace(dataset, train=dataset.train[: config.num_train], train_labels=labels)
    check_model_fits(config, dataset.x_shape, device)
    vae = build_vae(config, dataset).to(device)
    estimator = make_estimator(config.estimator, vae, config.num_particles)
    estimator.modules.to(device)
    return Run(config, dataset, vae, estimator)


class SVIUpdater:
    """AEVB: ``SVI(vae.model, estimator.guide, optimizer, estimator.elbo)``; with a
    learning-rate schedule the optimizer is Pyro's :class:`~pyro.optim.LambdaLR`."""

    def __init__(self, run: Run) -> None:
        config = run.config
        optim_args = {"lr": config.lr, "weight_decay": config.weight_decay}
        if config.lr_schedule == "constant":  # plain PyroOptim: its checkpoints predate schedules
            self.optimizer = pyro.optim.PyroOptim(OPTIMIZERS[config.optimizer], optim_args)
        else:
            self.optimizer = pyro.optim.LambdaLR(
                {"optimizer": OPTIMIZERS[config.optimizer], "optim_args": optim_args,
                 "lr_lambda": LR_SCHEDULES[config.lr_schedule]}
            )
        self.svi = SVI(run.vae.model, run.estimator.guide, self.optimizer, run.estimator.elbo)

    def step(self, x: torch.Tensor, total_size: int) -> float:
        return self.svi.step(x, total_size=total_size)

    def end_epoch(self) -> None:
        if isinstance(self.optimizer, pyro.optim.PyroLRScheduler):
            self.optimizer.step()

    def state_dict(self) -> dict:
        return self.optimizer.get_state()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.set_state(state)


UPDATERS = {"aevb": SVIUpdater, "wake-sleep": WakeSleepUpdater, "rws": RWSUpdater, "mcem": MCEMUpdater}


def _free_params(run: Run) -> dict[str, torch.Tensor]:
    # Param-store entries not owned by a module, e.g. TraceGraph_ELBO's decaying averages.
    owned = {id(p) for p in itertools.chain(run.vae.parameters(), run.estimator.modules.parameters())}
    return {
        name: value.detach().clone()
        for name, value in pyro.get_param_store().named_parameters()
        if id(value) not in owned
    }


def _rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    # Generator states must be CPU byte tensors, for the CUDA generators too;
    # a checkpoint loaded with ``map_location="cuda"`` has moved them.
    torch.set_rng_state(state["torch"].cpu())
    generator.set_state(state["data"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Write ``rows`` as CSV, columns the union of their keys in first-seen order,
    atomically (a temporary file, then a rename); creates the folder."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, text.getvalue())


def train_or_resume(config: TrainConfig, run_dir: str | Path, **kwargs) -> Run:
    """:func:`train`, resuming when ``run_dir`` already holds a checkpoint: studies that
    rerun call it to continue (or reuse) their runs instead of starting them again; a run that
    has already gone past ``config.epochs`` is reused as it is."""
    path = Path(run_dir) / CHECKPOINT
    if path.exists():
        config = dataclasses.replace(config, epochs=max(config.epochs, load_checkpoint(path)["epoch"]))
    return train(config, run_dir, resume=path.exists(), **kwargs)


def load_run(
    run_dir: str | Path,
    data_dir: str | None = None,
    device: str = "cpu",
    checkpoint: str | Path | None = None,
) -> Run:
    """Rebuild the VAE of a run directory from its last (or the given) checkpoint."""
    path = checkpoint or Path(run_dir) / CHECKPOINT
    state = load_checkpoint(path, map_location=device)
    run = build_run(TrainConfig.from_dict(state["config"]), data_dir, device)
    load_module_state(run.vae, state["model"], "model", path)
    load_module_state(run.estimator.modules, state["estimator"], "estimator", path)
    run.metrics = state["metrics"]
    return run


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    data_dir: str | None = None,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    keep_every: int = 0,
) -> Run:
    """Train (or, with ``resume=True``, continue) the run in ``run_dir`` up to ``config.epochs``.

    On resume the checkpoint's config must match ``config`` except for ``epochs``,
    which may not be fewer than the epochs done. A NaN or infinite loss raises
    :class:`TrainingDiverged` and leaves the checkpoint of the last finished epoch
    untouched. With ``keep_every=n`` a copy of every n-th epoch's checkpoint is
    kept in ``run_dir/checkpoints/``. The run folder is locked for the whole call
    (:func:`~pyro_vae.training.run_dir.lock_run_dir`): a second trainer gets
    :class:`~pyro_vae.training.run_dir.RunDirBusyError`.
    """
    if keep_every < 0:
        raise ValueError(f"keep_every must be >= 0, got {keep_every}")
    with lock_run_dir(run_dir):
        return _train_locked(
            config, Path(run_dir), data_dir=data_dir, device=device, resume=resume,
            progress=progress, keep_every=keep_every,
        )


def _train_locked(
    config: TrainConfig,
    run_dir: Path,
    *,
    data_dir: str | None,
    device: str,
    resume: bool,
    progress: bool,
    keep_every: int,
) -> Run:
    # train()'s body, run while holding the run folder's lock.
    clean_stale_temp_files(run_dir)
    checkpoint_path = run_dir / CHECKPOINT
    state = load_checkpoint(checkpoint_path, map_location=device) if resume else None
    if state is not None:
        saved = TrainConfig.from_dict({**state["config"], "epochs": config.epochs})
        if saved != config:
            diff = {k: (v, getattr(config, k)) for k, v in asdict(saved).items() if getattr(config, k) != v}
            raise ValueError(f"cannot resume {run_dir}: config differs from the checkpoint's {diff}")
        if state["epoch"] > config.epochs:
            raise ValueError(
                f"cannot resume {run_dir} to {config.epochs} epochs: it has already run {state['epoch']}; "
                f"ask for at least {state['epoch']} epochs"
            )
        repair_snapshots(run_dir, checkpoint_path, state["epoch"], keep_every, verify_checkpoint)
    elif checkpoint_path.exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) or use a new directory")

    run = build_run(config, data_dir, device)
    vae, estimator, dataset = run.vae, run.estimator, run.dataset
    updater = UPDATERS[config.algorithm](run)
    generator = torch.Generator().manual_seed(config.seed)
    start_epoch, wall = 0, 0.0
    if state is not None:
        load_module_state(vae, state["model"], "model", checkpoint_path)
        load_module_state(estimator.modules, state["estimator"], "estimator", checkpoint_path)
        for name, value in state["free_params"].items():
            pyro.param(name, value)
        restore_state(updater.load_state_dict, state["optimizer"], "optimizer", checkpoint_path)
        _set_rng_state(state["rng"], generator)
        start_epoch, run.metrics = state["epoch"], state["metrics"]
        wall = run.metrics[-1]["wall_seconds"] if run.metrics else 0.0

    atomic_write_json(run_dir / CONFIG, asdict(config))
    n = len(dataset.train)
    for epoch in range(start_epoch + 1, config.epochs + 1):
        start = time.perf_counter()
        batches = dataset.train_batches(config.batch_size, generator, device)
        total_loss = 0.0
        bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False)
        for step, x in enumerate(bar, 1):
            loss = updater.step(x, n)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"the loss became {loss} at epoch {epoch}, step {step}; training stopped. "
                    f"The checkpoint of epoch {epoch - 1} ({checkpoint_path}) is intact; "
                    "lower --lr and resume, or start again"
                )
            total_loss += loss
            if step % 50 == 0:
                bar.set_postfix(elbo=f"{-total_loss / (step * n):.2f}")
        updater.end_epoch()
        train_seconds = time.perf_counter() - start
        test = evaluate(vae, dataset.test_batches(1000, device), num_samples=config.eval_samples)
        wall += time.perf_counter() - start
        run.metrics.append(
            {
                "epoch": epoch,
                "samples_seen": epoch * len(batches) * config.batch_size,
                "lr": config.lr * LR_SCHEDULES[config.lr_schedule](epoch - 1),
                "train_elbo": -total_loss / (len(batches) * n),
                "test_elbo": test["elbo"],
                "train_seconds": train_seconds,
                "wall_seconds": wall,
            }
        )
        write_csv(run.metrics, run_dir / METRICS)
        save_checkpoint(
            {
                "config": asdict(config),
                "epoch": epoch,
                "model": vae.state_dict(),
                "estimator": estimator.modules.state_dict(),
                "free_params": _free_params(run),
                "optimizer": updater.state_dict(),
                "rng": _rng_state(generator),
                "metrics": run.metrics,
            },
            checkpoint_path,
        )
        if keep_every and epoch % keep_every == 0:
            atomic_copy(checkpoint_path, snapshot_path(run_dir, epoch))
        if progress:
            row = run.metrics[-1]
            tqdm.write(
                f"epoch {epoch}: train ELBO {row['train_elbo']:.2f}, "
                f"test ELBO {row['test_elbo']:.2f} nats ({train_seconds:.1f} s)"
            )
    return run
