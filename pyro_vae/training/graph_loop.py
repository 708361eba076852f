"""The training loop of graph models (Kipf & Welling 2016): one full-graph step per epoch.

A graph model (``data_kind = "graph"``, :mod:`pyro_vae.models.vgae`) trains on a
graph data set (:mod:`pyro_vae.data.graphs`) through the same run machinery as
every other model (:mod:`pyro_vae.training.folder`): the run folder is locked,
stale temporary files are removed, a resumed run takes every setting from its
checkpoint, snapshots (``keep_every``) are repaired, and each epoch's
``metrics.csv`` and ``checkpoint.pt`` are written atomically.

Training is full-batch SVI as in the paper: each epoch is one step of the
algorithm ``config.algorithm`` (``aevb``: the estimator's ELBO, the optimizer
``config.optimizer``) on the whole training graph, whose pair set and weights are
:func:`~pyro_vae.models.vgae.paper_pairs`, so the loss is the paper's. The link
split is :func:`~pyro_vae.data.graphs.link_split` with ``config.split_seed``; the
seed ``config.seed`` sets the initialization and the sampled z. A metrics row per
epoch holds the loss (the negative ELBO), validation AUC and AP and times. Torch's
global RNG is restored when training returns (the run's own RNG state is in its
checkpoint), and Pyro's param store is the algorithm's private scope.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pyro
import torch
from tqdm import tqdm

from pyro_vae.data.graphs import LinkSplit, link_split, load_graph
from pyro_vae.files import atomic_write_json
from pyro_vae.inference import ALGORITHMS, make_estimator
from pyro_vae.inference.link_prediction import link_metrics
from pyro_vae.models import DataSpec, build_model
from pyro_vae.models.vgae import Pairs, paper_pairs
from pyro_vae.training.build import Run
from pyro_vae.training.callbacks import check_callbacks, end_of_epoch, end_of_run
from pyro_vae.training.checkpoint import load_algorithm_state, load_module_state
from pyro_vae.training.config import TrainConfig
from pyro_vae.training.distributed import SINGLE, DistributedContext
from pyro_vae.training.folder import CHECKPOINT, diverged, open_run, write_config, write_epoch
from pyro_vae.training.process import process_settings


@dataclass
class GraphRun(Run):
    """A run of a graph model: ``dataset`` is the :class:`~pyro_vae.data.graphs.LinkSplit`,
    ``vae`` the graph model."""

    dataset: LinkSplit

    @property
    def split(self) -> LinkSplit:
        return self.dataset

    def batch(self) -> dict:
        """The one training batch: node features, training edges and the paper's pair set."""
        split = self.dataset
        device = next(self.vae.parameters()).device
        pairs = paper_pairs(split.train_edge_index, split.graph.num_nodes)
        return {
            "x": split.graph.x.to(device),
            "edge_index": split.train_edge_index.to(device),
            "pairs": Pairs(pairs.index, pairs.target.to(device), pairs.weight.to(device), pairs.scale),
        }

    def embed(self) -> torch.Tensor:
        """Posterior means mu of every node, from the training graph."""
        device = next(self.vae.parameters()).device
        return self.vae.embed(self.dataset.graph.x.to(device), self.dataset.train_edge_index.to(device)).cpu()

    def val_metrics(self) -> dict[str, float]:
        """Validation AUC and AP (fractions) of the posterior means."""
        return link_metrics(self.embed(), self.dataset.val_pos, self.dataset.val_neg)

    def test_metrics(self) -> dict[str, float]:
        """Test AUC and AP (fractions) of the posterior means."""
        return link_metrics(self.embed(), self.dataset.test_pos, self.dataset.test_neg)


def build_graph_run(config: TrainConfig, data_dir: str | Path | None = None, device: str = "cpu") -> GraphRun:
    """Load the graph, split its links (``config.split_seed``), seed torch's RNG with
    ``config.seed`` and build the graph model and its estimator on ``device``."""
    split = link_split(load_graph(config.dataset, data_dir), config.split_seed)
    torch.manual_seed(config.seed)
    spec = DataSpec((split.graph.num_features,))
    program = build_model(config.model, spec, z_dim=config.z_dim, hidden=config.hidden, **config.model_options)
    program.to(device)
    estimator = make_estimator(config.estimator, program, config.num_particles, config.estimator_options)
    estimator.modules.to(device)
    return GraphRun(config, split, program, estimator)


