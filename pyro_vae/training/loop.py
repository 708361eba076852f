"""Training: one loop for every model and algorithm, with per-epoch test ELBO,
metrics and resumable checkpoints.

The loop names no model and no algorithm: it builds the registered model
``config.model`` (:mod:`pyro_vae.models`), the estimator ``config.estimator``
and the algorithm ``config.algorithm`` (:mod:`pyro_vae.inference.algorithms`),
then feeds the algorithm minibatches, dicts of the data the model asks for
(``program.data_keys``: ``x``, and labels ``y`` for a conditional model).

One call of :func:`train` runs (or resumes) a run directory holding

* ``config.json``: the :class:`TrainConfig`;
* ``metrics.csv``: one row per epoch, or ``evals_per_decade`` rows per decade of
  training samples (samples seen, learning rate, train and test ELBO per datum, time,
  and the test error of a program that classifies);
* ``checkpoint.pt``: model, algorithm (optimizers, schedulers, baselines) and
  RNG state at the end of an epoch, written atomically, from which
  ``resume=True`` continues exactly as if the run had not stopped.

The minibatch ELBO is scaled by N/M (``total_size`` of the data plate), so the
loss estimates the negative ELBO of the whole training set, as in the paper's
Algorithm 1; ``weight_decay=1`` is then exactly a N(0, I) prior on the weights.
Nothing here touches Pyro's global param store.

Under ``torchrun`` the same loop runs on every process, given a
:class:`~pyro_vae.training.distributed.DistributedContext`: each process trains
on its part of every global minibatch, gradients are averaged over processes,
rank 0 alone writes the run folder, and evaluation shards the test set
(:mod:`pyro_vae.training.distributed`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyro
import torch
from tqdm import tqdm

from pyro_vae.data import Dataset, load_dataset
from pyro_vae.inference import ALGORITHMS, Algorithm, Estimator, make_estimator
from pyro_vae.inference.evaluate import classification_error, classifies, evaluate
from pyro_vae.inference.jit import compile_estimator, data_check
from pyro_vae.inference.optim import LR_SCHEDULES
from pyro_vae.models import MODELS, DataSpec, build_model
from pyro_vae.models.likelihoods import Gaussian
from pyro_vae.training.checkpoint import (
    CheckpointError, load_algorithm_state, load_checkpoint, load_module_state, restore_state, save_checkpoint,
    verify_checkpoint,
)
from pyro_vae.training.config import PRESETS, TrainConfig, require_same_config
from pyro_vae.training.distributed import SINGLE, DistributedContext, to_device
from pyro_vae.files import atomic_copy, atomic_write_json, atomic_write_text
from pyro_vae.training.run_dir import clean_stale_temp_files, lock_run_dir, repair_snapshots, snapshot_path
from pyro_vae.validation import check_arguments, check_model_fits

__all__ = ["PRESETS", "Run", "TrainConfig", "TrainingDiverged", "build_run", "load_run", "train", "train_or_resume"]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
CONFIG = "config.json"
CHECKPOINT_SECONDS = 60.0  # between epochs without a metrics row, the longest a run goes unsaved


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class Run:
    """A trained (or training) program with its data, estimator and history."""

    config: TrainConfig
    dataset: Dataset
    vae: torch.nn.Module  # the program: a registered model (a VAE or a relative)
    estimator: Estimator
    metrics: list[dict] = field(default_factory=list)


def build_program(config: TrainConfig, dataset: Dataset) -> torch.nn.Module:
    """The registered model ``config.model`` a config describes, shaped for ``dataset``.

    A Gaussian decoder squashes its means into (0, 1) with a sigmoid, like the
    paper's Frey Face decoder (all bundled data sets lie in [0, 1]).
    """
    name = config.likelihood or dataset.likelihood
    likelihood = Gaussian(dataset.x_shape, squash_mean=True) if name == "gaussian" else name
    spec = DataSpec(dataset.x_shape, dataset.num_classes)
    return build_model(
        config.model, spec, z_dim=config.z_dim, hidden=config.hidden, activation=config.activation,
        likelihood=likelihood, init_std=config.init_std, **config.model_options,
    )


def build_run(config: TrainConfig, data_dir: str | None = None, device: str = "cpu") -> Run:
    """Seed torch's RNG, load the data, and build the program and estimator on ``device``."""
    torch.manual_seed(config.seed)
    dataset = load_dataset(config.dataset, data_dir)
    if config.num_train is not None:
        if config.num_train > len(dataset.train):
            raise ValueError(f"num_train={config.num_train} exceeds the {len(dataset.train)} training points of {dataset.name}")
        labels = None if dataset.train_labels is None else dataset.train_labels[: config.num_train]
        dataset = dataclasses.replace(dataset, train=dataset.train[: config.num_train], train_labels=labels)
    if config.num_labels is not None:
        dataset = dataset.with_labels(config.num_labels, config.seed)
    check_model_fits(config, dataset.x_shape, device)
    program = build_program(config, dataset).to(device)
    estimator = make_estimator(config.estimator, program, config.num_particles)
    estimator.modules.to(device)
    return Run(config, dataset, program, estimator)


