"""``pyro-vae variance``: the variance of ELBO gradient estimators (:mod:`pyro_vae.experiments.variance_study`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pyro_vae.cli.args import (
    CONFIG_DEFAULTS,
    add_common,
    add_data_file,
    add_program_arguments,
    add_progress,
    at_least,
    data_file,
    key_value,
    model_default_help,
    positive_int,
    read_config_file,
    resolve_device,
    settings_given,
    show_progress,
)
from pyro_vae.cli.commands import machine, register_command
from pyro_vae.cli.reports import report_written
from pyro_vae.inference import ESTIMATORS
from pyro_vae.training.config import PRESETS, TrainConfig

#: The flags that set the study's base config; with ``--run-dir`` the run's own config is the base,
#: and giving one of these is refused.
BASE_FLAGS = ("config", "preset", "model", "model_option", "dataset", "z_dim", "hidden", "epochs", "batch_size", "seed")
#: The training epochs per estimator of a study without ``--epochs`` (a preset's or a config file's
#: epochs are a long run's, not a study's).
STUDY_EPOCHS = 5


def add_variance_arguments(p: argparse.ArgumentParser) -> None:
    d = CONFIG_DEFAULTS
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/variance"),
        help="the study's folder: tables, figures and its training runs (default: runs/variance)",
    )
    add_program_arguments(
        p,
        "the base settings of every training run of the study from FILE: a run's config.json, or any JSON "
        "object of TrainConfig's fields (model, optimizer, ...); --preset and the flags given override them "
        "(default: none)",
    )
    p.add_argument(
        "--z-dim", type=positive_int, help=f"dimensions of the latent z of steps 1-3 ({model_default_help('z_dim')})"
    )
    p.add_argument(
        "--hidden",
        type=positive_int,
        nargs="+",
        help=f"hidden layer sizes ({model_default_help('hidden')})",
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        help=f"training epochs per estimator (default {STUDY_EPOCHS}, whatever --preset or --config say)",
    )
    p.add_argument("--batch-size", type=positive_int, help=f"minibatch size M (default {d['batch_size']})")
    p.add_argument("--seed", type=int, help=f"seeds the runs and the gradient draws (default {d['seed']})")
    p.add_argument(
        "--estimators",
        nargs="+",
        choices=ESTIMATORS.names(),
        help="default: every estimator that applies to the program (a pathwise one does not to a "
        "discrete latent, vimco not to one particle). " + ESTIMATORS.describe(),
    )
    p.add_argument(
        "--estimator-particles",
        type=estimator_particles,
        nargs="+",
        default=[],
        metavar="NAME=K",
        help="an estimator's own number of particles K in its training run and its comparisons (the others: the "
        "config's, default 1), e.g. vimco=2 score-loo=2 for a discrete latent",
    )
    p.add_argument(
        "--estimator-option",
        dest="estimator_option",
        type=estimator_option,
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE",
        help="a keyword of estimator NAME's builder in the study, e.g. gumbel:temperature=0.5 (repeatable; "
        "default: each estimator's own defaults, and with --run-dir the run's options for its estimator)",
    )
    p.add_argument(
        "--reference",
        choices=ESTIMATORS.names(),
        help="the estimator each variance is divided by, whose run gives the points of step 2 (default: "
        "reparam, e.g. disarm for a discrete latent; with --run-dir, the run's own "
        "estimator with its options, e.g. enum or vimco for a discrete latent)",
    )
    p.add_argument("--draws", type=at_least(2), default=100, help="gradient draws R per estimator (default 100)")
    p.add_argument(
        "--adapt-steps", type=at_least(0), default=300, help="minibatches to adapt baselines on (default 300)"
    )
    p.add_argument(
        "--num-particles",
        dest="particle_counts",
        type=positive_int,
        nargs="+",
        help="samples L per datum of step 3 (default 1 4 16; with --run-dir, none unless given)",
    )
    p.add_argument(
        "--z-dims",
        type=positive_int,
        nargs="+",
        default=[2, 5, 10, 20, 50],
        help="latent sizes of step 4, one run of one epoch each (default 2 5 10 20 50)",
    )
    p.add_argument(
        "--run-dir",
        type=Path,
        help="only compare the estimators at this trained run's last checkpoint, "
        "as the run was trained (its particles and estimator options; default: the whole study)",
    )
    add_data_file(
        p,
        help="train and compare on your own data instead of --dataset (a file or image folder as `train --data "
        "FILE` takes); with --run-dir, the data the run was trained on, whose fingerprint must match the "
        "checkpoint's (default: none)",
    )
    add_progress(p)
    add_common(p)


def estimator_particles(text: str) -> tuple[str, int]:
    """``NAME=K``: a registered estimator's name and a number of particles K >= 1."""
    name, sep, value = text.partition("=")
    if not sep or name not in ESTIMATORS or not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(
            f"expected NAME=K with a registered estimator NAME and K >= 1 (e.g. vimco=2), got {text!r}"
        )
    return name, int(value)


