"""``pyro-vae train``, ``evaluate`` and ``plot``: one run, from training to its report and figures."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, fields
from pathlib import Path

from pyro_vae.cli.args import (
    add_choice,
    add_common,
    add_num_samples,
    add_pass_sizes,
    at_least,
    key_value,
    non_negative_float,
    positive_float,
    positive_int,
    resolve_device,
)
from pyro_vae.cli.commands import machine, register_command
from pyro_vae.data import DATASETS
from pyro_vae.files import atomic_write_json
from pyro_vae.inference import ALGORITHMS, ESTIMATORS, LR_SCHEDULES, OPTIMIZERS
from pyro_vae.models import MODELS
from pyro_vae.models.likelihoods import LIKELIHOODS
from pyro_vae.models.nets import INITIALIZATIONS
from pyro_vae.pretrained import report_dir, resolve_run
from pyro_vae.training import evaluate_graph_run, load_run, train
from pyro_vae.training.build import with_absolute_sources
from pyro_vae.training.config import PRESETS, TrainConfig, data_kind
from pyro_vae.training.distributed import SINGLE, DistributedContext, session
from pyro_vae.training.report import evaluate_run, report_path
from pyro_vae.training.resume import resume_config


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="paper: AEVB MNIST setting; iwae: Burda et al. 784-200-200-50; "
        "kipf: Kipf & Welling's graph autoencoder (GCN 32-16, Adam 0.01, 200 epochs); sbn-linear, "
        "sbn-nonlinear: the discrete-estimator papers' sigmoid belief networks (200 binary units, linear "
        "or two tanh layers of 200)",
    )
    add_choice(p, "--model", MODELS)
    p.add_argument(
        "--model-option",
        dest="model_option",
        type=key_value,
        action="append",
        metavar="KEY=VALUE",
        help="an option of the model's constructor, e.g. --model-option num_components=10 (repeatable)",
    )
    add_choice(p, "--dataset", DATASETS)
    p.add_argument("--z-dim", type=positive_int)
    p.add_argument("--hidden", type=positive_int, nargs="+", help="hidden layer sizes, e.g. --hidden 200 200")
    p.add_argument("--activation")
    add_choice(p, "--likelihood", LIKELIHOODS)
    p.add_argument("--init-std", type=positive_float, help="weights ~ N(0, std^2) (paper: 0.01)")
    add_choice(p, "--init", INITIALIZATIONS)
    add_choice(p, "--estimator", ESTIMATORS)
    p.add_argument(
        "--estimator-option",
        dest="estimator_option",
        type=key_value,
        action="append",
        metavar="KEY=VALUE",
        help="a keyword of the estimator's builder, e.g. the beta of a user's "
        "beta-ELBO: --estimator-option beta=4.0 (repeatable)",
    )
    p.add_argument("--num-particles", type=positive_int, help="samples L per datum")
    add_choice(p, "--optimizer", OPTIMIZERS)
    p.add_argument("--lr", type=positive_float)
    p.add_argument(
        "--optimizer-option",
        dest="optimizer_option",
        type=key_value,
        action="append",
        metavar="KEY=VALUE",
        help="a keyword of the torch optimizer, e.g. --optimizer-option momentum=0.9 or betas=(0.9,0.999) (repeatable)",
    )
    add_choice(p, "--lr-schedule", LR_SCHEDULES)
    p.add_argument(
        "--schedule-option",
        dest="schedule_option",
        type=key_value,
        action="append",
        metavar="KEY=VALUE",
        help="a keyword of the schedule, e.g. --schedule-option gamma=0.5, or warmup=W for a linear "
        "warm-up over the first W epochs in front of any schedule (repeatable)",
    )
    p.add_argument("--weight-decay", type=non_negative_float, help="1.0 is a N(0, I) prior on the weights")
    p.add_argument("--batch-size", type=positive_int, help="minibatch size M")
    add_choice(p, "--algorithm", ALGORITHMS)
    p.add_argument("--num-train", type=positive_int, help="train on the first N training points only")
    p.add_argument(
        "--num-labels", type=positive_int, help="keep N training labels, balanced over classes (semi-supervised)"
    )
    p.add_argument(
        "--labelled-per-batch",
        type=at_least(0),
        help="put M_l labelled points in every minibatch (with --num-labels; M2's setting)",
    )
    p.add_argument("--epochs", type=positive_int)
    p.add_argument(
        "--kl-warmup",
        type=at_least(0),
        help="KL warm-up over W epochs: the latent terms weighted by min(1, epoch / W) (default 0: off)",
    )
    p.add_argument(
        "--evals-per-decade",
        type=at_least(0),
        help="metrics rows (test ELBO) per decade of training samples instead of one per epoch",
    )
    p.add_argument(
        "--metrics-num-samples", type=positive_int, help="z per test datum of each metrics row's test ELBO (default 1)"
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--split-seed", type=int, help="graph data: seed of the 85/5/10 link split (default 0)")
    p.add_argument("--run-dir", type=Path, help="default: runs/<dataset>-<time>")
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
    p.add_argument("--keep-every", type=at_least(0), default=0, help="keep a copy of every N-th epoch's checkpoint")
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
        help="write the metrics rows, learning rate, gradient norm and image grids for TensorBoard "
        "(default DIR: RUN_DIR/tensorboard)",
    )
    p.add_argument("--no-progress", action="store_true")
    add_common(p)


def _config_from_args(args) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    for flag in ("model", "estimator", "optimizer", "schedule"):
        if getattr(args, f"{flag}_option"):
            given[f"{flag}_options"] = dict(getattr(args, f"{flag}_option"))
    if args.resume:  # the checkpoint's config, see pyro_vae.training.resume
        if args.run_dir is None:
            raise ValueError("--resume needs --run-dir")
        return resume_config(args.run_dir, given, args.preset)
    # m1=RUN_DIR as typed is relative to this shell's folder; the saved config names it absolutely
    return with_absolute_sources(TrainConfig.from_dict({**PRESETS.get(args.preset, {}), **given}))


def _evaluate_report(
    run,
    run_dir: Path,
    num_samples: int,
    device: str,
    num_test: int | None,
    distributed: DistributedContext = SINGLE,
    **options,
) -> dict:
    """Evaluate (each process its shard of the test set), print the numbers, then write them
    (a failed write loses nothing printed); rank 0 alone prints and writes."""
    report = {**evaluate_run(run, num_samples, device, num_test, distributed, **options), "machine": machine()}
    num = report["num_test"]
    path = report_path(run_dir, report["epoch"], num_samples, num, options.get("marginal", False), options.get("seed"))

    def write() -> None:
        print(
            f"epoch {report['epoch']}: test ELBO ({num_samples}-sample mean) {report['test_elbo']:.2f}, "
            f"{report['log_likelihood_of']} (IS, K={num_samples}) "
            f"{report['test_log_px']:.2f} nats over {num} test images"
            + (f", test error {100 * report['test_error']:.2f}%" if "test_error" in report else "")
            + f" -> {path}",
            flush=True,
        )
        atomic_write_json(path, report)

    distributed.on_main(write)
    return report


def _graph_report(run, run_dir: Path) -> dict:
    """Test AUC and AP of a graph run, printed and written to ``run_dir/test-epochNNNN.json``."""
    report = evaluate_graph_run(run, run_dir)
    print(
        f"epoch {report['epoch']}: test AUC {100 * report['auc']:.2f}, AP {100 * report['ap']:.2f} "
        f"({report['train_wall_seconds']:.1f} s of training)"
    )
    return report


def cmd_train(args) -> None:
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
    callbacks = []
    if args.tensorboard is not None and distributed.is_main:
        from pyro_vae.plots.tensorboard import TensorBoard

        callbacks.append(TensorBoard(args.tensorboard or Path(run_dir) / "tensorboard"))
    run = train(
        config,
        run_dir,
        data_dir=args.data_dir,
        device=device,
        resume=args.resume,
        progress=not args.no_progress,
        keep_every=args.keep_every,
        distributed=distributed,
        validate_every_step=args.validate_every_step,
        jit=args.jit,
        callbacks=callbacks,
        allow_process_change=args.allow_process_change,
    )
    if data_kind(config) == "graph":
        _graph_report(run, run_dir)
        return
    _evaluate_report(run, run_dir, args.num_samples, device, args.num_test, distributed)
    distributed.on_main(lambda: _write_figures(run, run_dir / "figures"))


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN", help="a run folder, or pretrained:NAME (pyro_vae.pretrained)")
    add_num_samples(p, 5000)
    p.add_argument("--num-test", type=positive_int, help="evaluate on the first N test images only")
    p.add_argument("--checkpoint", type=Path, help="a kept checkpoint instead of the run's last one")
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
    add_common(p)


def cmd_evaluate(args) -> None:
    with session(resolve_device(args.device)) as (distributed, device):
        with distributed.local_main_first():  # one data download per machine
            run = resolve_run(args.run_dir, args.data_dir, device, checkpoint=args.checkpoint)
        if data_kind(run.config) == "graph":
            _graph_report(run, report_dir(args.run_dir))
            return
        _evaluate_report(
            run,
            report_dir(args.run_dir),
            args.num_samples,
            device,
            args.num_test,
            distributed,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            marginal=args.marginal,
            seed=args.seed,
        )


def add_plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, help="default: RUN_DIR/figures")
    p.add_argument(
        "--figures",
        nargs="+",
        metavar="NAME",
        help="draw only these, by name (pyro_vae.plots.run.RUN_FIGURES; an unknown name lists them; "
        "default: every figure the program has what it needs for)",
    )
    add_common(p)


def _write_figures(run, out_dir: Path, names=None) -> None:
    """Write the run's figures, print each path, and one line naming the figures not drawn and why."""
    from pyro_vae.plots import write_figures

    skipped: list[str] = []
    for path in write_figures(run, out_dir, names=names, skipped=lambda name, why: skipped.append(f"{name} ({why})")):
        print(f"wrote {path}")
    if skipped:
        print(f"figures not drawn: {'; '.join(skipped)}")


def cmd_plot(args) -> None:
    run = load_run(args.run_dir, args.data_dir, resolve_device(args.device))
    _write_figures(run, args.out or args.run_dir / "figures", args.figures)


register_command(
    "train",
    add_train_arguments,
    cmd_train,
    distributed=True,
    help="train a model with SVI (or a baseline algorithm), evaluate it and write its figures",
)
register_command(
    "evaluate",
    add_evaluate_arguments,
    cmd_evaluate,
    distributed=True,
    help="test ELBO and importance-sampled log p(x) of a trained run",
)
register_command(
    "plot", add_plot_arguments, cmd_plot, help="samples, reconstructions, curves, latents, manifold of a run"
)
