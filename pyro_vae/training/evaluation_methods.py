"""The methods of ``pyro-vae evaluate --method``, each giving a trained run's report on its test
data: ``is``, the run's own importance-sampled report; ``ais``, annealed importance sampling of
log p(x) (:func:`~pyro_vae.inference.ais.ais_bounds`); ``bdmc``, the forward and reverse AIS bounds
on data simulated from the model (:func:`~pyro_vae.inference.ais.bdmc_bounds`); ``amortization``,
the encoder's ELBO against per-datum optimized Gaussians
(:func:`~pyro_vae.inference.amortization.amortization_gap`).

A method is a function ``(run, run_dir, distributed, options) -> (report, path, line)``: the
report, where it goes in ``run_dir`` (beside the IS report ``eval-epochE-kK-nN.json``) and the
line printed; registered in :data:`EVALUATION_METHODS`. Under torchrun each process evaluates its
shard of the test data and the sums are gathered."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from pyro_vae.data import Dataset
from pyro_vae.inference.ais import STARTS, ais_bounds, bdmc_bounds
from pyro_vae.inference.algorithms import ParamScope
from pyro_vae.inference.amortization import amortization_gap
from pyro_vae.models.program import member
from pyro_vae.registry import Registry
from pyro_vae.training.build import Run
from pyro_vae.training.distributed import DistributedContext
from pyro_vae.training.kinds import run_kind
from pyro_vae.training.metrics import forked_rng


@dataclass(frozen=True)
class EvaluationOptions:
    """What the methods take (each reads its own): the test images (``num_test``, in passes of
    ``batch_size``), K = ``num_samples`` importance samples (``chunk_size`` at a time), ``marginal``
    (x alone for a labelled program), ``seed`` (of a forked RNG stream), ``progress`` (a bar over
    the batches); AIS's ``chains`` per datum, ``ais_steps`` intermediate densities,
    ``leapfrog_steps`` per transition and ``ais_start`` (a name of
    :data:`~pyro_vae.inference.ais.STARTS`); the amortization gap's ``local_steps`` Adam steps of
    learning rate ``local_lr``."""

    num_samples: int = 5000
    device: str = "cpu"
    num_test: int | None = None
    batch_size: int = 100
    chunk_size: int = 500
    marginal: bool = False
    seed: int | None = None
    progress: bool = False
    chains: int = 16
    ais_steps: int = 1000
    leapfrog_steps: int = 10
    ais_start: str = "prior"
    local_steps: int = 500
    local_lr: float = 0.01


Method = Callable[[Run, Path, DistributedContext, EvaluationOptions], tuple[dict, Path, str]]
#: The evaluation methods, by name (``pyro-vae evaluate --method``).
EVALUATION_METHODS: Registry[Method] = Registry("evaluation method")


@EVALUATION_METHODS.register(
    "is", help="importance sampling with the guide as proposal: test ELBO and log p(x), K samples"
)
def importance_report(
    run: Run, run_dir: Path, distributed: DistributedContext, options: EvaluationOptions
) -> tuple[dict, Path, str]:
    """The run's own report (:meth:`~pyro_vae.training.kinds.RunKind.report`): for data points the
    test ELBO and the importance-sampled log p(x) with K = ``num_samples``."""
    return run_kind(run.config).report(
        run,
        run_dir,
        num_samples=options.num_samples,
        device=options.device,
        num_test=options.num_test,
        distributed=distributed,
        batch_size=options.batch_size,
        chunk_size=options.chunk_size,
        marginal=options.marginal,
        seed=options.seed,
        progress=options.progress,
    )


def per_datum_means(
    run: Run,
    distributed: DistributedContext,
    options: EvaluationOptions,
    bounds: Callable[[Callable, Callable, torch.Tensor, dict], dict[str, torch.Tensor]],
) -> tuple[dict[str, float], dict]:
    """The means over the test data of the per-datum tensors ``bounds(model, guide, x, kwargs)``
    gives for each test batch, with the report's common entries (count, epoch, times, seed)."""
    if not isinstance(run.dataset, Dataset):
        raise ValueError(f"the run's model {run.config.model!r} is not of data points: it has no log p(x) per datum")
    if options.num_test is not None and not 1 <= options.num_test <= len(run.dataset.test):
        raise ValueError(
            f"--num-test must be between 1 and the {len(run.dataset.test)} test images, got {options.num_test}"
        )
    program = run.program
    keys = ("x",) if options.marginal else tuple(program.data_keys)
    batches = run.dataset.test_batches(
        options.batch_size, options.device, keys=keys, num=options.num_test, shard=distributed.shard
    )
    sums: dict[str, float] = {}
    count, start, was_training = 0, time.perf_counter(), program.training
    program.eval()
    try:
        seeded = nullcontext() if options.seed is None else forked_rng(options.seed, options.device)
        with seeded, ParamScope(program.parameters()):
            for batch in tqdm(batches, unit="batch", disable=not (options.progress and distributed.is_main)):
                kwargs = dict(batch)
                x = kwargs.pop("x")
                for key, value in bounds(program.model, program.guide, x, kwargs).items():
                    sums[key] = sums.get(key, 0.0) + value.sum().item()
                count += x.shape[0]
    finally:
        program.train(was_training)
    totals = distributed.sum(torch.tensor([*sums.values(), count], dtype=torch.float64)).tolist()
    means = {key: total / totals[-1] for key, total in zip(sums, totals)}
    common = {
        "num_test": int(totals[-1]),
        "log_likelihood_of": f"log p({', '.join(keys)})",
        "epoch": run.metrics[-1]["epoch"] if run.metrics else 0,
        "train_wall_seconds": run.metrics[-1]["wall_seconds"] if run.metrics else 0.0,
        "eval_seconds": time.perf_counter() - start,
        **({} if options.seed is None else {"seed": options.seed}),
    }
    return means, common


