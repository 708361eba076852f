"""Link prediction with the (variational) graph autoencoder: train, resume, evaluate, tabulate.

One call of :func:`train_graph` runs (or resumes) a run folder holding, as the
VAE runs of :mod:`pyro_vae.training.loop`:

* ``config.json``: the :class:`GraphConfig`;
* ``metrics.csv``: one row per epoch (loss = the negative ELBO, i.e. the paper's
  loss, validation AUC and AP, times);
* ``checkpoint.pt``: model, optimizer, Pyro parameters (baselines) and RNG state
  after the last finished epoch, written atomically; ``resume=True`` continues
  exactly as if the run had not stopped.

Training is full-batch SVI as in Kipf & Welling (2016): one gradient step per
epoch on the ELBO of the whole graph, estimated by the estimator of
:func:`pyro_vae.inference.estimators.make_estimator` (``reparam`` by default),
Adam with learning rate 0.01, 200 epochs, no dropout, features as given. The
pair set and its weights are :func:`~pyro_vae.models.vgae.paper_pairs`, so the
loss is the paper's. Runs keep no global state: each run has a private scope of
Pyro's param store (which holds the module's parameters, registered by
``PyroModule``, and any baseline averages), and torch's global RNG is restored
afterwards.

:func:`run_table` trains every (model, data set, seed) and writes the paper's
Table 1 with mean +- std over seeds; the link split is fixed (``split_seed``),
the seeds vary the initialization and the sampled z, as in the paper.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pyro
import torch
from tqdm import tqdm

from pyro_vae.graph_data import GRAPH_DATASETS, LinkSplit, link_split, load_graph
from pyro_vae.inference.estimators import ESTIMATORS, Estimator, make_estimator
from pyro_vae.inference.link_prediction import link_metrics
from pyro_vae.models.vgae import GRAPH_MODELS, VGAE, paper_pairs
from pyro_vae.files import atomic_write_json, atomic_write_text
from pyro_vae.training.checkpoint import load_checkpoint, save_checkpoint
from pyro_vae.training.config import require_same_config
from pyro_vae.training.loop import CHECKPOINT, CONFIG, METRICS, TrainingDiverged, write_csv

# score-nvil's baseline b(x) is a network of one datum's features; a graph is one datum.
GRAPH_ESTIMATORS: tuple[str, ...] = tuple(name for name in ESTIMATORS if name != "score-nvil")

# Kipf & Welling (2016), Table 1: test AUC and AP in percent.
PAPER: dict[tuple[str, str], tuple[float, float]] = {
    ("vgae", "cora"): (91.4, 92.6),
    ("vgae", "citeseer"): (90.8, 92.0),
    ("vgae", "pubmed"): (94.4, 94.7),
    ("gae", "cora"): (91.0, 92.0),
    ("gae", "citeseer"): (89.5, 89.9),
    ("gae", "pubmed"): (96.4, 96.5),
}


@dataclass
class GraphConfig:
    """Everything that defines a graph autoencoder run (defaults: the paper's)."""

    model: str = "vgae"
    dataset: str = "cora"
    hidden: int = 32
    z_dim: int = 16
    estimator: str = "reparam"
    num_particles: int = 1
    lr: float = 0.01
    epochs: int = 200
    seed: int = 0
    split_seed: int = 0

    def __post_init__(self) -> None:
        GRAPH_MODELS.check(self.model)
        GRAPH_DATASETS.check(self.dataset)
        if self.estimator == "score-nvil":
            raise ValueError(
                "estimator 'score-nvil' needs a per-datum input for its baseline network b(x), "
                f"and a graph is one datum; use one of {list(GRAPH_ESTIMATORS)}"
            )
        if self.estimator not in GRAPH_ESTIMATORS:
            raise ValueError(f"unknown estimator {self.estimator!r}; expected one of {list(GRAPH_ESTIMATORS)}")
        for name in ("hidden", "z_dim", "num_particles", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    @classmethod
    def from_dict(cls, d: dict) -> GraphConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown config entries {sorted(unknown)}")
        return cls(**d)


@dataclass
class GraphRun:
    """A trained (or training) graph autoencoder with its split, estimator and history."""

    config: GraphConfig
    split: LinkSplit
    model: VGAE
    estimator: Estimator
    metrics: list[dict] = field(default_factory=list)

    def embed(self) -> torch.Tensor:
        """Posterior means mu of every node, from the training graph."""
        return self.model.embed(self.split.graph.x, self.split.train_edge_index)

    def test_metrics(self) -> dict[str, float]:
        """Test AUC and AP (fractions) of the posterior means."""
        return link_metrics(self.embed(), self.split.test_pos, self.split.test_neg)


def train_graph(
    config: GraphConfig,
    run_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> GraphRun:
    """Train (or, with ``resume=True``, continue) the run in ``run_dir`` up to ``config.epochs``.

    On resume the checkpoint's config must match ``config`` except for ``epochs``.
    A NaN or infinite loss raises :class:`~pyro_vae.training.loop.TrainingDiverged`
    and leaves the checkpoint of the last finished epoch intact.
    """
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / CHECKPOINT
    state = load_checkpoint(checkpoint_path, generators=("torch",)) if resume else None
    if state is not None:
        saved = GraphConfig.from_dict({**state["config"], "epochs": config.epochs})
        require_same_config(saved, config, run_dir)
    elif checkpoint_path.exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) or use a new directory")

    split = link_split(load_graph(config.dataset, data_dir), config.split_seed)
    store = pyro.get_param_store()
    with torch.random.fork_rng(devices=[]), store.scope():
        torch.manual_seed(config.seed)
        model = GRAPH_MODELS[config.model](split.graph.num_features, config.hidden, config.z_dim)
        run = GraphRun(config, split, model, make_estimator(config.estimator, model, config.num_particles))
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            for name, value in state["free_params"].items():
                pyro.param(name, value)
            torch.set_rng_state(state["rng"]["torch"])
            run.metrics = state["metrics"]
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / CONFIG, asdict(config))
        _fit(run, optimizer, run_dir, progress)
    return run


def _fit(run: GraphRun, optimizer: torch.optim.Optimizer, run_dir: Path, progress: bool) -> None:
    """Full-batch SVI steps from the run's last epoch to ``config.epochs``, checkpointing each epoch."""
    config, split, model = run.config, run.split, run.model
    x, edge_index = split.graph.x, split.train_edge_index
    pairs = paper_pairs(edge_index, split.graph.num_nodes)
    wall = run.metrics[-1]["wall_seconds"] if run.metrics else 0.0
    start_epoch = run.metrics[-1]["epoch"] if run.metrics else 0
    bar = tqdm(range(start_epoch + 1, config.epochs + 1), disable=not progress, leave=False, desc=run_dir.name)
    for epoch in bar:
        start = time.perf_counter()
        optimizer.zero_grad()
        # The inputs were checked once (paper_pairs, check_graph); Pyro's per-step support
        # checks of the N^2 observed A_ij would cost ~15% of a step.
        with pyro.validation_enabled(False):
            loss = run.estimator.elbo.loss_and_grads(model.model, run.estimator.guide, x, edge_index, pairs)
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"the loss became {loss} at epoch {epoch}; training stopped. The checkpoint of "
                f"epoch {epoch - 1} ({run_dir / CHECKPOINT}) is intact; lower --lr and resume, or start again"
            )
        optimizer.step()
        train_seconds = time.perf_counter() - start
        val = link_metrics(run.embed(), split.val_pos, split.val_neg)
        wall += time.perf_counter() - start
        run.metrics.append(
            {"epoch": epoch, "loss": loss, "val_auc": val["auc"], "val_ap": val["ap"],
             "train_seconds": train_seconds, "wall_seconds": wall}
        )
        bar.set_postfix(loss=f"{loss:.4f}", val_auc=f"{val['auc']:.3f}")
        write_csv(run.metrics, run_dir / METRICS)
        save_checkpoint(
            {
                "config": asdict(config),
                "epoch": epoch,
                "model": model.state_dict(),
                "estimator": run.estimator.modules.state_dict(),
                "optimizer": optimizer.state_dict(),
                "free_params": _free_params(model),
                "rng": {"torch": torch.get_rng_state()},
                "metrics": run.metrics,
            },
            run_dir / CHECKPOINT,
        )


