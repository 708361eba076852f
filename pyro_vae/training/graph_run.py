"""Runs of graph models (Kipf & Welling 2016): the link split, the one full-graph batch, link metrics.

A graph model (``data_kind = "graph"``, :mod:`pyro_vae.models.vgae`) trains on a
graph data set (:mod:`pyro_vae.data.graphs`) in the one training loop
(:mod:`pyro_vae.training.loop`, through the ``"graph"`` kind of
:mod:`pyro_vae.training.kinds`), as full-batch SVI as in the paper: each epoch is one
step on the whole training graph, whose pair set and weights are
:func:`~pyro_vae.models.vgae.paper_pairs`, so the loss is the paper's. The link
split is :func:`~pyro_vae.data.graphs.link_split` with ``config.split_seed``; the
seed ``config.seed`` sets the initialization and the sampled z. A metrics row per
epoch holds the loss (the negative ELBO), validation AUC and AP and times.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pyro_vae.data.graphs import LinkSplit, link_split, load_graph
from pyro_vae.files import atomic_write_json
from pyro_vae.inference import make_estimator
from pyro_vae.inference.link_prediction import link_metrics
from pyro_vae.models import DataSpec, build_model
from pyro_vae.models.vgae import Pairs, paper_pairs
from pyro_vae.training.build import Run
from pyro_vae.training.config import TrainConfig


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
        device = next(self.program.parameters()).device
        pairs = paper_pairs(split.train_edge_index, split.graph.num_nodes)
        assert pairs.target is not None and pairs.weight is not None  # paper_pairs sets both (for the type checker)
        return {
            "x": split.graph.x.to(device),
            "edge_index": split.train_edge_index.to(device),
            "pairs": Pairs(pairs.index, pairs.target.to(device), pairs.weight.to(device), pairs.scale),
        }

    def embed(self) -> torch.Tensor:
        """Posterior means mu of every node, from the training graph."""
        device = next(self.program.parameters()).device
        return self.program.embed(self.dataset.graph.x.to(device), self.dataset.train_edge_index.to(device)).cpu()

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


def graph_report(run: GraphRun, run_dir: str | Path) -> tuple[dict, Path]:
    """Test AUC/AP of a run with its epoch and training time, and the file of ``run_dir`` for them
    (``test-epochNNNN.json``)."""
    last = run.metrics[-1] if run.metrics else {"epoch": 0, "wall_seconds": 0.0}
    report = {**run.test_metrics(), "epoch": last["epoch"], "train_wall_seconds": last["wall_seconds"]}
    return report, Path(run_dir) / f"test-epoch{report['epoch']:04d}.json"


def evaluate_graph_run(run: GraphRun, run_dir: str | Path) -> dict:
    """Test AUC/AP of a run (:func:`graph_report`), written to ``run_dir/test-epochNNNN.json`` and returned."""
    report, path = graph_report(run, run_dir)
    atomic_write_json(path, report)
    return report