def _rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    # Generator states must be CPU byte tensors, for the CUDA generators too;
    # a checkpoint loaded with ``map_location="cuda"`` has moved them.
    torch.set_rng_state(state["torch"].cpu())
    generator.set_state(state["data"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Write ``rows`` as CSV, columns the union of their keys in first-seen order,
    atomically (a temporary file, then a rename); creates the folder."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, text.getvalue())


def check_program(run: Run, device: str = "cpu") -> None:
    """Evaluate the program on two test points, one sample each, before any training,
    so that what evaluation refuses (a latent outside the data plate) fails at once.
    Torch's RNG is restored afterwards: the run's numbers do not change."""
    with torch.random.fork_rng():
        evaluate(run.vae, run.dataset.test_batches(2, device, keys=run.vae.data_keys, num=2), num_samples=1)


def train_or_resume(config: TrainConfig, run_dir: str | Path, **kwargs) -> Run:
    """:func:`train`, resuming when ``run_dir`` already holds a checkpoint: studies that
    rerun call it to continue (or reuse) their runs instead of starting them again; a run that
    has already gone past ``config.epochs`` is reused as it is."""
    path = Path(run_dir) / CHECKPOINT
    if path.exists():
        config = dataclasses.replace(config, epochs=max(config.epochs, load_checkpoint(path)["epoch"]))
    return train(config, run_dir, resume=path.exists(), **kwargs)


def load_run(
    run_dir: str | Path,
    data_dir: str | None = None,
    device: str = "cpu",
    checkpoint: str | Path | None = None,
) -> Run:
    """Rebuild the program of a run directory (its recorded model class) from its last
    (or the given) checkpoint. A user's model must be registered first (import its module)."""
    path = Path(checkpoint or Path(run_dir) / CHECKPOINT)
    state = load_checkpoint(path, map_location=device)
    model = state["config"].get("model", "vae")
    if model not in MODELS:
        raise CheckpointError(
            f"{path} holds a run of the model {model!r}, which is not registered here; import the module "
            f"that registers it first (pyro-vae --import MODULE ...). Registered: {MODELS.names()}"
        )
    run = build_run(TrainConfig.from_dict(state["config"]), data_dir, device)
    load_module_state(run.vae, state["model"], "model", path)
    load_module_state(run.estimator.modules, state["estimator"], "estimator", path)
    run.metrics = state["metrics"]
    return run


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    data_dir: str | None = None,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    keep_every: int = 0,
    distributed: DistributedContext = SINGLE,
    on_eval: Callable[[Run], dict] | None = None,
    validate_every_step: bool = False,
    jit: bool = False,
) -> Run:
    """Train (or, with ``resume=True``, continue) the run in ``run_dir`` up to ``config.epochs``.

    On resume the checkpoint's config must match ``config`` except for ``epochs``,
    which may not be fewer than the epochs done. Metrics rows follow
    ``config.evals_per_decade`` (:class:`EvalSchedule`); ``on_eval(run)`` adds columns
    to each row (e.g. an importance-sampled log p(x)) and must be passed again on
    resume. A checkpoint is written at the end of every epoch that wrote a row, of
    the last epoch, and otherwise after :data:`CHECKPOINT_SECONDS`, always at an
    epoch's end, so a resumed run repeats exactly what an uninterrupted one does.
    A NaN or infinite loss raises :class:`TrainingDiverged` and leaves the last
    checkpoint untouched. With ``keep_every=n`` a copy of every n-th epoch's
    checkpoint is kept in ``run_dir/checkpoints/``.

    Pyro's validation (distribution arguments and supports) runs on the first step of
    the call and then, unless ``validate_every_step``, is off: the model still checks
    each batch's shape, dtype and range, a NaN loss still stops the run, and the
    checks would cost ~10% of a step (``pyro-vae benchmark``).

    ``jit=True`` trains with the estimator's ELBO compiled (:mod:`pyro_vae.inference.jit`:
    Pyro's ``JitTrace_ELBO``, one graph per batch shape): the same losses and parameters
    to float rounding, without Pyro's per-step tracing. For programs of static structure
    only; estimators, algorithms and KL warm-up it cannot compile are refused.

    The run folder is locked for the whole call
    (:func:`~pyro_vae.training.run_dir.lock_run_dir`): a second trainer gets
    :class:`~pyro_vae.training.run_dir.RunDirBusyError`.

    ``distributed`` (from :func:`~pyro_vae.training.distributed.session`) makes this
    call one process of a multi-process run: every process calls it with the same
    arguments (its own ``device``); rank 0 holds the lock and writes the files.
    """
    check_arguments(train, **locals())  # every argument against its annotation, before any work
    if keep_every < 0:
        raise ValueError(f"keep_every must be >= 0, got {keep_every}")
    if jit:
        check_jit(config)
    if config.batch_size % distributed.world_size:
        raise ValueError(
            f"batch_size={config.batch_size} is not divisible by the {distributed.world_size} processes: "
            "each process trains on batch_size / processes points of every global minibatch"
        )
    run_dir = Path(run_dir)
    with ExitStack() as stack:
        def prepare() -> dict | None:
            stack.enter_context(lock_run_dir(run_dir))
            # one process loads onto its device; several share rank 0's copy, sent from the CPU
            return _prepare(config, run_dir, resume, keep_every, "cpu" if distributed.active else device, distributed)

        state = distributed.on_main(prepare)
        if state is not None and distributed.active:
            state = to_device(state, device)
        return _train_prepared(
            config, run_dir, state, data_dir=data_dir, device=device, progress=progress,
            keep_every=keep_every, distributed=distributed, on_eval=on_eval,
            validate_every_step=validate_every_step, jit=jit,
        )


def check_jit(config: TrainConfig) -> None:
    """Refuse ``--jit`` for a config whose step cannot be compiled (an algorithm without
    ``compiles = True``, or KL warm-up, whose beta the first step's graph would fix)."""
    if not getattr(ALGORITHMS[config.algorithm], "compiles", False):
        raise ValueError(f"--jit compiles the ELBO of the aevb algorithm; the {config.algorithm} algorithm trains without it")
    if config.kl_warmup:
        raise ValueError("--jit cannot compile KL warm-up (its beta changes by epoch); train without --jit")


def _prepare(
    config: TrainConfig, run_dir: Path, resume: bool, keep_every: int, map_location: str,
    distributed: DistributedContext,
) -> dict | None:
    """The checkpoint to resume from (``None`` for a new run), checked against ``config``;
    run on rank 0 while it holds the run folder's lock."""
    clean_stale_temp_files(run_dir)
    checkpoint_path = run_dir / CHECKPOINT
    state = load_checkpoint(checkpoint_path, map_location=map_location) if resume else None
    if state is not None:
        saved = TrainConfig.from_dict({**state["config"], "epochs": config.epochs})
        require_same_config(saved, config, run_dir)
        if state["epoch"] > config.epochs:
            raise ValueError(
                f"cannot resume {run_dir} to {config.epochs} epochs: it has already run {state['epoch']}; "
                f"ask for at least {state['epoch']} epochs"
            )
        distributed.check_checkpoint(state, checkpoint_path)
        repair_snapshots(run_dir, checkpoint_path, state["epoch"], keep_every, verify_checkpoint)
    elif checkpoint_path.exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) or use a new directory")
    return state