def _free_params(model: VGAE) -> dict[str, torch.Tensor]:
    # Param-store entries the module does not own: TraceGraph_ELBO's decaying averages.
    owned = {id(p) for p in model.parameters()}
    return {k: v.detach().clone() for k, v in pyro.get_param_store().named_parameters() if id(v) not in owned}


def train_or_resume_graph(config: GraphConfig, run_dir: str | Path, **kwargs) -> GraphRun:
    """:func:`train_graph`, resuming when ``run_dir`` already holds a checkpoint."""
    return train_graph(config, run_dir, resume=(Path(run_dir) / CHECKPOINT).exists(), **kwargs)


def evaluate_graph_run(run: GraphRun, run_dir: str | Path) -> dict:
    """Test AUC/AP of a run, written to ``run_dir/test-epochNNNN.json`` and returned."""
    last = run.metrics[-1] if run.metrics else {"epoch": 0, "wall_seconds": 0.0}
    report = {**run.test_metrics(), "epoch": last["epoch"], "train_wall_seconds": last["wall_seconds"]}
    path = Path(run_dir) / f"test-epoch{report['epoch']:04d}.json"
    atomic_write_json(path, report)
    return report


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and sample std (in percent) of test AUC and AP per (model, data set), with the paper's values."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["dataset"]), []).append(row)
    summary = []
    for (model, dataset), group in groups.items():
        entry = {"model": model, "dataset": dataset, "seeds": len(group)}
        for metric in ("auc", "ap"):
            values = [100 * r[f"test_{metric}"] for r in group]
            entry[f"{metric}_mean"] = statistics.fmean(values)
            entry[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        entry["paper_auc"], entry["paper_ap"] = PAPER.get((model, dataset), (math.nan, math.nan))
        entry["wall_seconds_mean"] = statistics.fmean(r["train_wall_seconds"] for r in group)
        summary.append(entry)
    return summary


def markdown_table(summary: list[dict]) -> str:
    """The summary as a markdown table against Kipf & Welling (2016), Table 1."""
    lines = [
        "| model | data set | seeds | test AUC (%) | paper AUC | test AP (%) | paper AP | train time / run (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in summary:
        lines.append(
            f"| {s['model'].upper()} | {s['dataset']} | {s['seeds']} | {s['auc_mean']:.1f} +- {s['auc_std']:.1f} | "
            f"{s['paper_auc']:.1f} | {s['ap_mean']:.1f} +- {s['ap_std']:.1f} | {s['paper_ap']:.1f} | "
            f"{s['wall_seconds_mean']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def run_table(
    out: str | Path,
    *,
    models: list[str] | tuple[str, ...] = ("vgae", "gae"),
    datasets: list[str] | tuple[str, ...] = ("cora", "citeseer"),
    seeds: int = 10,
    base: GraphConfig | None = None,
    data_dir: str | Path | None = None,
    progress: bool = False,
    split_per_seed: bool = False,
) -> list[dict]:
    """Train ``models`` x ``datasets`` x seeds 0..seeds-1 under ``out/<model>-<dataset>-seed<s>/``
    (finished runs are reused, stopped ones resumed), write ``runs.csv``, ``summary.csv``,
    ``table.md`` and ``embedding-<dataset>.png`` (the first model's seed-0 posterior means), and
    return the summary rows. Every run uses the link split ``base.split_seed``, or with
    ``split_per_seed`` the split of its own seed (as ``tkipf/gae``, whose ``train.py`` draws
    a new random split each time it runs)."""
    from pyro_vae.graph_plots import embedding_figure

    out = Path(out)
    base = base or GraphConfig()
    rows = []
    for dataset in datasets:
        for seed in range(seeds):  # seeds outermost: a stopped table holds every model at the same seeds
            for model in models:
                split_seed = seed if split_per_seed else base.split_seed
                config = GraphConfig.from_dict(
                    {**asdict(base), "model": model, "dataset": dataset, "seed": seed, "split_seed": split_seed}
                )
                run_dir = out / f"{model}-{dataset}-seed{seed}"
                run = train_or_resume_graph(config, run_dir, data_dir=data_dir, progress=progress)
                report = evaluate_graph_run(run, run_dir)
                rows.append({"model": model, "dataset": dataset, "seed": seed, "split_seed": split_seed,
                             "test_auc": report["auc"],
                             "test_ap": report["ap"], "train_wall_seconds": report["train_wall_seconds"]})
                write_csv(rows, out / "runs.csv")
                if model == models[0] and seed == 0:
                    title = f"{model.upper()} posterior means on {dataset}, colour = class"
                    figure = embedding_figure(run.embed(), run.split.graph.y, title)
                    figure.savefig(out / f"embedding-{dataset}.png", dpi=120)
    summary = summarize(rows)
    write_csv(summary, out / "summary.csv")
    atomic_write_text(out / "table.md", markdown_table(summary))
    return summary
