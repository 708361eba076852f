"""``pyro-vae probe RUN``: the latent code as features (M1 of Kingma et al. 2014): few-label
classifiers, k-means and a t-SNE picture of q(z|x)'s codes (:mod:`pyro_vae.experiments.probe`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pyro_vae.cli.args import (
    add_common,
    add_data_file,
    add_progress,
    data_file,
    positive_int,
    resolve_device,
    show_progress,
)
from pyro_vae.cli.commands import machine, register_command


def add_probe_arguments(p: argparse.ArgumentParser) -> None:
    from pyro_vae.experiments.probe import USES
    from pyro_vae.experiments.probe_classifiers import CLASSIFIERS

    p.add_argument("run_dir", metavar="RUN", help="a run folder, or pretrained:NAME")
    p.add_argument(
        "--num-labels",
        type=positive_int,
        nargs="+",
        default=[100, 600, 1000, 3000],
        help="labelled training images, balanced over classes; several at once (default 100 600 1000 3000)",
    )
    p.add_argument("--draws", type=positive_int, default=3, help="draws of the labelled images per number (default 3)")
    p.add_argument(
        "--use", choices=USES, default="mean", help="codes: the means of q(z|x) or one draw each (default: mean)"
    )
    p.add_argument(
        "--classifiers",
        nargs="+",
        choices=CLASSIFIERS.names(),
        default=CLASSIFIERS.names(),
        help=f"{CLASSIFIERS.describe()} (default: all)",
    )
    p.add_argument("--out", type=Path, help="the results' folder (default: RUN/probe, runs/pretrained/NAME/probe)")
    add_data_file(p)
    add_progress(p)
    add_common(p)


def cmd_probe(args) -> None:
    from pyro_vae.experiments.probe import probe, write_probe
    from pyro_vae.pretrained import report_dir, resolve_run

    run = resolve_run(args.run_dir, args.data_dir, resolve_device(args.device), data=data_file(args))
    out = args.out or report_dir(args.run_dir) / "probe"
    result = probe(
        run, args.num_labels, args.draws, args.use, args.classifiers, out / "tsne.png", progress=show_progress(args)
    )
    print(f"machine: {machine()}\n{result.table()}")
    for path in [*write_probe(result, out), result.figure]:
        print(f"wrote {path}")


register_command(
    "probe",
    add_probe_arguments,
    cmd_probe,
    help="the latent code as features: few-label classifiers, k-means, t-SNE (M1, Kingma et al. 2014)",
)
