"""``pyro-vae structures``: every latent structure and objective at one budget, one table
(:mod:`pyro_vae.experiments.structures`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pyro_vae.cli.args import add_common, add_num_samples, add_progress, positive_int, resolve_device, show_progress
from pyro_vae.cli.commands import machine, register_command
from pyro_vae.cli.reports import report_written
from pyro_vae.models.nets import ACTIVATIONS


def add_structures_arguments(p: argparse.ArgumentParser) -> None:
    from pyro_vae.experiments.structures import ENTRIES

    p.add_argument(
        "entries",
        nargs="*",
        metavar="ENTRY",  # checked by run_table: argparse rejects [] with choices
        help="rows of the table (default: all): " + "; ".join(f"{k}: {v.description}" for k, v in ENTRIES.items()),
    )
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs per run (default 10)")
    p.add_argument("--seeds", type=positive_int, default=1, help="seeds 0..N-1 per entry (default 1)")
    add_num_samples(p, 5000)
    p.add_argument("--num-test", type=positive_int, help="first N test images (default: all 10,000)")
    p.add_argument("--num-train", type=positive_int, help="first N training images (default: all 60,000)")
    p.add_argument(
        "--jobs", type=positive_int, default=1, help="runs trained at once, each in its own process (default 1)"
    )
    p.add_argument(
        "--activation",
        choices=sorted(ACTIVATIONS),
        help="hidden units of every entry instead of Burda et al.'s tanh (use another --out; default: tanh)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/structures"),
        help="the table's folder, a run folder per entry and seed in it (default: runs/structures)",
    )
    add_progress(p)
    add_common(p)


def cmd_structures(args) -> None:
    from pyro_vae.experiments.structures import ENTRIES, run_table

    entries = args.entries or list(ENTRIES)
    print(f"latent structures {' '.join(entries)} -> {args.out}\nmachine: {machine()}")
    with report_written(args.out):
        run_table(
            args.out,
            entries,
            args.seeds,
            args.epochs,
            args.num_samples,
            args.num_test,
            args.data_dir,
            resolve_device(args.device),
            args.jobs,
            args.num_train,
            args.activation,
            progress=show_progress(args),
        )
        print((args.out / "table.md").read_text())


register_command(
    "structures",
    add_structures_arguments,
    cmd_structures,
    help="train and evaluate every latent structure and objective at one budget "
    "(one table: ELBO, IS log p(x), M2's test error, against the papers)",
)
