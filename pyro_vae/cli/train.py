"""``pyro-vae train``: train a run, from a command line or a run's ``config.json``, then
evaluate it and draw its figures."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

from pyro_vae.cli.args import (
    CONFIG_DEFAULTS,
    add_choice,
    add_common,
    add_num_samples,
    add_option_flag,
    add_program_arguments,
    add_progress,
    at_least,
    fraction,
    model_default_help,
    non_negative_float,
    positive_float,
    positive_int,
    read_config_file,
    resolve_device,
    settings_given,
    show_progress,
)
from pyro_vae.cli.commands import machine, register_command
from pyro_vae.cli.reports import final_report, write_run_figures
from pyro_vae.data import TEST_FRACTION, read_data
from pyro_vae.inference import ALGORITHMS, ESTIMATORS, LR_SCHEDULES, OPTIMIZERS
from pyro_vae.inference.stepping import LOSS_SCALES, SCHEDULE_INTERVALS
from pyro_vae.models.likelihoods import LIKELIHOODS
from pyro_vae.models.nets import ACTIVATIONS, INITIALIZATIONS
from pyro_vae.training import EarlyStopping, train
from pyro_vae.training.build import with_absolute_sources
from pyro_vae.training.config import PRESETS, TrainConfig
from pyro_vae.training.distributed import DistributedContext, session
from pyro_vae.training.kinds import run_kind
from pyro_vae.training.resume import resume_config

#: The description of ``pyro-vae train --help``: where a setting not given on the command line comes from.
DESCRIPTION = (
    "A setting not given on the command line comes from --preset, else from --config FILE, else it is "
    "TrainConfig's default, shown with each flag. With --resume, every setting comes from the run's checkpoint."
)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    d = CONFIG_DEFAULTS
    p.description = DESCRIPTION
    add_program_arguments(
        p,
        "start from the settings in FILE: a run's config.json, or any JSON object of TrainConfig's "
        "fields; the flags given override them (default: none)",
    )
    p.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="train on your own data instead of --dataset: an .npz (arrays train or x, optional test, "
        "train_labels or y, test_labels), .npy (one array), .pt (a tensor or dict of tensors) or a folder of "
        "images (class subfolders give labels); 8-bit values are scaled to [0, 1]; without a test set a "
        f"seeded {round(100 * TEST_FRACTION)}%% is held out as one, and --validation-fraction holds a part of the rest out "
        "(default: none)",
    )
    p.add_argument("--z-dim", type=positive_int, help=f"dimensions of the latent z ({model_default_help('z_dim')})")
    p.add_argument(
        "--hidden",
        type=positive_int,
        nargs="+",
        help=f"hidden layer sizes, e.g. --hidden 200 200 ({model_default_help('hidden')})",
    )
    p.add_argument(
        "--activation",
        choices=sorted(ACTIVATIONS),
        help=f"the hidden layers' nonlinearity ({model_default_help('activation')})",
    )
    add_choice(p, "--likelihood", LIKELIHOODS, "the data set's own")
    p.add_argument(
        "--init-std", type=positive_float, help="weights ~ N(0, std^2) (paper: 0.01; default: as --init says)"
    )
    add_choice(p, "--init", INITIALIZATIONS, d["init"])
    add_choice(p, "--estimator", ESTIMATORS, d["estimator"])
    add_option_flag(
        p,
        "estimator",
        "a keyword of the estimator's builder, e.g. the beta of a user's "
        "beta-ELBO: --estimator-option beta=4.0 (repeatable; default: the estimator's own defaults)",
    )
    p.add_argument("--num-particles", type=positive_int, help=f"samples L per datum (default {d['num_particles']})")
    add_choice(p, "--optimizer", OPTIMIZERS, d["optimizer"])
    p.add_argument("--lr", type=positive_float, help=f"the optimizer's learning rate (default {d['lr']})")
    add_option_flag(
        p,
        "optimizer",
        "a keyword of the torch optimizer, e.g. --optimizer-option momentum=0.9 or betas=(0.9,0.999) "
        "(repeatable; default: torch's defaults)",
    )
    add_choice(p, "--lr-schedule", LR_SCHEDULES, d["lr_schedule"])
    add_option_flag(
        p,
        "schedule",
        "a keyword of the schedule, e.g. --schedule-option gamma=0.5, or warmup=W for a linear "
        "warm-up over the first W epochs in front of any schedule (repeatable; default: the schedule's own)",
    )
    p.add_argument(
        "--weight-decay",
        type=non_negative_float,
        help=f"1.0 is a N(0, I) prior on the weights (default {d['weight_decay']})",
    )
    p.add_argument("--batch-size", type=positive_int, help=f"minibatch size M (default {d['batch_size']})")
    add_choice(p, "--algorithm", ALGORITHMS, d["algorithm"])
    p.add_argument("--num-train", type=positive_int, help="train on the first N training points only (default: all)")
    p.add_argument(
        "--num-labels",
        type=positive_int,
        help="keep N training labels, balanced over classes (semi-supervised; default: every label)",
    )
    p.add_argument(
        "--labelled-per-batch",
        type=at_least(0),
        help="put M_l labelled points in every minibatch (with --num-labels; M2's setting; default 0: "
        "minibatches drawn regardless of labels)",
    )
    p.add_argument("--epochs", type=positive_int, help=f"passes over the training data (default {d['epochs']})")
    p.add_argument(
        "--kl-warmup",
        type=at_least(0),
        help="KL warm-up over W epochs: the latent terms weighted by min(1, epoch / W) (default 0: off)",
    )
    p.add_argument(
        "--evals-per-decade",
        type=at_least(0),
        help="metrics rows (test ELBO) per decade of training samples instead of one per epoch (default 0: "
        "one per epoch)",
    )
    p.add_argument(
        "--metrics-num-samples",
        type=positive_int,
        help=f"z per test datum of each metrics row's test ELBO (default {d['metrics_num_samples']})",
    )
    p.add_argument(
        "--seed", type=int, help=f"seeds the weights, minibatches and samples of the run (default {d['seed']})"
    )
    p.add_argument(
        "--split-seed",
        type=int,
        help=f"graph data: seed of the 85/5/10 link split (default {d['split_seed']})",
    )
    p.add_argument(
        "--validation-fraction",
        type=fraction,
        help="hold this part of the training set out (drawn with --split-seed; with --data, of the data left after "
        "the test set); every metrics row then has "
        f"the validation ELBO val_elbo (default {d['validation_fraction']}: none)",
    )
    p.add_argument(
        "--early-stopping",
        type=positive_int,
        metavar="PATIENCE",
        help="stop when the validation metric (val_elbo with --validation-fraction; val_auc of a graph run) has "
        "not improved for PATIENCE metrics rows, keeping the best epoch's checkpoint as RUN_DIR/best.pt "
        "(default: off)",
    )
    p.add_argument(
        "--schedule-interval",
        choices=SCHEDULE_INTERVALS,
        help="when the schedule steps: at each epoch's end or after each optimizer step, over the run's steps "
        f"(warmup=W then counts steps) (default {d['schedule_interval']})",
    )
    p.add_argument(
        "--clip-norm",
        type=positive_float,
        help="clip the gradient's L2 norm to this before each optimizer step (default: off); on the default loss "
        "scale the default VAE's gradient norm on MNIST is 2e6-4e6, with --loss-scale mean 35-60",
    )
    p.add_argument(
        "--loss-scale",
        choices=list(LOSS_SCALES),
        help="sum: the gradient of the whole-data negative ELBO, N/M x the minibatch sum (the paper's); mean: "
        "divided by N, so SGD takes per-datum rates (--optimizer sgd --loss-scale mean --lr 0.01) "
        f"(default {d['loss_scale']})",
    )
    p.add_argument("--run-dir", type=Path, help="the run's folder (default: runs/<dataset>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    p.add_argument(
        "--allow-process-change",
        action="store_true",
        help="with --resume: continue although --jit, --flush-denormal, --threads or --device differ from "
        "what the checkpoint records (they change the float rounding, so the run is no longer bit "
        "for bit the uninterrupted one)",
    )
    add_num_samples(p, 100, "per test image of the final log p(x); reported numbers use `evaluate -k 5000`")
    p.add_argument(
        "--num-test", type=positive_int, help="the final evaluation on the first N test images only (default: all)"
    )
    p.add_argument(
        "--keep-every",
        type=at_least(0),
        default=0,
        help="keep a copy of every N-th epoch's checkpoint (default 0: none)",
    )
    p.add_argument(
        "--validate-every-step",
        action="store_true",
        help="keep Pyro's validation on for every step (default: the first step only)",
    )
    p.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compile the ELBO (Pyro's JitTrace_ELBO, one graph per batch shape): same numbers, "
        "without Pyro's per-step tracing; for models of static structure. Default: on for the "
        "built-in models and estimators the tests check (vae with reparam, stl or score; cvae, iaf, "
        "two-layer, mog-prior, vampprior with reparam), off for anything else",
    )
    p.add_argument(
        "--tensorboard",
        nargs="?",
        const="",
        metavar="DIR",
        help="write the metrics rows, learning rate, gradient norm and image grids for TensorBoard into DIR "
        "(RUN_DIR/tensorboard when DIR is left out; default: no TensorBoard files)",
    )
    add_progress(p)
    add_common(p)


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The config ``pyro-vae train`` trains with: each setting from its flag, else from ``--preset``,
    else from ``--config FILE``, else ``TrainConfig``'s default; with ``--resume``, the checkpoint's
    (:func:`~pyro_vae.training.resume.resume_config`, the settings given checked against it)."""
    given = settings_given(args, ("model", "estimator", "optimizer", "schedule"))
    if args.resume:  # the checkpoint's config, see pyro_vae.training.resume
        if args.run_dir is None:
            raise ValueError("--resume needs --run-dir")
        if args.config is not None:
            raise ValueError(f"--resume takes every setting from the checkpoint in {args.run_dir}; drop --config")
        return resume_config(args.run_dir, given, args.preset)
    from_file = read_config_file(args.config) if args.config is not None else {}
    # m1=RUN_DIR as typed is relative to this shell's folder; the saved config names it absolutely
    return with_absolute_sources(TrainConfig.from_dict({**from_file, **PRESETS.get(args.preset, {}), **given}))


