"""The ``pyro-vae`` command line: train, evaluate, plot, variance, reproduce, structures, benchmark, graph.

Choices and their help come from the registries (models, estimators,
algorithms, data sets, optimizers, schedules, likelihoods); ``--import
MODULE`` (before the subcommand) imports a module that registers more, e.g. a
user's own model for ``pyro-vae --import mymodels train --model mine``.

``train`` and ``evaluate`` also run on several processes, launched by torchrun:
``torchrun --nproc_per_node 2 -m pyro_vae train ...``
(:mod:`pyro_vae.training.distributed`); rank 0 alone prints and writes.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import platform
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from pyro_vae.data import DATASETS, DatasetNotFoundError
from pyro_vae.experiments.reproduce import BUDGETS, FIG2_DATASETS, FIGURES, reproduce
from pyro_vae.experiments.structures import ENTRIES, run_table
from pyro_vae.inference import ALGORITHMS, ESTIMATORS, LR_SCHEDULES, OPTIMIZERS
from pyro_vae.models import MODELS
from pyro_vae.models.likelihoods import LIKELIHOODS
from pyro_vae.models.nets import ACTIVATIONS
from pyro_vae.registry import Registry
from pyro_vae.training.checkpoint import CheckpointError
from pyro_vae.training.config import PRESETS, TrainConfig
from pyro_vae.training.distributed import SINGLE, DistributedContext, launched_by_torchrun, lost_peer_message, session
from pyro_vae.training.loop import CONFIG, TrainingDiverged, load_run, train
from pyro_vae.training.report import evaluate_run, report_path
from pyro_vae.training.resume import resume_config
from pyro_vae.files import atomic_write_json
from pyro_vae.training.run_dir import RunDirBusyError
from pyro_vae.validation import (
    Terminated, check_cli_args, check_device, describe_error, interrupted_message, sigterm_interrupts,
)

# OSError covers FileExistsError, DatasetNotFoundError and a failed write (read-only folder, full disk).
USER_ERRORS = (ValueError, TypeError, CheckpointError, DatasetNotFoundError, TrainingDiverged, OSError, RunDirBusyError)


def machine() -> str:
    """One line naming the machine, for reports."""
    cpu = platform.processor() or platform.machine()
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {torch.get_num_threads()} torch threads{gpu}, torch {torch.__version__}"


def resolve_device(name: str) -> str:
    """The device a ``--device`` value names (see :func:`pyro_vae.validation.check_device`)."""
    return check_device(name)


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def _add_pass_sizes(p: argparse.ArgumentParser, batch_help: str) -> None:
    """Evaluation passes: ``--batch-size`` images x ``--chunk-size`` importance samples each."""
    p.add_argument("--batch-size", type=int, default=100, help=batch_help)
    p.add_argument("--chunk-size", type=int, default=500,
                   help="importance samples per pass (default 500; larger passes pay Pyro's tracing less often, "
                        "e.g. 5000 on a GPU)")


def _add_common(p: argparse.ArgumentParser) -> None:
    _add_threads(p)
    p.add_argument("--data-dir", help="folder with MNIST/raw, FashionMNIST/raw, frey/ (default: $PYRO_VAE_DATA, else download)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")


def _add_choice(p: argparse.ArgumentParser, flag: str, registry: Registry, **kwargs) -> None:
    """``--flag NAME`` with the registry's names as choices and their help lines as help."""
    p.add_argument(flag, choices=registry.names(), help=registry.describe(), **kwargs)