def estimator_option(text: str) -> tuple[str, str, object]:
    """``NAME:KEY=VALUE``: a registered estimator's name and one keyword of its builder, ``KEY=VALUE``
    read as ``pyro-vae train --estimator-option`` reads it."""
    name, sep, option = text.partition(":")
    if not sep or name not in ESTIMATORS:
        raise argparse.ArgumentTypeError(
            f"expected NAME:KEY=VALUE with a registered estimator NAME (e.g. gumbel:temperature=0.5), got {text!r}"
        )
    return (name, *key_value(option))


def base_config(args: argparse.Namespace) -> TrainConfig:
    """The config every training run of the study starts from: each setting from its flag, else from
    ``--preset``, else from ``--config FILE``, else ``TrainConfig``'s default (as ``pyro-vae train``);
    the epochs from ``--epochs`` alone, else :data:`STUDY_EPOCHS`."""
    given = {"epochs": STUDY_EPOCHS, **settings_given(args, ("model",))}
    from_file = read_config_file(args.config) if args.config is not None else {}
    return TrainConfig.from_dict({**from_file, **PRESETS.get(args.preset, {}), **given})


def cmd_variance(args) -> None:
    from pyro_vae.experiments.variance_study import StudyConfig, compare_at_run, run_study

    if args.run_dir is not None:
        given = [f"--{name.replace('_', '-')}" for name in BASE_FLAGS if getattr(args, name) is not None]
        if given:
            raise ValueError(
                f"--run-dir {args.run_dir} compares at the run as it was trained (its model, data and settings); "
                f"drop {' '.join(given)}"
            )
    options: dict[str, dict] = {}
    for name, key, value in args.estimator_option:
        options.setdefault(name, {})[key] = value
    study = StudyConfig(
        base=base_config(args),
        estimators=args.estimators,
        reference=args.reference,
        num_draws=args.draws,
        adapt_steps=args.adapt_steps,
        z_dims=args.z_dims,
        estimator_particles=dict(args.estimator_particles),
        estimator_options=options,
        **({"num_particles": args.particle_counts} if args.particle_counts else {}),
    )
    print(f"variance study -> {args.out}\nmachine: {machine()}")
    device, progress = resolve_device(args.device), show_progress(args)
    with report_written(args.out):
        if args.run_dir:
            compare_at_run(
                args.run_dir,
                study,
                args.out,
                args.data_dir,
                device,
                args.particle_counts or (),
                progress=progress,
                data=data_file(args),
            )
        else:
            run_study(study, args.out, args.data_dir, device, progress=progress, data=data_file(args))
        print((args.out / "summary.md").read_text())


register_command(
    "variance",
    add_variance_arguments,
    cmd_variance,
    help="compare the variance of ELBO gradient estimators and write table + figures",
)