def train_graph(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    keep_every: int = 0,
    distributed: DistributedContext = SINGLE,
    on_eval: Callable[[Run], dict] | None = None,
    validate_every_step: bool = False,
    jit: bool | None = None,
    callbacks: Sequence[object] = (),
    allow_process_change: bool = False,
) -> GraphRun:
    """Train (or, with ``resume=True``, continue) the graph model run in ``run_dir`` up to
    ``config.epochs``, under the rules of :func:`~pyro_vae.training.folder.open_run`.

    The keywords are :func:`~pyro_vae.training.loop.train_minibatches`'; a graph is one
    datum, so several processes (``distributed``) and ``jit`` are refused. A NaN or
    infinite loss raises :class:`~pyro_vae.training.folder.TrainingDiverged` and leaves
    the checkpoint of the last saved epoch intact. ``on_eval(run)`` adds columns to each row.
    A resume on a process of other rounding settings (:mod:`pyro_vae.training.process`) is
    refused unless ``allow_process_change``.
    """
    if keep_every < 0:
        raise ValueError(f"keep_every must be >= 0, got {keep_every}")
    check_callbacks(callbacks)
    if distributed.active:
        raise ValueError("a graph model trains on one process: a graph is one datum, not split over processes")
    if jit:
        raise ValueError("--jit compiles minibatch ELBOs of fixed shape; graph models train without it")
    run_dir = Path(run_dir)
    process = process_settings(False, device)
    with (
        open_run(
            config,
            run_dir,
            resume=resume,
            keep_every=keep_every,
            map_location=device,
            generators=("torch",),
            process=process,
            allow_process_change=allow_process_change,
        ) as state,
        torch.random.fork_rng(devices=[torch.device(device)] if torch.device(device).type == "cuda" else []),
    ):
        run = build_graph_run(config, data_dir, device)
        algorithm = ALGORITHMS[config.algorithm](run.vae, run.estimator, config)
        start_epoch, wall = 0, 0.0
        if state is not None:
            path = run_dir / CHECKPOINT
            load_module_state(run.vae, state["model"], "model", path)
            load_module_state(run.estimator.modules, state["estimator"], "estimator", path)
            load_algorithm_state(algorithm, state["optimizer"], path)
            torch.set_rng_state(state["rng"]["torch"].cpu())
            start_epoch, run.metrics, wall = state["epoch"], state["metrics"], state["wall_seconds"]
        write_config(config, run_dir)
        _fit(
            run,
            algorithm,
            run_dir,
            start_epoch,
            wall,
            progress,
            keep_every,
            validate_every_step,
            on_eval,
            callbacks,
            process,
        )
    end_of_run(callbacks, run, config.epochs)
    return run


def _fit(
    run: GraphRun,
    algorithm,
    run_dir: Path,
    start_epoch: int,
    wall: float,
    progress: bool,
    keep_every: int,
    validate_every_step: bool,
    on_eval: Callable[[Run], dict] | None,
    callbacks: Sequence[object],
    process: dict,
) -> None:
    """One full-graph step per epoch from ``start_epoch`` to ``config.epochs``, a metrics row
    and a checkpoint after each (recording the ``process`` settings), then the callbacks."""
    config = run.config
    batch = run.batch()
    wall_start = time.perf_counter() - wall
    bar = tqdm(range(start_epoch + 1, config.epochs + 1), disable=not progress, leave=False, desc=run_dir.name)
    for epoch in bar:
        start = time.perf_counter()
        # The inputs were checked once (paper_pairs, check_graph); Pyro's per-step support
        # checks of the N^2 observed A_ij would cost ~15% of a step.
        with pyro.validation_enabled(validate_every_step):
            loss = algorithm.step(batch, 1)
        if not math.isfinite(loss):
            raise diverged(loss, f"epoch {epoch}", epoch - 1, run_dir, config)
        algorithm.end_epoch()
        train_seconds = time.perf_counter() - start
        val = run.val_metrics()
        row = {"epoch": epoch, "loss": loss, "val_auc": val["auc"], "val_ap": val["ap"], "train_seconds": train_seconds}
        if on_eval is not None:
            row.update(on_eval(run))
        row["wall_seconds"] = time.perf_counter() - wall_start
        run.metrics.append(row)
        bar.set_postfix(loss=f"{loss:.4f}", val_auc=f"{val['auc']:.3f}")
        checkpoint = {
            "config": asdict(config),
            "epoch": epoch,
            "model": run.vae.state_dict(),
            "estimator": run.estimator.modules.state_dict(),
            "optimizer": algorithm.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "metrics": run.metrics,
            "wall_seconds": row["wall_seconds"],
            "process": process,
        }
        write_epoch(run_dir, run.metrics, checkpoint, keep_every)
        end_of_epoch(callbacks, run, [row], epoch)


def evaluate_graph_run(run: GraphRun, run_dir: str | Path) -> dict:
    """Test AUC/AP of a run, written to ``run_dir/test-epochNNNN.json`` and returned."""
    last = run.metrics[-1] if run.metrics else {"epoch": 0, "wall_seconds": 0.0}
    report = {**run.test_metrics(), "epoch": last["epoch"], "train_wall_seconds": last["wall_seconds"]}
    atomic_write_json(Path(run_dir) / f"test-epoch{report['epoch']:04d}.json", report)
    return report