def _model_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a Python name as KEY, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a plain string


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model with SVI (or a baseline algorithm), evaluate it and write its figures")
    p.add_argument("--preset", choices=sorted(PRESETS), help="paper: AEVB MNIST setting; iwae: Burda et al. 784-200-200-50")
    _add_choice(p, "--model", MODELS)
    p.add_argument("--model-option", dest="model_option", type=_model_option, action="append", metavar="KEY=VALUE",
                   help="an option of the model's constructor, e.g. --model-option num_components=10 (repeatable)")
    _add_choice(p, "--dataset", DATASETS)
    p.add_argument("--z-dim", type=int)
    p.add_argument("--hidden", type=int, nargs="+", help="hidden layer sizes, e.g. --hidden 200 200")
    p.add_argument("--activation")
    _add_choice(p, "--likelihood", LIKELIHOODS)
    p.add_argument("--init-std", type=float, help="weights ~ N(0, std^2) (paper: 0.01)")
    _add_choice(p, "--estimator", ESTIMATORS)
    p.add_argument("--num-particles", type=int, help="samples L per datum")
    _add_choice(p, "--optimizer", OPTIMIZERS)
    p.add_argument("--lr", type=float)
    _add_choice(p, "--lr-schedule", LR_SCHEDULES)
    p.add_argument("--weight-decay", type=float, help="1.0 is a N(0, I) prior on the weights")
    p.add_argument("--batch-size", type=int, help="minibatch size M")
    _add_choice(p, "--algorithm", ALGORITHMS)
    p.add_argument("--num-train", type=int, help="train on the first N training points only")
    p.add_argument("--num-labels", type=int, help="keep N training labels, balanced over classes (semi-supervised)")
    p.add_argument("--labelled-per-batch", type=int,
                   help="put M_l labelled points in every minibatch (with --num-labels; M2's setting)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--kl-warmup", type=int,
                   help="KL warm-up over W epochs: the latent terms weighted by min(1, epoch / W) (default 0: off)")
    p.add_argument("--evals-per-decade", type=int,
                   help="metrics rows (test ELBO) per decade of training samples instead of one per epoch")
    p.add_argument("--eval-samples", type=int, help="z per test datum of each row's test ELBO (default 1)")
    p.add_argument("--seed", type=int)
    p.add_argument("--run-dir", type=Path, help="default: runs/<dataset>-<time>")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    p.add_argument("--eval-k", type=int, default=100, help="importance samples per test image for the final log p(x) (default 100; reported numbers use `evaluate -k 5000`)")
    p.add_argument("--keep-every", type=int, default=0, help="keep a copy of every N-th epoch's checkpoint")
    p.add_argument("--validate-every-step", action="store_true",
                   help="keep Pyro's validation on for every step (default: the first step only)")
    p.add_argument("--jit", action="store_true",
                   help="compile the ELBO (Pyro's JitTrace_ELBO, one graph per batch shape): same numbers, "
                        "without Pyro's per-step tracing; for models of static structure")
    p.add_argument("--no-progress", action="store_true")
    _add_common(p)


def _config_from_args(args) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if args.model_option:
        given["model_options"] = dict(args.model_option)
    if args.resume:  # the checkpoint's config, see pyro_vae.training.resume
        if args.run_dir is None:
            raise ValueError("--resume needs --run-dir")
        return resume_config(args.run_dir, given, args.preset)
    return TrainConfig.from_dict({**PRESETS.get(args.preset, {}), **given})


def _evaluate_report(
    run, run_dir: Path, k: int, device: str, num_test: int | None, distributed: DistributedContext = SINGLE,
    **sizes: int,
) -> dict:
    """Evaluate (each process its shard of the test set), print the numbers, then write them
    (a failed write loses nothing printed); rank 0 alone prints and writes."""
    report = {**evaluate_run(run, k, device, num_test, distributed, **sizes), "machine": machine()}
    num = report["num_test"]
    path = report_path(run_dir, report["epoch"], k, num)

    def write() -> None:
        print(
            f"epoch {report['epoch']}: test ELBO ({k}-sample mean) {report['test_elbo']:.2f}, "
            f"log p(x) (IS, K={k}) {report['test_log_px']:.2f} nats over {num} test images"
            + (f", test error {100 * report['test_error']:.2f}%" if "test_error" in report else "") + f" -> {path}",
            flush=True,
        )
        atomic_write_json(path, report)

    distributed.on_main(write)
    return report


def cmd_train(args) -> None:
    with session(resolve_device(args.device)) as (distributed, device):
        _train_command(args, distributed, device)


