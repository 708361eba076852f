"""``pyro-vae evaluate``: the test ELBO and importance-sampled log p(x) of a trained run (for a
graph run, its test AUC and AP), printed and written into the run's folder."""

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
    positive_int,
    resolve_device,
    show_progress,
)
from pyro_vae.cli.commands import register_command
from pyro_vae.cli.reports import final_report
from pyro_vae.pretrained import report_dir, resolve_run
from pyro_vae.training.distributed import session


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
    add_data_file(p)
    add_progress(p)
    add_common(p)


def cmd_evaluate(args) -> None:
    with session(resolve_device(args.device)) as (distributed, device):
        with distributed.local_main_first():  # one data download per machine
            run = resolve_run(args.run_dir, args.data_dir, device, checkpoint=args.checkpoint, data=data_file(args))
        final_report(
            run,
            report_dir(args.run_dir),
            distributed,
            num_samples=args.num_samples,
            device=device,
            num_test=args.num_test,
            progress=show_progress(args),
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            marginal=args.marginal,
            seed=args.seed,
        )


register_command(
    "evaluate",
    add_evaluate_arguments,
    cmd_evaluate,
    distributed=True,
    help="test ELBO and importance-sampled log p(x) of a trained run",
)
