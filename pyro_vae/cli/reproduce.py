"""``pyro-vae reproduce``: a figure of the AEVB paper (:mod:`pyro_vae.experiments.reproduce`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pyro_vae.cli.args import add_common, add_progress, positive_int, resolve_device, show_progress
from pyro_vae.cli.commands import machine, register_command
from pyro_vae.cli.reports import report_written


def add_reproduce_arguments(p: argparse.ArgumentParser) -> None:
    from pyro_vae.experiments.paper_settings import BUDGETS, FIG2_DATASETS
    from pyro_vae.experiments.reproduce import FIGURES

    p.add_argument(
        "figure",
        choices=FIGURES,
        help="fig2: ELBO against training samples, AEVB vs wake-sleep; fig3: log p(x), AEVB vs wake-sleep and "
        "Monte Carlo EM; fig4: 2-D manifolds; fig5: samples",
    )
    p.add_argument(
        "--budget",
        choices=list(BUDGETS),
        default="small",
        help="training samples per run: small 1.8e5 (minutes on a laptop CPU, the default), "
        "medium 1e7 (hours on a CPU), full 1e8 (the paper's; a GPU job); tiny for smoke tests",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/reproduce"),
        help="the figures' folder, their runs in OUT/runs (default: runs/reproduce)",
    )
    p.add_argument(
        "--partial",
        action="store_true",
        help="fig2, fig3: draw the curves of the runs as far as their checkpoints go, training nothing "
        "(default: train the runs to the end)",
    )
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="runs trained at once, each in its own process with --threads torch threads (default 1)",
    )
    p.add_argument(
        "--z-dims",
        type=positive_int,
        nargs="+",
        help="fig2: only these of the budget's latent sizes (its runs and panels), e.g. 200 (default: all)",
    )
    p.add_argument("--datasets", nargs="+", choices=FIG2_DATASETS, help="fig2: only these data sets (default: both)")
    add_progress(p)
    add_common(p)


def cmd_reproduce(args) -> None:
    from pyro_vae.experiments.reproduce import reproduce

    print(f"reproducing {args.figure} ({args.budget} budget) -> {args.out}\nmachine: {machine()}")
    with report_written(args.out):
        rows = reproduce(
            args.figure,
            args.out,
            args.budget,
            args.data_dir,
            resolve_device(args.device),
            args.partial,
            args.jobs,
            args.z_dims,
            args.datasets,
            progress=show_progress(args),
        )
        print(f"{len(rows)} rows; the runs are in {args.out / 'runs'}")


register_command(
    "reproduce",
    add_reproduce_arguments,
    cmd_reproduce,
    help="reproduce a figure of the AEVB paper (fig2: AEVB vs wake-sleep, "
    "fig3: log p(x), fig4: 2-D manifolds, fig5: samples)",
)