def _train_prepared(
    config: TrainConfig,
    run_dir: Path,
    state: dict | None,
    *,
    data_dir: str | None,
    device: str,
    progress: bool,
    keep_every: int,
    distributed: DistributedContext,
    on_eval: Callable[[Run], dict] | None,
    validate_every_step: bool,
    jit: bool,
) -> Run:
    # train()'s body after _prepare, while rank 0 holds the run folder's lock.
    checkpoint_path = run_dir / CHECKPOINT
    with distributed.local_main_first():
        run = build_run(config, data_dir, device)
    check_program(run, device)
    vae, estimator, dataset = run.vae, run.estimator, run.dataset
    trained_by = compile_estimator(estimator, data_check(vae)) if jit else estimator
    algorithm: Algorithm = distributed.wrap(ALGORITHMS[config.algorithm](vae, trained_by, config))
    generator = torch.Generator().manual_seed(config.seed)
    distributed.seed_noise(config.seed)
    start_epoch, wall = 0, 0.0
    if state is not None:
        load_module_state(vae, state["model"], "model", checkpoint_path)
        load_module_state(estimator.modules, state["estimator"], "estimator", checkpoint_path)
        load_algorithm_state(algorithm, state["optimizer"], checkpoint_path)
        own = distributed.rank_entry(state)
        _set_rng_state(state["rng"] if own is None else own["rng"], generator)
        if own is not None:
            restore_state(algorithm.load_rank_state, own["param_stores"], "per-process", checkpoint_path)
        start_epoch, run.metrics = state["epoch"], state["metrics"]
        wall = state.get("wall_seconds", run.metrics[-1]["wall_seconds"] if run.metrics else 0.0)
    distributed.broadcast_modules([vae, estimator.modules])

    distributed.on_main(lambda: atomic_write_json(run_dir / CONFIG, asdict(config)))
    n = len(dataset.train)
    schedule: EvalSchedule | None = None
    clock = _Clock(wall)
    last_save, saved_epoch = time.perf_counter(), start_epoch
    for epoch in range(start_epoch + 1, config.epochs + 1):
        batches = dataset.train_batches(
            config.batch_size, generator, device, keys=vae.data_keys, shard=distributed.shard,
            labelled_per_batch=config.labelled_per_batch,
        )
        if schedule is None:
            schedule = EvalSchedule(config.evals_per_decade, len(batches), config.batch_size, config.epochs)
        rows_before = len(run.metrics)
        bar = tqdm(
            batches, desc=f"epoch {epoch}/{config.epochs}", disable=not (progress and distributed.is_main), leave=False
        )
        for step, batch in enumerate(bar, 1):
            with pyro.validation_enabled(validate_every_step or (epoch == start_epoch + 1 and step == 1)):
                loss = algorithm.step(batch, n)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"the loss became {loss} at epoch {epoch}, step {step}; training stopped. "
                    f"The checkpoint of epoch {saved_epoch} ({checkpoint_path}) is intact; "
                    "lower --lr and resume, or start again"
                )
            clock.add_step(loss)
            if step % 50 == 0:
                bar.set_postfix(elbo=f"{-clock.loss / (clock.steps * n):.2f}")
            global_step = (epoch - 1) * len(batches) + step
            if schedule.due(global_step):
                row = _metrics_row(run, epoch, global_step * config.batch_size, clock, device, distributed, on_eval)
                run.metrics.append(row)
                if progress and distributed.is_main:
                    tqdm.write(
                        f"epoch {epoch}, {row['samples_seen']:.3g} samples: train ELBO {row['train_elbo']:.2f}, "
                        f"test ELBO {row['test_elbo']:.2f} nats ({row['train_seconds']:.1f} s)"
                    )
        algorithm.end_epoch()
        now = time.perf_counter()
        if (len(run.metrics) > rows_before or epoch == config.epochs or now - last_save >= CHECKPOINT_SECONDS
                or (keep_every and epoch % keep_every == 0)):
            checkpoint = {
                "config": asdict(config),
                "epoch": epoch,
                "model": vae.state_dict(),
                "estimator": estimator.modules.state_dict(),
                "optimizer": algorithm.state_dict(),
                "rng": _rng_state(generator),
                "metrics": run.metrics,
                "wall_seconds": clock.wall(),
            }
            checkpoint.update(distributed.rank_entries(checkpoint["rng"], algorithm))
            distributed.on_main(lambda: _write_epoch(run_dir, run.metrics, checkpoint, epoch, keep_every))
            last_save, saved_epoch = now, epoch
    return run