def _train_command(args, distributed: DistributedContext, device: str) -> None:
    from pyro_vae.plots import write_figures

    def start() -> tuple[TrainConfig, Path]:  # on rank 0: one config, one folder name for all
        config = _config_from_args(args)
        run_dir = args.run_dir or Path("runs") / f"{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
        processes = f" ({distributed.world_size} processes)" if distributed.active else ""
        print(f"run directory: {run_dir}\nconfig: {asdict(config)}\nmachine: {machine()}{processes}")
        return config, run_dir

    config, run_dir = distributed.on_main(start)
    args.run_dir = run_dir
    run = train(
        config, run_dir, data_dir=args.data_dir, device=device, resume=args.resume,
        progress=not args.no_progress, keep_every=args.keep_every, distributed=distributed,
        validate_every_step=args.validate_every_step, jit=args.jit,
    )
    _evaluate_report(run, run_dir, args.eval_k, device, None, distributed)
    distributed.on_main(lambda: [print(f"wrote {path}") for path in write_figures(run, run_dir / "figures")])


def cmd_evaluate(args) -> None:
    with session(resolve_device(args.device)) as (distributed, device):
        with distributed.local_main_first():  # one data download per machine
            run = load_run(args.run_dir, args.data_dir, device, checkpoint=args.checkpoint)
        _evaluate_report(run, args.run_dir, args.k, device, args.num_test, distributed,
                         batch_size=args.batch_size, chunk_size=args.chunk_size)


def cmd_plot(args) -> None:
    from pyro_vae.plots import write_figures

    run = load_run(args.run_dir, args.data_dir, resolve_device(args.device))
    for path in write_figures(run, args.out or args.run_dir / "figures"):
        print(f"wrote {path}")


def cmd_variance(args) -> None:
    from pyro_vae.experiments.variance_study import StudyConfig, compare_at_run, run_study

    preset = dict(PRESETS.get(args.preset, {}))
    values = {**preset, **{k: v for k, v in vars(args).items() if k in ("dataset", "z_dim", "hidden", "epochs", "batch_size", "seed") and v is not None}}
    values.setdefault("dataset", "mnist")
    study = StudyConfig(
        base=TrainConfig.from_dict(values),
        estimators=args.estimators,
        num_draws=args.draws,
        adapt_steps=args.adapt_steps,
        z_dims=args.z_dims,
        **({"particles": args.particles} if args.particles else {}),
    )
    print(f"variance study -> {args.out}\nmachine: {machine()}")
    if args.run_dir:
        compare_at_run(args.run_dir, study, args.out, args.data_dir, resolve_device(args.device), args.particles or ())
    else:
        run_study(study, args.out, args.data_dir, resolve_device(args.device))
    print((args.out / "summary.md").read_text())


def cmd_reproduce(args) -> None:
    print(f"reproducing {args.figure} ({args.budget} budget) -> {args.out}\nmachine: {machine()}")
    rows = reproduce(args.figure, args.out, args.budget, args.data_dir, resolve_device(args.device), args.partial,
                     args.jobs, args.z_dims, args.datasets)
    print(f"{len(rows)} rows -> {args.out / (args.figure + '.csv')}")
    for path in sorted(args.out.glob(f"{args.figure}*.png")):
        print(f"wrote {path}")


def cmd_structures(args) -> None:
    entries = args.entries or list(ENTRIES)
    print(f"latent structures {' '.join(entries)} -> {args.out}\nmachine: {machine()}")
    run_table(args.out, entries, args.seeds, args.epochs, args.k, args.num_test, args.data_dir,
              resolve_device(args.device), args.jobs, args.num_train, args.activation)
    print((args.out / "table.md").read_text())


