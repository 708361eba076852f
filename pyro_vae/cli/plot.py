"""``pyro-vae plot``: the figures of a trained run (:data:`pyro_vae.plots.run.RUN_FIGURES`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pyro_vae.cli.args import add_common, add_data_file, add_progress, data_file, resolve_device, show_progress
from pyro_vae.cli.commands import register_command
from pyro_vae.cli.reports import write_run_figures
from pyro_vae.pretrained import report_dir, resolve_run


def add_plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_dir",
        metavar="RUN",
        help="a run folder, or pretrained:NAME (a shipped entry or a folder of save_pretrained)",
    )
    p.add_argument("--out", type=Path, help="the figures' folder (default: RUN/figures, runs/pretrained/NAME/figures)")
    p.add_argument(
        "--figures",
        nargs="+",
        metavar="NAME",
        help="draw only these, by name (pyro_vae.plots.run.RUN_FIGURES; an unknown name lists them; "
        "default: every figure the program has what it needs for)",
    )
    add_data_file(p)
    add_progress(p)
    add_common(p)


def cmd_plot(args) -> None:
    run = resolve_run(args.run_dir, args.data_dir, resolve_device(args.device), data=data_file(args))
    write_run_figures(run, args.out or report_dir(args.run_dir) / "figures", args.figures, show_progress(args))


register_command(
    "plot", add_plot_arguments, cmd_plot, help="samples, reconstructions, curves, latents, manifold of a run"
)
