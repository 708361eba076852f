"""``pyro-vae graph train | table``: (variational) graph autoencoders for link prediction
(Kipf & Welling 2016; :mod:`pyro_vae.experiments.graph`)."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, fields
from pathlib import Path

from pyro_vae.cli.args import add_threads, positive_float, positive_int
from pyro_vae.cli.commands import machine, register_command
from pyro_vae.training.checkpoint import CheckpointError
from pyro_vae.training.loop import CONFIG


def add_graph_arguments(graph: argparse.ArgumentParser) -> None:
    from pyro_vae.experiments.graph import GRAPH_ESTIMATORS, GraphConfig
    from pyro_vae.graph_data import GRAPH_DATASETS
    from pyro_vae.models.vgae import GRAPH_MODELS

    graph_sub = graph.add_subparsers(dest="graph_command", required=True)
    defaults = GraphConfig()

    def add_config(p) -> None:
        p.add_argument("--estimator", choices=GRAPH_ESTIMATORS, help=f"default {defaults.estimator}")
        p.add_argument("--num-particles", type=positive_int)
        p.add_argument("--hidden", type=positive_int, help=f"first GCN layer units (default {defaults.hidden})")
        p.add_argument("--z-dim", type=positive_int, help=f"latent dimension (default {defaults.z_dim})")
        p.add_argument("--lr", type=positive_float, help=f"Adam learning rate (default {defaults.lr})")
        p.add_argument("--epochs", type=positive_int, help=f"full-batch steps (default {defaults.epochs})")
        p.add_argument("--split-seed", type=int, help="seed of the 85/5/10 link split (default 0)")
        p.add_argument("--data-dir", help="folder with Planetoid/<Name>/raw (default: $PYRO_VAE_DATA, else download)")
        p.add_argument("--no-progress", action="store_true")
        add_threads(p)

    p = graph_sub.add_parser("train", help="train one graph autoencoder and report its test AUC and AP")
    p.add_argument("--model", choices=GRAPH_MODELS.names(), help=GRAPH_MODELS.describe())
    p.add_argument("--dataset", choices=GRAPH_DATASETS.names(), help=GRAPH_DATASETS.describe())
    p.add_argument("--seed", type=int)
    p.add_argument("--run-dir", type=Path, help="default: runs/<model>-<dataset>-<time>")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    add_config(p)
    p.set_defaults(func=cmd_graph_train)

    p = graph_sub.add_parser("table", help="Table 1 of Kipf & Welling (2016): test AUC/AP, mean +- std over seeds")
    p.add_argument("--models", nargs="+", choices=GRAPH_MODELS.names(), default=["vgae", "gae"])
    p.add_argument("--datasets", nargs="+", choices=GRAPH_DATASETS.names(), default=["cora", "citeseer"])
    p.add_argument("--seeds", type=positive_int, default=10, help="seeds 0..N-1 per model and data set (default 10)")
    p.add_argument("--out", type=Path, default=Path("runs/vgae"))
    p.add_argument("--split-per-seed", action="store_true",
                   help="run s uses the link split s too (tkipf/gae draws a new split per run); default: --split-seed")
    add_config(p)
    p.set_defaults(func=cmd_graph_table)


def _graph_config(args, **values):
    from pyro_vae.experiments.graph import GraphConfig

    names = {f.name for f in fields(GraphConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
    return GraphConfig.from_dict(values)


def cmd_graph_train(args) -> None:
    from pyro_vae.experiments.graph import evaluate_graph_run, train_graph

    values = {}
    if args.resume:
        if args.run_dir is None:
            raise ValueError("--resume needs --run-dir")
        if not (args.run_dir / CONFIG).is_file():
            raise CheckpointError(f"no {CONFIG} in {args.run_dir}: nothing to resume")
        values = json.loads((args.run_dir / CONFIG).read_text())
    config = _graph_config(args, **values)
    run_dir = args.run_dir or Path("runs") / f"{config.model}-{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"run directory: {run_dir}\nconfig: {asdict(config)}\nmachine: {machine()}")
    run = train_graph(config, run_dir, data_dir=args.data_dir, resume=args.resume, progress=not args.no_progress)
    report = evaluate_graph_run(run, run_dir)
    print(f"epoch {report['epoch']}: test AUC {100 * report['auc']:.2f}, AP {100 * report['ap']:.2f} "
          f"({report['train_wall_seconds']:.1f} s of training)")


def cmd_graph_table(args) -> None:
    from pyro_vae.experiments.graph import markdown_table, run_table

    print(f"graph autoencoder table -> {args.out}\nmachine: {machine()}")
    summary = run_table(args.out, models=args.models, datasets=args.datasets, seeds=args.seeds,
                        base=_graph_config(args), data_dir=args.data_dir, progress=not args.no_progress,
                        split_per_seed=args.split_per_seed)
    print(markdown_table(summary))


register_command("graph", add_graph_arguments, None,
                 help="(variational) graph autoencoders for link prediction (Kipf & Welling 2016)")