def cmd_benchmark(args) -> None:
    from pyro_vae.experiments.benchmark import run_benchmark, run_eval_benchmark

    device = resolve_device(args.device)
    preset = PRESETS[args.preset]
    hidden, z_dim = tuple(args.hidden or preset["hidden"]), args.z_dim or preset["z_dim"]
    if args.evaluate:
        result = run_eval_benchmark(
            hidden=hidden, z_dim=z_dim, num_images=args.num_images, num_samples=args.k, rounds=args.rounds,
            device=device, batch_size=args.batch_size, chunk_size=args.chunk_size,
        )
        what = f"evaluation of {args.num_images} images, K = {args.k}"
    else:
        result = run_benchmark(
            hidden=hidden, z_dim=z_dim, batch_size=args.batch_size, steps=args.steps, rounds=args.rounds,
            device=device, num_particles=args.num_particles, jit=args.jit,
        )
        what = "training step" + (f", IWAE k = {args.num_particles}" if args.num_particles > 1 else "")
        what += ", pyro_vae with --jit" if args.jit else ""
    result.update(machine=machine(), device=device, hidden=list(hidden), z_dim=z_dim, what=what)
    print(
        f"{what}, 784-{'-'.join(map(str, hidden))}-{z_dim}: hand-written PyTorch {result['handwritten_ms']:.2f} ms, "
        f"pyro_vae {result['pyro_vae_ms']:.2f} ms: ratio {result['ratio']:.3f}, overhead "
        f"{result['overhead_ms']:.2f} ms ({result['machine']})"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


# --- graph autoencoders (issue #11): pyro-vae graph train | table ---------------------
def _add_graph(sub) -> None:
    from pyro_vae.experiments.graph import GRAPH_ESTIMATORS, GraphConfig
    from pyro_vae.graph_data import GRAPH_DATASETS
    from pyro_vae.models.vgae import GRAPH_MODELS

    graph = sub.add_parser("graph", help="(variational) graph autoencoders for link prediction (Kipf & Welling 2016)")
    graph_sub = graph.add_subparsers(dest="graph_command", required=True)
    defaults = GraphConfig()

    def add_config(p) -> None:
        p.add_argument("--estimator", choices=GRAPH_ESTIMATORS, help=f"default {defaults.estimator}")
        p.add_argument("--num-particles", type=int)
        p.add_argument("--hidden", type=int, help=f"first GCN layer units (default {defaults.hidden})")
        p.add_argument("--z-dim", type=int, help=f"latent dimension (default {defaults.z_dim})")
        p.add_argument("--lr", type=float, help=f"Adam learning rate (default {defaults.lr})")
        p.add_argument("--epochs", type=int, help=f"full-batch steps (default {defaults.epochs})")
        p.add_argument("--split-seed", type=int, help="seed of the 85/5/10 link split (default 0)")
        p.add_argument("--data-dir", help="folder with Planetoid/<Name>/raw (default: $PYRO_VAE_DATA, else download)")
        p.add_argument("--no-progress", action="store_true")
        _add_threads(p)

    p = graph_sub.add_parser("train", help="train one graph autoencoder and report its test AUC and AP")
    p.add_argument("--model", choices=GRAPH_MODELS.names(), help=GRAPH_MODELS.describe())
    p.add_argument("--dataset", choices=GRAPH_DATASETS.names(), help=GRAPH_DATASETS.describe())
    p.add_argument("--seed", type=int)
    p.add_argument("--run-dir", type=Path, help="default: runs/<model>-<dataset>-<time>")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    add_config(p)
    p.set_defaults(func=cmd_graph_train)

    p = graph_sub.add_parser("table", help="Table 1 of Kipf & Welling (2016): test AUC/AP, mean +- std over seeds")
    p.add_argument("--models", nargs="+", choices=GRAPH_MODELS.names(), default=["vgae", "gae"])
    p.add_argument("--datasets", nargs="+", choices=GRAPH_DATASETS.names(), default=["cora", "citeseer"])
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 per model and data set (default 10)")
    p.add_argument("--out", type=Path, default=Path("runs/vgae"))
    p.add_argument("--split-per-seed", action="store_true",
                   help="run s uses the link split s too (tkipf/gae draws a new split per run); default: --split-seed")
    add_config(p)
    p.set_defaults(func=cmd_graph_table)


def _graph_config(args, **values):
    from pyro_vae.experiments.graph import GraphConfig

    names = {f.name for f in fields(GraphConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
    return GraphConfig.from_dict(values)


def cmd_graph_train(args) -> None:
    from pyro_vae.experiments.graph import evaluate_graph_run, train_graph

    values = {}
    if args.resume:
        if args.run_dir is None:
            raise ValueError("--resume needs --run-dir")
        if not (args.run_dir / CONFIG).is_file():
            raise CheckpointError(f"no {CONFIG} in {args.run_dir}: nothing to resume")
        values = json.loads((args.run_dir / CONFIG).read_text())
        if "split_seed" not in values:  # a TrainConfig's: a VAE run
            raise CheckpointError(f"{args.run_dir} holds a pyro-vae train run, not a graph run; resume it with "
                                  f"pyro-vae train --run-dir {args.run_dir} --resume")
    config = _graph_config(args, **values)
    run_dir = args.run_dir or Path("runs") / f"{config.model}-{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"run directory: {run_dir}\nconfig: {asdict(config)}\nmachine: {machine()}")
    run = train_graph(config, run_dir, data_dir=args.data_dir, resume=args.resume, progress=not args.no_progress)
    report = evaluate_graph_run(run, run_dir)
    print(f"epoch {report['epoch']}: test AUC {100 * report['auc']:.2f}, AP {100 * report['ap']:.2f} "
          f"({report['train_wall_seconds']:.1f} s of training)")


def cmd_graph_table(args) -> None:
    from pyro_vae.experiments.graph import markdown_table, run_table

    print(f"graph autoencoder table -> {args.out}\nmachine: {machine()}")
    summary = run_table(args.out, models=args.models, datasets=args.datasets, seeds=args.seeds,
                        base=_graph_config(args), data_dir=args.data_dir, progress=not args.no_progress,
                        split_per_seed=args.split_per_seed)
    print(markdown_table(summary))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyro-vae", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--import", dest="imports", action="append", metavar="MODULE", default=[],
                        help="import MODULE first (it may register models, estimators, ...); repeatable")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)

    p = sub.add_parser("evaluate", help="test ELBO and importance-sampled log p(x) of a trained run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("-k", type=int, default=5000, help="importance samples per test image (default 5000)")
    p.add_argument("--num-test", type=int, help="evaluate on the first N test images only")
    p.add_argument("--checkpoint", type=Path, help="a kept checkpoint instead of the run's last one")
    _add_pass_sizes(p, "test images per pass (default 100)")
    _add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("plot", help="samples, reconstructions, curves, latents, manifold of a run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, help="default: RUN_DIR/figures")
    _add_common(p)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("variance", help="compare the variance of ELBO gradient estimators and write table + figures")
    p.add_argument("--out", type=Path, default=Path("runs/variance"))
    p.add_argument("--preset", choices=sorted(PRESETS))
    _add_choice(p, "--dataset", DATASETS)
    p.add_argument("--z-dim", type=int)
    p.add_argument("--hidden", type=int, nargs="+")
    p.add_argument("--epochs", type=int, default=5, help="training epochs per estimator (default 5)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--estimators", nargs="+", choices=ESTIMATORS.names(), default=ESTIMATORS.names(),
                   help=ESTIMATORS.describe())
    p.add_argument("--draws", type=int, default=100, help="gradient draws R per estimator (default 100)")
    p.add_argument("--adapt-steps", type=int, default=300, help="minibatches to adapt baselines on (default 300)")
    p.add_argument("--particles", type=int, nargs="+",
                   help="particle counts K of step 3 (default 1 4 16; with --run-dir, none unless given)")
    p.add_argument("--z-dims", type=int, nargs="+", default=[2, 5, 10, 20, 50])
    p.add_argument("--run-dir", type=Path, help="only compare the estimators at this trained run's last checkpoint")
    _add_common(p)
    p.set_defaults(func=cmd_variance)

    p = sub.add_parser("benchmark", help="time a pyro_vae training step (or evaluation) against hand-written PyTorch")
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                   help="architecture: paper 784-500-20 (default), iwae 784-200-200-50")
    p.add_argument("--hidden", type=int, nargs="+", help="hidden sizes (default: the preset's)")
    p.add_argument("--z-dim", type=int, help="latent size (default: the preset's)")
    p.add_argument("--num-particles", type=int, default=1, help="K > 1: the IWAE bound with K particles")
    p.add_argument("--steps", type=int, default=50, help="steps per timing round")
    p.add_argument("--rounds", type=int, default=10, help="alternating rounds; medians are reported")
    p.add_argument("--evaluate", action="store_true",
                   help="time evaluation (importance-sampled log p(x)) instead of a training step")
    p.add_argument("--jit", action="store_true", help="time pyro_vae's step with the ELBO compiled (train --jit)")
    p.add_argument("-k", type=int, default=1000, help="--evaluate: importance samples per image (default 1000)")
    p.add_argument("--num-images", type=int, default=200, help="--evaluate: images (default 200)")
    _add_pass_sizes(p, "minibatch of a training step; with --evaluate, images per pass (default 100)")
    _add_threads(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, help="also write the result as JSON")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("reproduce", help="reproduce a figure of the AEVB paper (fig2: AEVB vs wake-sleep, "
                       "fig3: log p(x), fig4: 2-D manifolds, fig5: samples)")
    p.add_argument("figure", choices=FIGURES)
    p.add_argument("--budget", choices=list(BUDGETS), default="small",
                   help="training samples per run: small 1.8e5 (minutes on a laptop CPU, the default), "
                   "medium 1e7 (hours on a CPU), full 1e8 (the paper's; a GPU job); tiny for smoke tests")
    p.add_argument("--out", type=Path, default=Path("runs/reproduce"), help="default: runs/reproduce")
    p.add_argument("--partial", action="store_true",
                   help="fig2, fig3: draw the curves of the runs as far as their checkpoints go, training nothing")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs trained at once, each in its own process with --threads torch threads (default 1)")
    p.add_argument("--z-dims", type=int, nargs="+",
                   help="fig2: only these of the budget's latent sizes (its runs and panels), e.g. 200")
    p.add_argument("--datasets", nargs="+", choices=FIG2_DATASETS, help="fig2: only these data sets")
    _add_common(p)
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("structures", help="train and evaluate every latent structure and objective at one budget "
                       "(one table: ELBO, IS log p(x), M2's test error, against the papers)")
    p.add_argument("entries", nargs="*", metavar="ENTRY",  # checked by run_table: argparse rejects [] with choices
                   help="rows of the table (default: all): " + "; ".join(f"{k}: {v.description}" for k, v in ENTRIES.items()))
    p.add_argument("--epochs", type=int, default=10, help="epochs per run (default 10)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per entry (default 1)")
    p.add_argument("-k", type=int, default=5000, help="importance samples per test image (default 5000)")
    p.add_argument("--num-test", type=int, help="first N test images (default: all 10,000)")
    p.add_argument("--num-train", type=int, help="first N training images (default: all 60,000)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process (default 1)")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS),
                   help="hidden units of every entry instead of Burda et al.'s tanh (use another --out)")
    p.add_argument("--out", type=Path, default=Path("runs/structures"), help="default: runs/structures")
    _add_common(p)
    p.set_defaults(func=cmd_structures)

    _add_graph(sub)

    sub.choices["train"].set_defaults(func=cmd_train)
    return parser


def _import_plugins(argv: list[str]) -> None:
    """Import the ``--import MODULE`` modules before the parser is built, so that what
    they register appears among the choices."""
    names = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--import"]
    names += [arg.partition("=")[2] for arg in argv if arg.startswith("--import=")]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ValueError(f"--import {name}: {err}") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        _import_plugins(argv)
    except ValueError as err:
        print(f"pyro-vae: error: {err}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        check_cli_args(args)  # every numeric flag, before any work
        if launched_by_torchrun() and args.command not in ("train", "evaluate"):
            raise ValueError(f"{args.command} runs on one process; only train and evaluate run under torchrun")
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        with sigterm_interrupts():  # SIGTERM says how to resume, as Ctrl-C does
            args.func(args)
    except USER_ERRORS as err:
        print(f"pyro-vae: error: {describe_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"pyro-vae: {interrupted_message(args.command, getattr(args, 'run_dir', None))}", file=sys.stderr)
        return err.exit_status if isinstance(err, Terminated) else 130
    except RuntimeError as err:  # under torchrun: a peer process died
        if (line := lost_peer_message(err, args.command, getattr(args, "run_dir", None))) is None:
            raise
        print(f"pyro-vae: error: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
