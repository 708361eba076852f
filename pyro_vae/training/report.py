"""The test-set report of a trained run: the importance-sampled bounds and, for a program
that classifies (M2's q(y|x)), its test error."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from pyro_vae.inference.classification import classification_error, classifies
from pyro_vae.inference.evaluate import evaluate
from pyro_vae.training.build import Run
from pyro_vae.training.callbacks import after_evaluation
from pyro_vae.training.distributed import SINGLE, DistributedContext
from pyro_vae.training.metrics import forked_rng


def evaluate_run(
    run: Run,
    num_samples: int,
    device: str = "cpu",
    num_test: int | None = None,
    distributed: DistributedContext = SINGLE,
    *,
    batch_size: int = 100,
    chunk_size: int = 500,
    marginal: bool = False,
    seed: int | None = None,
    callbacks: Sequence[object] = (),
    progress: bool = False,
) -> dict:
    """Evaluate ``run`` on its first ``num_test`` test images (all by default) with K =
    ``num_samples`` importance samples per image (the proposal is the guide q(z|x)): ``test_elbo`` is the
    mean of the K log-weights log p(x, z_k) - log q(z_k|x), ``test_log_px`` their
    log-mean-exp (a lower bound on log p(x) that tightens as K grows), per image. Under
    torchrun each process evaluates its shard and the sums are gathered. Each pass draws
    ``chunk_size`` samples for ``batch_size`` images: the defaults suit a CPU; on a GPU
    larger passes (e.g. 100 x 5000) spend less time in Pyro's per-pass tracing.

    A program of labelled data (``data_keys = ("x", "y")``) is given the test labels, so its
    bound is on log p(x, y); with ``marginal=True`` it is given x alone and the program sums
    or samples y itself (M2's guide q(y|x)), a bound on log p(x). ``log_likelihood_of`` in
    the report names which.

    A program with latents outside the data plate (shared by all data) has no per-image log
    p(x): its ``test_log_px`` is the joint log p(x_1, ..., x_n) / n of the n test images with the
    global latents sampled jointly (:func:`~pyro_vae.inference.joint.joint_bounds`), and
    ``log_likelihood_of`` says so.

    The importance samples come from torch's random stream: as building the run left it
    (seeded by the run's seed, so a second evaluation repeats the first), or, with ``seed``,
    from a stream seeded by ``seed`` (the report records it), forked so that the caller's
    stream is untouched: repeated evaluations with different seeds measure the Monte Carlo
    spread of the estimate.

    ``callbacks`` (those given to :func:`~pyro_vae.training.loop.train`) get the report: each one's
    ``on_evaluate(run, report)`` is called on the main process (:mod:`pyro_vae.training.callbacks`),
    so a logger records the run's headline numbers with its training curves. ``progress`` draws
    a bar over the test batches (on the main process)."""
    if num_test is not None and not 1 <= num_test <= len(run.dataset.test):
        raise ValueError(f"--num-test must be between 1 and the {len(run.dataset.test)} test images, got {num_test}")
    if marginal and "y" not in run.program.data_keys:  # else a second report of the same number
        raise ValueError(
            f"--marginal (marginal=True) gives a program of labelled data x without its labels y, and the model "
            f"{run.config.model!r} takes no labels (data {list(run.program.data_keys)}): its report is of log p(x) "
            "already; drop --marginal"
        )
    keys = ("x",) if marginal else tuple(run.program.data_keys)
    batches = run.dataset.test_batches(batch_size, device, keys=keys, num=num_test, shard=distributed.shard)
    start = time.perf_counter()
    with nullcontext() if seed is None else forked_rng(seed, device):
        result = evaluate(
            run.program,
            batches,
            num_samples=num_samples,
            chunk_size=chunk_size,
            reduce=distributed.reduce,
            progress=progress and distributed.is_main,
        )
    count, data = len(run.dataset.test[:num_test]), ", ".join(keys)
    report = {
        "num_samples": num_samples,
        "num_test": count,
        "test_elbo": result.elbo,
        "test_log_px": result.log_px,
        "log_likelihood_of": (
            f"log p({data} of all {count} test data, global latents sampled jointly) / {count}"
            if result.joint
            else f"log p({data})"
        ),
        "epoch": run.metrics[-1]["epoch"] if run.metrics else 0,
        "train_wall_seconds": run.metrics[-1]["wall_seconds"] if run.metrics else 0.0,
        "eval_seconds": time.perf_counter() - start,
        **({} if seed is None else {"seed": seed}),
    }
    if classifies(run.program):  # q(y|x) against the test labels, whichever bound was reported
        labelled = run.dataset.test_batches(
            batch_size, device, keys=run.program.data_keys, num=num_test, shard=distributed.shard
        )
        report["test_error"] = classification_error(run.program, labelled, reduce=distributed.reduce)
    distributed.on_main(lambda: after_evaluation(callbacks, run, report))
    return report


def report_path(
    run_dir: str | Path, epoch: int, num_samples: int, num_test: int, marginal: bool = False, seed: int | None = None
) -> Path:
    """Where the report of :func:`evaluate_run` at ``epoch`` with K = ``num_samples`` samples on
    ``num_test`` test images (``marginal``: of x alone; ``seed``: the evaluation's own seed) is
    saved in ``run_dir`` (the file name keeps K as ``-kK-``)."""
    suffix = ("-marginal" if marginal else "") + ("" if seed is None else f"-seed{seed}")
    return Path(run_dir) / f"eval-epoch{epoch:04d}-k{num_samples}-n{num_test}{suffix}.json"


#: Report entries renamed since reports were first written, old name -> new name.
RENAMED_REPORT_KEYS: dict[str, str] = {"k": "num_samples", "test_log_p_data": "test_log_px"}


def read_report(path: str | Path) -> dict:
    """The report saved at ``path`` (by :func:`evaluate_run`'s caller), an entry of an old
    name (:data:`RENAMED_REPORT_KEYS`) read under its new one."""
    return {RENAMED_REPORT_KEYS.get(key, key): value for key, value in json.loads(Path(path).read_text()).items()}