class EvalSchedule:
    """The global steps after which the training loop writes a metrics row (and evaluates).

    ``evals_per_decade = 0``: after the last step of every epoch. ``d > 0``: after the
    first step at which the samples seen reach ``10^(j/d)``, for every integer j with
    ``10^(j/d)`` at least one epoch's samples (points evenly spaced on a log axis, as the
    paper's learning curves are drawn), and after the last step of training.
    """

    def __init__(self, evals_per_decade: int, steps_per_epoch: int, batch_size: int, epochs: int) -> None:
        last = steps_per_epoch * epochs
        if evals_per_decade == 0:
            self.steps = set(range(steps_per_epoch, last + 1, steps_per_epoch))
            return
        self.steps = {last}
        j = math.ceil(evals_per_decade * math.log10(steps_per_epoch * batch_size) - 1e-9)
        while (samples := 10 ** (j / evals_per_decade)) <= last * batch_size:
            self.steps.add(math.ceil(samples / batch_size - 1e-9))
            j += 1

    def due(self, step: int) -> bool:
        return step in self.steps


class _Clock:
    """Training time and loss since the last metrics row, and the run's wall time."""

    def __init__(self, wall: float) -> None:
        self._wall_start = time.perf_counter() - wall
        self._mark = time.perf_counter()
        self.loss, self.steps, self.train_seconds = 0.0, 0, 0.0

    def add_step(self, loss: float) -> None:
        now = time.perf_counter()
        self.train_seconds += now - self._mark
        self._mark = now
        self.loss += loss
        self.steps += 1

    def reset(self) -> None:
        """Start the next row's interval (evaluation time is not training time)."""
        self._mark = time.perf_counter()
        self.loss, self.steps, self.train_seconds = 0.0, 0, 0.0

    def wall(self) -> float:
        return time.perf_counter() - self._wall_start


