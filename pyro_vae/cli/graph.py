"""``pyro-vae graph table``: Table 1 of Kipf & Welling (2016), test AUC/AP of the (variational)
graph autoencoders over seeds (:mod:`pyro_vae.experiments.graph`). One graph run is an ordinary
``pyro-vae train --preset kipf --model vgae --dataset cora``."""

from __future__ import annotations

import argparse
from pathlib import Path

from pyro_vae.cli.args import add_progress, add_threads, positive_float, positive_int, show_progress
from pyro_vae.cli.commands import machine, register_command
from pyro_vae.cli.reports import report_written


def add_graph_arguments(graph: argparse.ArgumentParser) -> None:
    from pyro_vae.data import DATASETS
    from pyro_vae.inference import ESTIMATORS
    from pyro_vae.models import MODELS
    from pyro_vae.training.kinds import of_kind

    graphs, models = of_kind(DATASETS, "graph"), of_kind(MODELS, "graph")
    graph_sub = graph.add_subparsers(dest="graph_command", required=True)
    p = graph_sub.add_parser(
        "table",
        help="Table 1 of Kipf & Welling (2016): test AUC/AP, mean +- std over seeds "
        "(each run as `train --preset kipf --model M --dataset D --seed S`)",
    )
    p.add_argument(
        "--models", nargs="+", choices=models, default=["vgae", "gae"], help="the table's models (default vgae gae)"
    )
    p.add_argument(
        "--datasets",
        nargs="+",
        choices=graphs,
        default=["cora", "citeseer"],
        help="the table's graphs (default cora citeseer)",
    )
    p.add_argument("--seeds", type=positive_int, default=10, help="seeds 0..N-1 per model and data set (default 10)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/vgae"),
        help="the table's folder, a run folder per model, graph and seed in it (default: runs/vgae)",
    )
    p.add_argument(
        "--split-per-seed",
        action="store_true",
        help="run s uses the link split s too (tkipf/gae draws a new split per run); default: --split-seed",
    )
    p.add_argument("--estimator", choices=ESTIMATORS.names(), help=f"{ESTIMATORS.describe()} (default: reparam)")
    p.add_argument("--num-particles", type=positive_int, help="samples L of the estimator per step (default 1)")
    p.add_argument("--lr", type=positive_float, help="Adam learning rate (default 0.01)")
    p.add_argument("--epochs", type=positive_int, help="full-graph steps (default 200)")
    p.add_argument("--split-seed", type=int, help="seed of the 85/5/10 link split (default 0)")
    p.add_argument("--data-dir", help="folder with Planetoid/<Name>/raw (default: $PYRO_VAE_DATA, else download)")
    add_progress(p)
    add_threads(p)
    p.set_defaults(func=cmd_graph_table)


def cmd_graph_table(args) -> None:
    from pyro_vae.experiments.graph import markdown_table, run_table
    from pyro_vae.training.config import PRESETS, TrainConfig

    names = ("estimator", "num_particles", "lr", "epochs", "split_seed")
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    base = TrainConfig.from_dict({**PRESETS["kipf"], "model": args.models[0], "dataset": args.datasets[0], **given})
    print(f"graph autoencoder table -> {args.out}\nmachine: {machine()}")
    with report_written(args.out):
        summary = run_table(
            args.out,
            models=args.models,
            datasets=args.datasets,
            seeds=args.seeds,
            base=base,
            data_dir=args.data_dir,
            progress=show_progress(args),
            split_per_seed=args.split_per_seed,
        )
        print(markdown_table(summary))


register_command(
    "graph",
    add_graph_arguments,
    None,
    help="the graph autoencoders' table (Kipf & Welling 2016); one run: train --preset kipf --model vgae",
)
