"""The ``pyro-vae`` command line: train, evaluate, plot, variance, benchmark."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from pyro_vae.training.checkpoint import CheckpointError
from pyro_vae.data import DATASETS, DatasetNotFoundError
from pyro_vae.inference.estimators import ESTIMATORS
from pyro_vae.inference.evaluate import evaluate
from pyro_vae.models.likelihoods import LIKELIHOODS
from pyro_vae.inference.lr_schedules import LR_SCHEDULES
from pyro_vae.experiments.reproduce import FIGURES, reproduce
from pyro_vae.training.loop import ALGORITHMS, CONFIG, OPTIMIZERS, PRESETS, TrainConfig, TrainingDiverged, load_run, train

USER_ERRORS = (ValueError, TypeError, CheckpointError, DatasetNotFoundError, TrainingDiverged, FileExistsError)


def machine() -> str:
    """One line naming the machine, for reports."""
    cpu = platform.processor() or platform.machine()
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {torch.get_num_threads()} torch threads{gpu}, torch {torch.__version__}"


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return name


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def _add_common(p: argparse.ArgumentParser) -> None:
    _add_threads(p)
    p.add_argument("--data-dir", help="folder with MNIST/raw, FashionMNIST/raw, frey/ (default: $PYRO_VAE_DATA, else download)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a VAE with SVI, evaluate it and write its figures")
    p.add_argument("--preset", choices=sorted(PRESETS), help="paper: AEVB MNIST setting; iwae: Burda et al. 784-200-200-50")
    p.add_argument("--dataset", choices=DATASETS)
    p.add_argument("--z-dim", type=int)
    p.add_argument("--hidden", type=int, nargs="+", help="hidden layer sizes, e.g. --hidden 200 200")
    p.add_argument("--activation")
    p.add_argument("--likelihood", choices=sorted(LIKELIHOODS))
    p.add_argument("--init-std", type=float, help="weights ~ N(0, std^2) (paper: 0.01)")
    p.add_argument("--estimator", choices=ESTIMATORS, help="reparam = Trace_ELBO (estimator A), reparam-analytic-kl = TraceMeanField_ELBO (B)")
    p.add_argument("--num-particles", type=int, help="samples L per datum")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS))
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-schedule", choices=sorted(LR_SCHEDULES),
                   help="constant (default) or iwae: lr * 10^(-i/7) for 3^i epochs, i = 0..7 (Burda et al. 2016)")
    p.add_argument("--weight-decay", type=float, help="1.0 is a N(0, I) prior on the weights")
    p.add_argument("--batch-size", type=int, help="minibatch size M")
    p.add_argument("--algorithm", choices=ALGORITHMS, help="aevb (SVI, default), wake-sleep or rws")
    p.add_argument("--num-train", type=int, help="train on the first N training points only")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--run-dir", type=Path, help="default: runs/<dataset>-<time>")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    p.add_argument("--eval-k", type=int, default=100, help="importance samples per test image for the final log p(x) (default 100; reported numbers use `evaluate -k 5000`)")
    p.add_argument("--keep-every", type=int, default=0, help="keep a copy of every N-th epoch's checkpoint")
    p.add_argument("--no-progress", action="store_true")
    _add_common(p)


def _config_from_args(args) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    if args.resume:
        if args.run_dir is None:
            raise ValueError("--resume needs --run-dir")
        path = args.run_dir / CONFIG
        if not path.is_file():
            raise CheckpointError(f"no {CONFIG} in {args.run_dir}: nothing to resume")
        values = json.loads(path.read_text())
    else:
        values = dict(PRESETS.get(args.preset, {}))
    values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
    return TrainConfig.from_dict(values)


def _evaluate_report(run, run_dir: Path, k: int, device: str, num_test: int | None) -> dict:
    test = run.dataset.test[:num_test] if num_test else run.dataset.test
    batches = [x.to(device) for x in test.split(100)]
    start = time.perf_counter()
    result = evaluate(run.vae, batches, num_samples=k)
    report = {
        "k": k,
        "num_test": len(test),
        "test_elbo": result["elbo"],
        "test_log_px": result["log_px"],
        "epoch": run.metrics[-1]["epoch"] if run.metrics else 0,
        "train_wall_seconds": run.metrics[-1]["wall_seconds"] if run.metrics else 0.0,
        "eval_seconds": time.perf_counter() - start,
        "machine": machine(),
    }
    path = run_dir / f"eval-epoch{report['epoch']:04d}-k{k}-n{len(test)}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"epoch {report['epoch']}: test ELBO ({k}-sample mean) {report['test_elbo']:.2f}, "
        f"log p(x) (IS, K={k}) {report['test_log_px']:.2f} nats over {len(test)} test images -> {path}"
    )
    return report


def cmd_train(args) -> None:
    from pyro_vae.plots import write_figures

    config = _config_from_args(args)
    device = resolve_device(args.device)
    run_dir = args.run_dir or Path("runs") / f"{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"run directory: {run_dir}\nconfig: {asdict(config)}\nmachine: {machine()}")
    run = train(
        config, run_dir, data_dir=args.data_dir, device=device, resume=args.resume,
        progress=not args.no_progress, keep_every=args.keep_every,
    )
    _evaluate_report(run, run_dir, args.eval_k, device, None)
    for path in write_figures(run, run_dir / "figures"):
        print(f"wrote {path}")


def cmd_evaluate(args) -> None:
    device = resolve_device(args.device)
    run = load_run(args.run_dir, args.data_dir, device, checkpoint=args.checkpoint)
    _evaluate_report(run, args.run_dir, args.k, device, args.num_test)


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
        particles=args.particles,
        z_dims=args.z_dims,
    )
    print(f"variance study -> {args.out}\nmachine: {machine()}")
    if args.run_dir:
        compare_at_run(args.run_dir, study, args.out, args.data_dir, resolve_device(args.device))
    else:
        run_study(study, args.out, args.data_dir, resolve_device(args.device))
    print((args.out / "summary.md").read_text())


def cmd_reproduce(args) -> None:
    print(f"reproducing {args.figure} ({args.budget} budget) -> {args.out}\nmachine: {machine()}")
    rows = reproduce(args.figure, args.out, args.budget, args.data_dir, resolve_device(args.device))
    print(f"{len(rows)} rows -> {args.out / (args.figure + '.csv')}")
    for path in sorted(args.out.glob(f"{args.figure}*.png")):
        print(f"wrote {path}")


def cmd_benchmark(args) -> None:
    from pyro_vae.experiments.benchmark import run_benchmark

    device = resolve_device(args.device)
    result = run_benchmark(
        hidden=tuple(args.hidden), z_dim=args.z_dim, batch_size=args.batch_size,
        steps=args.steps, rounds=args.rounds, device=device,
    )
    result.update(machine=machine(), device=device, hidden=args.hidden, z_dim=args.z_dim, batch_size=args.batch_size)
    print(
        f"hand-written PyTorch step {result['handwritten_ms']:.2f} ms, pyro_vae SVI step "
        f"{result['pyro_vae_ms']:.2f} ms: ratio {result['ratio']:.2f} ({result['machine']})"
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
                        base=_graph_config(args), data_dir=args.data_dir, progress=not args.no_progress)
    print(markdown_table(summary))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyro-vae", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)

    p = sub.add_parser("evaluate", help="test ELBO and importance-sampled log p(x) of a trained run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("-k", type=int, default=5000, help="importance samples per test image (default 5000)")
    p.add_argument("--num-test", type=int, help="evaluate on the first N test images only")
    p.add_argument("--checkpoint", type=Path, help="a kept checkpoint instead of the run's last one")
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
    p.add_argument("--dataset", choices=DATASETS)
    p.add_argument("--z-dim", type=int)
    p.add_argument("--hidden", type=int, nargs="+")
    p.add_argument("--epochs", type=int, default=5, help="training epochs per estimator (default 5)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--estimators", nargs="+", choices=ESTIMATORS, default=list(ESTIMATORS))
    p.add_argument("--draws", type=int, default=100, help="gradient draws R per estimator (default 100)")
    p.add_argument("--adapt-steps", type=int, default=300, help="minibatches to adapt baselines on (default 300)")
    p.add_argument("--particles", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--z-dims", type=int, nargs="+", default=[2, 5, 10, 20, 50])
    p.add_argument("--run-dir", type=Path, help="only compare the estimators at this trained run's last checkpoint")
    _add_common(p)
    p.set_defaults(func=cmd_variance)

    p = sub.add_parser("benchmark", help="time a pyro_vae SVI step against a hand-written PyTorch step")
    p.add_argument("--hidden", type=int, nargs="+", default=[500])
    p.add_argument("--z-dim", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--steps", type=int, default=50, help="steps per timing round")
    p.add_argument("--rounds", type=int, default=10, help="alternating rounds; medians are reported")
    _add_threads(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, help="also write the result as JSON")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("reproduce", help="reproduce a figure of the AEVB paper (fig2: AEVB vs wake-sleep, "
                       "fig3: log p(x), fig4: 2-D manifolds, fig5: samples)")
    p.add_argument("figure", choices=FIGURES)
    p.add_argument("--budget", choices=("small", "full"), default="small",
                   help="small: minutes on a laptop CPU (default); full: the paper's settings, hours")
    p.add_argument("--out", type=Path, default=Path("runs/reproduce"), help="default: runs/reproduce")
    _add_common(p)
    p.set_defaults(func=cmd_reproduce)

    _add_graph(sub)

    sub.choices["train"].set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads must be at least 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        args.func(args)
    except USER_ERRORS as err:
        print(f"pyro-vae: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