def _metrics_row(
    run: Run, epoch: int, samples_seen: int, clock: _Clock, device: str, distributed: DistributedContext,
    on_eval: Callable[[Run], dict] | None,
) -> dict:
    """One metrics row: the mean minibatch bound since the last row, the test ELBO, the
    test error of a program that classifies (M2's q(y|x), :func:`classifies`) and ``on_eval``'s columns.

    With a log schedule (``evals_per_decade > 0``) the test ELBO draws the same z at every
    row (torch's RNG forked and seeded), so that differences between rows are changes of
    the model, not of the Monte Carlo noise, and the training's random numbers do not
    depend on the schedule. The per-epoch schedule (the default) draws the test ELBO's z
    from the training's RNG stream, as runs recorded before the log schedule did, so their
    numbers stay reproducible. ``on_eval`` always runs on a forked, seeded RNG.
    """
    config, vae = run.config, run.vae
    batches = run.dataset.test_batches(1000, device, keys=vae.data_keys, shard=distributed.shard)
    with _forked_rng(config.seed, device, fork=config.evals_per_decade > 0):
        test = evaluate(vae, batches, num_samples=config.eval_samples, reduce=distributed.sum)
    row = {
        "epoch": epoch,
        "samples_seen": samples_seen,
        "lr": config.lr * LR_SCHEDULES[config.lr_schedule](epoch - 1),
        "train_elbo": -clock.loss / (clock.steps * len(run.dataset.train)),
        "test_elbo": test["elbo"],
        "train_seconds": clock.train_seconds,
    }
    if classifies(vae):
        row["test_error"] = classification_error(vae, batches, reduce=distributed.sum)
    if on_eval is not None:
        with _forked_rng(config.seed, device):
            row.update(on_eval(run))
    row["wall_seconds"] = clock.wall()
    clock.reset()
    return row


@contextmanager
def _forked_rng(seed: int, device: str, fork: bool = True) -> Iterator[None]:
    """Run the body on torch's RNG seeded with ``seed``, restoring the RNG afterwards (if ``fork``)."""
    if not fork:
        yield
        return
    cuda = torch.device(device).type == "cuda"
    with torch.random.fork_rng(devices=[torch.device(device)] if cuda else []):
        torch.manual_seed(seed)
        yield


def _write_epoch(run_dir: Path, metrics: list[dict], checkpoint: dict, epoch: int, keep_every: int) -> None:
    """Write an epoch's metrics and checkpoint (and its snapshot every ``keep_every`` epochs)."""
    write_csv(metrics, run_dir / METRICS)
    save_checkpoint(checkpoint, run_dir / CHECKPOINT)
    if keep_every and epoch % keep_every == 0:
        atomic_copy(run_dir / CHECKPOINT, snapshot_path(run_dir, epoch))
