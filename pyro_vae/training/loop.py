"""Training: one loop for every model, every kind of data and every algorithm, with
metrics rows and resumable checkpoints.

:func:`train` is the entry point for every run. What differs between kinds of data (data
points in minibatches, one graph in full-graph steps) is asked of the run's
:class:`~pyro_vae.training.kinds.RunKind` (:data:`~pyro_vae.training.kinds.RUN_KINDS`, chosen
by the model's ``data_kind``): how the run is built, the batches of an epoch and their loss
scale, when a metrics row is written and what it holds. Everything else happens once, here:
the run folder is opened and each epoch written through :mod:`pyro_vae.training.folder` (lock,
stale temporary files, checkpoint checks, snapshot repair, atomic writes), the state is
restored on resume, a NaN loss stops the run with one message, callbacks are called and may
stop it (:mod:`pyro_vae.training.callbacks`). Metrics rows and their schedule are
:mod:`pyro_vae.training.metrics`.

The loop names no model and no algorithm: it builds the registered model ``config.model``,
the estimator ``config.estimator`` and the algorithm ``config.algorithm``, then feeds the
algorithm batches, dicts of the data the model asks for (``program.data_keys``). A run folder
holds ``config.json``, ``metrics.csv`` (one row per epoch, or ``evals_per_decade`` rows per
decade of training samples) and ``checkpoint.pt`` (model, algorithm and RNG state at the end
of an epoch, written atomically, from which ``resume=True`` continues exactly as if the run
had not stopped).

The minibatch ELBO is scaled by N/M (``total_size`` of the data plate): the loss estimates the
whole training set's negative ELBO, as in the paper's Algorithm 1. Pyro's param store is untouched.

Under ``torchrun`` the same loop runs on every process, given a
:class:`~pyro_vae.training.distributed.DistributedContext`: each process trains
on its part of every global minibatch, gradients are averaged over processes,
rank 0 alone writes the run folder, and evaluation shards the test set
(:mod:`pyro_vae.training.distributed`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import pyro
import torch
from tqdm import tqdm

from pyro_vae.inference import ALGORITHMS, Algorithm
from pyro_vae.inference.algorithms import algorithm_member
from pyro_vae.inference.jit import compile_estimator, compiles_by_default, data_check
from pyro_vae.models import MODELS
from pyro_vae.training.build import Run
from pyro_vae.training.callbacks import (
    CallbackError,
    check_callbacks,
    end_of_batch,
    end_of_epoch,
    end_of_run,
    stop_requested,
)
from pyro_vae.training.checkpoint import (
    check_data_fingerprint,
    data_entry,
    load_algorithm_state,
    load_checkpoint,
    load_module_state,
    restore_state,
    rng_state,
    set_rng_state,
)
from pyro_vae.training.config import PRESETS, TrainConfig
from pyro_vae.training.distributed import SINGLE, DistributedAlgorithm, DistributedContext, to_device
from pyro_vae.training.folder import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    TrainingDiverged,
    diverged,
    open_run,
    write_config,
    write_epoch,
)
from pyro_vae.training.kinds import RunKind, build_run, load_run, run_kind
from pyro_vae.training.metrics import Clock
from pyro_vae.training.process import process_settings
from pyro_vae.validation import check_arguments, check_device

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "METRICS",
    "PRESETS",
    "Run",
    "TrainConfig",
    "TrainingDiverged",
    "build_run",
    "check_jit",
    "load_run",
    "train",
    "train_or_resume",
]

CHECKPOINT_SECONDS = 60.0  # between epochs without a metrics row, the longest a run goes unsaved


def train_or_resume(config: TrainConfig, run_dir: str | Path, **kwargs) -> Run:
    """:func:`train`, resuming when ``run_dir`` already holds a checkpoint: studies that
    rerun call it to continue (or reuse) their runs instead of starting them again; a run that
    has already gone past ``config.epochs`` is reused as it is."""
    path = Path(run_dir) / CHECKPOINT
    if path.exists():
        config = dataclasses.replace(config, epochs=max(config.epochs, load_checkpoint(path)["epoch"]))
    return train(config, run_dir, resume=path.exists(), **kwargs)


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    data: object = None,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    keep_every: int = 0,
    distributed: DistributedContext = SINGLE,
    on_eval: Callable[[Run], dict] | None = None,
    validate_every_step: bool = False,
    jit: bool | None = None,
    callbacks: Sequence[object] = (),
    allow_process_change: bool = False,
) -> Run:
    """Train (or, with ``resume=True``, continue) the run in ``run_dir`` up to ``config.epochs``.

    The run's kind of data (:func:`~pyro_vae.training.kinds.run_kind`) builds it and gives
    each epoch's batches: minibatches of data points, or one full-graph step for a graph model.
    Metrics rows follow ``config.evals_per_decade``
    (:class:`~pyro_vae.training.metrics.EvalSchedule`). A checkpoint is written at the end of
    every epoch that wrote a row, of the last epoch, and otherwise after
    ``CHECKPOINT_SECONDS`` (60 s) without one, always at an epoch's end, so a resumed run repeats
    exactly what an uninterrupted one does. A NaN or infinite loss raises
    :class:`~pyro_vae.training.folder.TrainingDiverged` and leaves the last checkpoint
    untouched. The run folder is locked for the whole call
    (:func:`~pyro_vae.training.run_dir.lock_run_dir`): a second trainer gets
    :class:`~pyro_vae.training.run_dir.RunDirBusyError`.

    :param config: the run: model, estimator, algorithm, optimizer, data set and budget;
        written to ``run_dir/config.json``.
    :param run_dir: the run folder, created if absent: ``config.json``, ``metrics.csv`` (a row
        per evaluation) and ``checkpoint.pt``.
    :param data_dir: the folder the data sets are read from (``--data-dir``); ``None``:
        ``$PYRO_VAE_DATA``, else a download into the cache (:mod:`pyro_vae.data.cache`).
    :param data: a user's own data instead of a data set by name: a tensor or numpy array, a dict
        of them, a torch ``Dataset`` or ``DataLoader`` (:func:`pyro_vae.data.as_dataset`), for a
        config of ``dataset="user"``. The checkpoint records its fingerprint: a resume on other
        data is refused.
    :param device: the torch device to train on (``"cpu"``, ``"cuda"``, ``"cuda:1"``); one this
        machine lacks is refused before any work.
    :param resume: continue from ``run_dir/checkpoint.pt``. Its config must match ``config``
        except for ``epochs``, which may not be fewer than the epochs done. ``False`` refuses a
        folder that already holds a checkpoint.
    :param progress: a progress bar of the steps (tqdm, on stderr, main process only), with a
        line per metrics row; ``False`` prints nothing.
    :param keep_every: with ``n > 0``, a copy of every n-th epoch's checkpoint is kept in
        ``run_dir/checkpoints/``; ``0`` keeps only the last.
    :param distributed: makes this call one process of a multi-process run (from
        :func:`~pyro_vae.training.distributed.session`, under ``torchrun``): every process calls
        it with the same arguments (its own ``device``); rank 0 holds the lock and writes the
        files. The default is a single process.
    :param on_eval: ``on_eval(run)`` returns columns added to each metrics row (e.g. an
        importance-sampled log p(x)); pass it again on resume.
    :param validate_every_step: Pyro's validation (distribution arguments and supports) on every
        step. By default it runs on the first step of the call only: the model still checks each
        batch's shape, dtype and range, a NaN loss still stops the run, and the checks would cost
        about 10% of a step (``pyro-vae benchmark``).
    :param jit: ``True`` trains with the estimator's ELBO compiled
        (:mod:`pyro_vae.inference.jit`: Pyro's ``JitTrace_ELBO``, one graph per batch shape): the
        same losses and parameters to float rounding, without Pyro's per-step tracing. For
        programs of static structure only; estimators, algorithms and KL warm-up it cannot
        compile are refused. ``None`` (the default) compiles the built-in programs and
        estimators the tests check (:func:`~pyro_vae.inference.jit.compiles_by_default`) and
        trains anything else eagerly; ``False`` never compiles.
    :param callbacks: objects with any of the hooks of :data:`~pyro_vae.training.callbacks.HOOKS`,
        called after each step, for each metrics row, at each epoch's end and at the run's end
        (:mod:`pyro_vae.training.callbacks`), on the main process, after the epoch's checkpoint
        is written. One that raises stops the run with a
        :class:`~pyro_vae.training.callbacks.CallbackError` and loses no epoch; one whose
        ``should_stop`` is true stops the run cleanly at the end of that epoch (its checkpoint
        written), as :class:`~pyro_vae.training.callbacks.EarlyStopping` does.
    :param allow_process_change: resume even if this process's settings that change float
        rounding differ from those the checkpoint records (``jit``, denormal flushing, CPU
        threads, the kind of ``device``: :mod:`pyro_vae.training.process`); without it such a
        resume is refused.
    :returns: the trained :class:`~pyro_vae.training.build.Run`: its program, data, estimator
        and metrics rows.
    :raises ~pyro_vae.training.folder.TrainingDiverged: on a NaN or infinite loss.
    :raises ~pyro_vae.training.run_dir.RunDirBusyError: when another trainer holds ``run_dir``.
    """
    check_arguments(train, **locals())  # every argument against its annotation, before any work
    check_device(device)
    check_callbacks(callbacks)
    kind = run_kind(config)
    if keep_every < 0:
        raise ValueError(f"keep_every must be >= 0, got {keep_every}")
    if distributed.active:
        kind.refuse("processes")
    if jit:
        kind.refuse("jit")
    if jit is None:  # the built-in programs whose compiled step the tests check, unless on several processes
        jit = "jit" not in kind.refuses and compiles_by_default(config, MODELS[config.model]) and not distributed.active
    if jit:
        check_jit(config)
    if config.batch_size % distributed.world_size:
        raise ValueError(
            f"batch_size={config.batch_size} is not divisible by the {distributed.world_size} processes: "
            "each process trains on batch_size / processes points of every global minibatch"
        )
    run_dir = Path(run_dir)
    process = process_settings(jit, device)
    with ExitStack() as stack:

        def prepare() -> dict | None:
            # one process loads onto its device; several share rank 0's copy, sent from the CPU
            map_location = "cpu" if distributed.active else device
            return stack.enter_context(
                open_run(
                    config,
                    run_dir,
                    resume=resume,
                    keep_every=keep_every,
                    map_location=map_location,
                    distributed=distributed,
                    generators=kind.generators,
                    process=process,
                    allow_process_change=allow_process_change,
                )
            )

        state = distributed.on_main(prepare)
        if state is not None and distributed.active:
            state = to_device(state, device)
        if kind.forks_rng:  # torch's global RNG as the caller left it, once training returns
            cuda = torch.device(device).type == "cuda"
            stack.enter_context(torch.random.fork_rng(devices=[torch.device(device)] if cuda else []))
        return _train_prepared(
            config,
            kind,
            run_dir,
            state,
            data_dir=data_dir,
            data=data,
            device=device,
            progress=progress,
            keep_every=keep_every,
            distributed=distributed,
            on_eval=on_eval,
            validate_every_step=validate_every_step,
            jit=jit,
            callbacks=callbacks,
            process=process,
        )


def check_jit(config: TrainConfig) -> None:
    """Refuse ``--jit`` for a config whose step cannot be compiled (an algorithm without
    ``compiles = True``, or KL warm-up, whose beta the first step's graph would fix)."""
    if not algorithm_member(ALGORITHMS[config.algorithm], "compiles"):
        raise ValueError(
            f"--jit compiles the ELBO of the aevb algorithm; the {config.algorithm} algorithm trains without it"
        )
    if config.kl_warmup:
        raise ValueError("--jit cannot compile KL warm-up (its beta changes by epoch); train without --jit")


def _train_prepared(
    config: TrainConfig,
    kind: RunKind,
    run_dir: Path,
    state: dict | None,
    *,
    data_dir: str | Path | None,
    data: object,
    device: str,
    progress: bool,
    keep_every: int,
    distributed: DistributedContext,
    on_eval: Callable[[Run], dict] | None,
    validate_every_step: bool,
    jit: bool,
    callbacks: Sequence[object],
    process: dict,
) -> Run:
    # train()'s body after open_run, while rank 0 holds the run folder's lock.
    checkpoint_path = run_dir / CHECKPOINT
    with distributed.local_main_first():
        run = kind.build(config, data_dir, device, data=data)
    run.folder = run_dir
    kind.check(run, device, distributed.world_size)
    vae, estimator = run.program, run.estimator
    trained_by = compile_estimator(estimator, data_check(vae)) if jit else estimator
    algorithm: Algorithm = distributed.wrap(ALGORITHMS[config.algorithm](vae, trained_by, config))
    generator = torch.Generator().manual_seed(config.seed)
    distributed.seed_noise(config.seed)
    start_epoch, wall, since_row = 0, 0.0, None
    if state is not None:
        check_data_fingerprint(state, getattr(run.dataset, "fingerprint", None), checkpoint_path)
        load_module_state(vae, state["model"], "model", checkpoint_path)
        load_module_state(estimator.modules, state["estimator"], "estimator", checkpoint_path)
        load_algorithm_state(algorithm, state["algorithm"], checkpoint_path)
        own = distributed.rank_entry(state)
        set_rng_state(state["rng"] if own is None else own["rng"], generator)
        if own is not None and isinstance(algorithm, DistributedAlgorithm):  # several processes: wrap made it one
            restore_state(algorithm.load_rank_state, own["param_stores"], "per-process", checkpoint_path)
        start_epoch, run.metrics = state["epoch"], state["metrics"]
        wall = state.get("wall_seconds", run.metrics[-1]["wall_seconds"] if run.metrics else 0.0)
        since_row = state.get("since_row")  # absent in checkpoints written before it was kept
    distributed.broadcast_modules([vae, estimator.modules])

    distributed.on_main(lambda: write_config(config, run_dir))
    n = kind.total_size(run)
    schedule = None
    clock = Clock(wall, since_row)
    last_save, saved_epoch = time.perf_counter(), start_epoch
    show = progress and distributed.is_main
    bar = None

    def save(epoch: int) -> None:  # the checkpoint of the epoch that just ended (a collective: every process calls it)
        checkpoint: dict = {
            "config": asdict(config),
            "epoch": epoch,
            "model": vae.state_dict(),
            "estimator": estimator.modules.state_dict(),
            "algorithm": algorithm.state_dict(),
            "rng": rng_state(generator),
            "metrics": run.metrics,
            "wall_seconds": clock.wall(),
            "since_row": clock.state(),
            "process": process,
            **data_entry(getattr(run.dataset, "fingerprint", None)),
        }
        checkpoint.update(distributed.rank_entries(checkpoint["rng"], algorithm))
        distributed.on_main(lambda: write_epoch(run_dir, run.metrics, checkpoint, keep_every))

    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            batches = kind.batches(run, generator, device, distributed)
            if schedule is None or bar is None:  # the first epoch: both are made here
                schedule = kind.schedule(config, len(batches))
                steps = (config.epochs - start_epoch) * len(batches)  # on a pipe (a log) no bar, the rows' lines only
                bar = tqdm(total=steps, disable=None if show else True, leave=False)
            bar.set_description_str(f"epoch {epoch}/{config.epochs}")
            rows_before = len(run.metrics)
            for step, batch in enumerate(batches, 1):
                with pyro.validation_enabled(validate_every_step or (epoch == start_epoch + 1 and step == 1)):
                    loss = algorithm.step(batch, n)
                if not math.isfinite(loss):
                    where = f"epoch {epoch}" + (f", step {step}" if len(batches) > 1 else "")
                    raise diverged(loss, where, saved_epoch, run_dir, config)
                clock.add_step(loss)
                bar.update()
                if step % 50 == 0 or step == len(batches):
                    bar.set_postfix(elbo=f"{-clock.loss / (clock.steps * n):.2f}")
                global_step = (epoch - 1) * len(batches) + step
                if distributed.is_main:  # no collective per step: a failing hook ends this process's run
                    end_of_batch(callbacks, run, {"epoch": epoch, "step": step, "loss": loss}, saved_epoch)
                if schedule.due(global_step):
                    samples = global_step * config.batch_size
                    row = kind.row(run, epoch, samples, algorithm.learning_rate(), clock, device, distributed, on_eval)
                    run.metrics.append(row)
                    if (observe := algorithm_member(algorithm, "observe")) is not None:
                        observe(row)
                    line = kind.describe(row)
                    if show and line is not None:
                        tqdm.write(line)
            algorithm.end_epoch()
            now = time.perf_counter()
            due = (
                len(run.metrics) > rows_before
                or epoch == config.epochs
                or now - last_save >= CHECKPOINT_SECONDS
                or bool(keep_every and epoch % keep_every == 0)
            )
            if due:
                save(epoch)
                last_save, saved_epoch = now, epoch
            try:  # the callbacks after the epoch's files, a failing one with the epoch saved
                distributed.on_main(lambda: end_of_epoch(callbacks, run, run.metrics[rows_before:], epoch))
            except CallbackError:
                if not due:
                    save(epoch)
                raise
            if distributed.on_main(lambda: stop_requested(callbacks)):  # every process stops after this epoch
                if not due:
                    save(epoch)
                    saved_epoch = epoch
                break
    finally:
        if bar is not None:
            bar.close()
    distributed.on_main(lambda: end_of_run(callbacks, run, saved_epoch))
    return run
