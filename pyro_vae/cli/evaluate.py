"""``pyro-vae evaluate``: the test ELBO and importance-sampled log p(x) of a trained run (for a
graph run, its test AUC and AP), printed and written into the run's folder; with ``--method``, another
estimate (AIS, BDMC, the amortization gap: :mod:`pyro_vae.training.evaluation_methods`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pyro_vae.cli.args import (
    add_common,
    add_data_file,
    add_num_samples,
    add_pass_sizes,
    add_progress,
    data_file,
    positive_float,
    positive_int,
    resolve_device,
    show_progress,
)
from pyro_vae.cli.commands import register_command
from pyro_vae.cli.reports import write_report
from pyro_vae.inference.ais import STARTS
from pyro_vae.pretrained import report_dir, resolve_run
from pyro_vae.training.distributed import session
from pyro_vae.training.evaluation_methods import EVALUATION_METHODS, EvaluationOptions


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN", help="a run folder, or pretrained:NAME (pyro_vae.pretrained)")
    add_num_samples(p, 5000)
    p.add_argument(
        "--num-test", type=positive_int, help="evaluate on the first N test images only (default: all of them)"
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="a kept checkpoint instead of the run's last one (default: RUN/checkpoint.pt)",
    )
    p.add_argument(
        "--marginal",
        action="store_true",
        help="a labelled program (M2) is given x alone and sums y out: log p(x) instead of log p(x, y)",
    )
    add_pass_sizes(p, "test images per pass (default 100)")
    p.add_argument(
        "--seed",
        type=int,
        help="seed the importance samples (report eval-...-seedS.json); repeat with other seeds to "
        "measure the estimate's Monte Carlo spread (default: the stream the run's seed leaves, "
        "the same at every call)",
    )
    add_method_arguments(p)
    add_data_file(p)
    add_progress(p)
    add_common(p)


def add_method_arguments(p: argparse.ArgumentParser) -> None:
    """``--method`` and the settings of AIS, BDMC and the amortization gap (defaults: :class:`EvaluationOptions`)."""
    default = EvaluationOptions()
    p.add_argument(
        "--method",
        choices=EVALUATION_METHODS.names(),
        default="is",
        help=f"{EVALUATION_METHODS.describe()} (default is)",
    )
    flags = (
        ("--chains", "chains", positive_int, "AIS chains per datum (ais, bdmc)"),
        ("--ais-steps", "ais_steps", positive_int, "AIS intermediate densities (ais, bdmc)"),
        ("--leapfrog-steps", "leapfrog_steps", positive_int, "leapfrog steps per HMC transition (ais, bdmc)"),
        ("--local-steps", "local_steps", positive_int, "Adam steps of each datum's Gaussian (amortization)"),
        ("--local-lr", "local_lr", positive_float, "their learning rate (amortization)"),
    )
    for flag, field, kind, what in flags:
        value = getattr(default, field)
        p.add_argument(flag, type=kind, default=value, help=f"{what}; default {value}")
    p.add_argument(
        "--ais-start",
        choices=STARTS.names(),
        default=default.ais_start,
        help=f"AIS's initial distribution: {STARTS.describe()} (default {default.ais_start})",
    )


def cmd_evaluate(args) -> None:
    with session(resolve_device(args.device)) as (distributed, device):
        with distributed.local_main_first():  # one data download per machine
            run = resolve_run(args.run_dir, args.data_dir, device, checkpoint=args.checkpoint, data=data_file(args))
        options = EvaluationOptions(
            num_samples=args.num_samples,
            device=device,
            num_test=args.num_test,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            marginal=args.marginal,
            seed=args.seed,
            progress=show_progress(args),
            chains=args.chains,
            ais_steps=args.ais_steps,
            leapfrog_steps=args.leapfrog_steps,
            ais_start=args.ais_start,
            local_steps=args.local_steps,
            local_lr=args.local_lr,
        )
        method = EVALUATION_METHODS[args.method]
        write_report(*method(run, report_dir(args.run_dir), distributed, options), distributed)


register_command(
    "evaluate",
    add_evaluate_arguments,
    cmd_evaluate,
    distributed=True,
    help="test ELBO and importance-sampled (or AIS, BDMC) log p(x) of a trained run",
)