def method_path(run_dir: Path, common: dict, name: str, options: EvaluationOptions) -> Path:
    """``RUN/eval-epochE-NAME-nN[-marginal][-seedS].json``, beside the IS report."""
    suffix = ("-marginal" if options.marginal else "") + ("" if options.seed is None else f"-seed{options.seed}")
    return Path(run_dir) / f"eval-epoch{common['epoch']:04d}-{name}-n{common['num_test']}{suffix}.json"


def _annealing(options: EvaluationOptions) -> tuple[dict, str, str]:
    """The AIS settings: the report's entries, the file name's part and the line's description."""
    entries = {
        "chains": options.chains,
        "ais_steps": options.ais_steps,
        "leapfrog_steps": options.leapfrog_steps,
        "ais_start": options.ais_start,
    }
    name = f"t{options.ais_steps}-l{options.leapfrog_steps}-c{options.chains}-{options.ais_start}"
    described = f"{options.chains} chains x {options.ais_steps} steps from the {options.ais_start}"
    return entries, name, described


def _keywords(run: Run, options: EvaluationOptions) -> dict:
    program = run.program
    return {
        "start": STARTS.check(options.ais_start),
        "max_plate_nesting": program.max_plate_nesting,
        "data_plate_name": member(program, "data_plate_name"),
    }


@EVALUATION_METHODS.register(
    "ais", help="annealed importance sampling of log p(x), from the prior (or guide) to the posterior"
)
def ais_report(
    run: Run, run_dir: Path, distributed: DistributedContext, options: EvaluationOptions
) -> tuple[dict, Path, str]:
    """The test log p(x) by AIS (:func:`~pyro_vae.inference.ais.ais_bounds`), with the chains' mean
    acceptance probability and final step size."""
    keywords = _keywords(run, options)

    def bounds(model, guide, x, kwargs) -> dict[str, torch.Tensor]:
        result = ais_bounds(
            model, guide, x, options.chains, options.ais_steps, options.leapfrog_steps, **keywords, **kwargs
        )
        return {
            "test_log_px": result.log_px,
            "accept_rate": result.accept.mean(0),
            "step_size": result.step_size.mean(0),
        }

    means, common = per_datum_means(run, distributed, options, bounds)
    entries, name, described = _annealing(options)
    report = {"method": "ais", **entries, **means, **common}
    line = (
        f"epoch {common['epoch']}: test {common['log_likelihood_of']} (AIS, {described}) {means['test_log_px']:.2f} "
        f"nats over {common['num_test']} test images (mean acceptance {means['accept_rate']:.2f})"
    )
    return report, method_path(run_dir, common, f"ais-{name}", options), line


