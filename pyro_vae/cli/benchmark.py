"""``pyro-vae benchmark``: a pyro_vae training step or evaluation against hand-written PyTorch,
or (``--startup``) the command line's start-up time (:mod:`pyro_vae.experiments.benchmark`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pyro_vae.cli.args import add_num_samples, add_pass_sizes, add_threads, positive_int, resolve_device
from pyro_vae.cli.commands import machine, register_command
from pyro_vae.training.config import PRESETS


def add_benchmark_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="paper",
        help="architecture: paper 784-500-20, iwae 784-200-200-50 (default: paper)",
    )
    p.add_argument("--hidden", type=positive_int, nargs="+", help="hidden sizes (default: the preset's)")
    p.add_argument("--z-dim", type=positive_int, help="latent size (default: the preset's)")
    p.add_argument(
        "--num-particles",
        type=positive_int,
        default=1,
        help="K > 1: the IWAE bound with K particles (default 1: the ELBO)",
    )
    p.add_argument("--steps", type=positive_int, default=50, help="steps per timing round (default 50)")
    p.add_argument(
        "--rounds", type=positive_int, default=10, help="alternating rounds; medians are reported (default 10)"
    )
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="time evaluation (importance-sampled log p(x)) instead of a training step",
    )
    p.add_argument(
        "--startup",
        action="store_true",
        help='time the CPU seconds of `pyro-vae --help` against `python -c "import torch, pyro"` '
        "(child processes, --rounds of each) instead of a training step",
    )
    p.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time pyro_vae's step with the ELBO compiled or not (default: as `train` does, compiled "
        "for K = 1, eager for the IWAE bound)",
    )
    add_num_samples(p, 1000, "per image of --evaluate")
    p.add_argument("--num-images", type=positive_int, default=200, help="--evaluate: images (default 200)")
    add_pass_sizes(p, "minibatch of a training step; with --evaluate, images per pass (default 100)")
    add_threads(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--out", type=Path, help="also write the result as JSON to this file (default: print it only)")


def cmd_benchmark(args) -> None:
    from pyro_vae.experiments.benchmark import run_startup_benchmark

    if args.startup:
        result = {**run_startup_benchmark(args.rounds), "machine": machine(), "what": "start-up CPU time"}
        print(
            f"start-up CPU time, median of {args.rounds} runs: pyro-vae --help {result['cli_cpu_s']:.2f} s, "
            f'python -c "import torch, pyro" {result["import_cpu_s"]:.2f} s: ratio {result["ratio"]:.2f} '
            f"({result['machine']})"
        )
    else:
        result = _step_benchmark(args)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def _step_benchmark(args) -> dict:
    from pyro_vae.experiments.benchmark import run_benchmark, run_eval_benchmark

    device = resolve_device(args.device)
    preset = PRESETS[args.preset]
    hidden, z_dim = tuple(args.hidden or preset["hidden"]), args.z_dim or preset["z_dim"]
    if args.evaluate:
        result = run_eval_benchmark(
            hidden=hidden,
            z_dim=z_dim,
            num_images=args.num_images,
            num_samples=args.num_samples,
            rounds=args.rounds,
            device=device,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
        )
        what = f"evaluation of {args.num_images} images, K = {args.num_samples}"
    else:
        result = run_benchmark(
            hidden=hidden,
            z_dim=z_dim,
            batch_size=args.batch_size,
            steps=args.steps,
            rounds=args.rounds,
            device=device,
            num_particles=args.num_particles,
            jit=args.jit,
        )
        what = "training step" + (f", IWAE K = {args.num_particles}" if args.num_particles > 1 else "")
        what += ", pyro_vae compiled (--jit)" if result["jit"] else ", pyro_vae eager"
    report = {**result, "machine": machine(), "device": device, "hidden": list(hidden), "z_dim": z_dim, "what": what}
    print(
        f"{what}, 784-{'-'.join(map(str, hidden))}-{z_dim}: hand-written PyTorch {result['handwritten_ms']:.2f} ms, "
        f"pyro_vae {result['pyro_vae_ms']:.2f} ms: ratio {result['ratio']:.3f}, overhead "
        f"{result['overhead_ms']:.2f} ms ({report['machine']})"
    )
    return report


register_command(
    "benchmark",
    add_benchmark_arguments,
    cmd_benchmark,
    help="time a pyro_vae training step (or evaluation) against hand-written PyTorch, "
    "or (--startup) the start-up of the command line",
)