def cmd_train(args: argparse.Namespace) -> None:
    with session(resolve_device(args.device)) as (distributed, device):
        _train_command(args, distributed, device)


def _train_command(args, distributed: DistributedContext, device: str) -> None:
    def start() -> tuple[TrainConfig, Path]:  # on rank 0: one config, one folder name for all
        config = _config_from_args(args)
        run_dir = args.run_dir or Path("runs") / f"{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
        processes = f" ({distributed.world_size} processes)" if distributed.active else ""
        print(f"run directory: {run_dir}\nconfig: {asdict(config)}\nmachine: {machine()}{processes}")
        return config, run_dir

    config, run_dir = distributed.on_main(start)
    args.run_dir = run_dir
    callbacks: list[object] = []
    if args.early_stopping is not None:
        metric = run_kind(config).validation_metric(config)
        if metric is None:
            raise ValueError(
                "--early-stopping watches a validation metric and this run has none: add --validation-fraction F "
                "(e.g. 0.1) to hold part of the training set out"
            )
        callbacks.append(EarlyStopping(metric, patience=args.early_stopping))
    if args.tensorboard is not None and distributed.is_main:
        from pyro_vae.plots.tensorboard import TensorBoard

        callbacks.append(TensorBoard(args.tensorboard or Path(run_dir) / "tensorboard"))
    run = train(
        config,
        run_dir,
        data_dir=args.data_dir,
        data=None if args.data is None else read_data(args.data),
        device=device,
        resume=args.resume,
        progress=args.progress,
        keep_every=args.keep_every,
        distributed=distributed,
        validate_every_step=args.validate_every_step,
        jit=args.jit,
        callbacks=callbacks,
        allow_process_change=args.allow_process_change,
    )
    final_report(
        run,
        run_dir,
        distributed,
        num_samples=args.num_samples,
        device=device,
        num_test=args.num_test,
        callbacks=callbacks,
        progress=show_progress(args),
    )
    distributed.on_main(lambda: write_run_figures(run, run_dir / "figures", progress=show_progress(args)))


register_command(
    "train",
    add_train_arguments,
    cmd_train,
    distributed=True,
    help="train a model with SVI (or a baseline algorithm), evaluate it and write its figures",
)