@EVALUATION_METHODS.register(
    "bdmc", help="bidirectional Monte Carlo: lower and upper AIS bounds of log p(x), simulated data"
)
def bdmc_report(
    run: Run, run_dir: Path, distributed: DistributedContext, options: EvaluationOptions
) -> tuple[dict, Path, str]:
    """BDMC's lower and upper bounds of log p(x) and their gap (:func:`~pyro_vae.inference.ais.bdmc_bounds`)
    on as many data simulated from the model as ``num_test`` (the test batches give their shape)."""
    keywords = _keywords(run, options)

    def bounds(model, guide, x, kwargs) -> dict[str, torch.Tensor]:
        result = bdmc_bounds(
            model, guide, x, options.chains, options.ais_steps, options.leapfrog_steps, **keywords, **kwargs
        )
        return {"lower": result.lower, "upper": result.upper}

    means, common = per_datum_means(run, distributed, options, bounds)
    entries, name, described = _annealing(options)
    gap = means["upper"] - means["lower"]
    simulated = {key: value for key, value in common.items() if key != "num_test"}
    report = {"method": "bdmc", **entries, **means, "gap": gap, "num_simulated": common["num_test"], **simulated}
    line = (
        f"epoch {common['epoch']}: {common['log_likelihood_of']} of {common['num_test']} data simulated from the "
        f"model (BDMC, {described}): between {means['lower']:.2f} and {means['upper']:.2f} nats (gap {gap:.2f})"
    )
    return report, method_path(run_dir, common, f"bdmc-{name}", options), line


@EVALUATION_METHODS.register(
    "amortization", help="the amortization gap: the encoder's ELBO against per-datum Gaussians"
)
def amortization_report(
    run: Run, run_dir: Path, distributed: DistributedContext, options: EvaluationOptions
) -> tuple[dict, Path, str]:
    """The test ELBO of the encoder, of per-datum optimized Gaussians and their difference
    (:func:`~pyro_vae.inference.amortization.amortization_gap`), with the importance-sampled log p(x)."""
    program = run.program
    keywords = {"max_plate_nesting": program.max_plate_nesting, "data_plate_name": member(program, "data_plate_name")}

    def bounds(model, guide, x, kwargs) -> dict[str, torch.Tensor]:
        result = amortization_gap(
            model,
            guide,
            x,
            options.local_steps,
            options.local_lr,
            num_samples=options.num_samples,
            chunk_size=options.chunk_size,
            **keywords,
            **kwargs,
        )
        return {"test_elbo": result.encoder_elbo, "optimized_elbo": result.optimized_elbo, "test_log_px": result.log_px}

    means, common = per_datum_means(run, distributed, options, bounds)
    gap = means["optimized_elbo"] - means["test_elbo"]
    settings = {"num_samples": options.num_samples, "local_steps": options.local_steps, "local_lr": options.local_lr}
    report = {"method": "amortization", **settings, **means, "amortization_gap": gap, **common}
    line = (
        f"epoch {common['epoch']}: test ELBO of the encoder {means['test_elbo']:.2f}, of per-datum Gaussians "
        f"({options.local_steps} Adam steps) {means['optimized_elbo']:.2f}: amortization gap {gap:.2f} nats over "
        f"{common['num_test']} test images (K={options.num_samples})"
    )
    name = f"amortization-s{options.local_steps}-k{options.num_samples}"
    return report, method_path(run_dir, common, name, options), line
