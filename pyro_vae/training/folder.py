"""The run API every training loop shares: open a run folder, write an epoch.

A run folder holds

* ``config.json``: the :class:`~pyro_vae.training.config.TrainConfig`, a copy for
  people and tools (resuming reads the checkpoint's, :mod:`pyro_vae.training.resume`);
* ``metrics.csv``: the loop's metrics rows;
* ``checkpoint.pt``: everything a resumed run needs to continue exactly
  (program, estimator, algorithm, RNG state, metrics), written atomically;
* ``checkpoints/epoch-NNNN.pt``: with ``keep_every``, kept snapshots.

:func:`open_run` gives a loop, for the duration of a ``with`` block, the
folder's lock (:func:`~pyro_vae.training.run_dir.lock_run_dir`), the removal of
temporary files a killed writer left, and the checkpoint to resume from, checked
against the config (every setting but ``epochs`` must be the checkpoint's), with
its snapshots repaired. :func:`write_epoch` writes the metrics and the checkpoint
of an epoch, each atomically. The training loop (:mod:`pyro_vae.training.loop`)
goes through both for every kind of run, so every run folder has the same guarantees.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pyro_vae.files import atomic_copy, atomic_write_json, write_csv
from pyro_vae.inference.optim import changed_options, schedule_spans_the_run
from pyro_vae.training.checkpoint import GENERATORS, load_checkpoint, save_checkpoint, verify_checkpoint
from pyro_vae.training.config import TrainConfig, require_same_config
from pyro_vae.training.distributed import SINGLE, DistributedContext
from pyro_vae.training.process import check_process
from pyro_vae.training.run_dir import clean_stale_temp_files, lock_run_dir, repair_snapshots, snapshot_path

#: The run folder's checkpoint, written atomically at the end of an epoch.
CHECKPOINT = "checkpoint.pt"
#: The run folder's metrics rows, one per epoch or per point of the log schedule.
METRICS = "metrics.csv"
#: The run folder's config, for people and tools (the checkpoint's is the one resumed from).
CONFIG = "config.json"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def diverged(loss: float, where: str, saved_epoch: int, run_dir: str | Path, config: TrainConfig) -> TrainingDiverged:
    """The error of a loss that became ``loss`` (NaN or infinite) at ``where`` (``epoch 3, step 7``):
    what is left (the checkpoint of ``saved_epoch``; none while it is 0, before the first was
    written) and what to change: the learning rate, and the optimizer and schedule options that
    differ from their defaults (:func:`~pyro_vae.inference.optim.changed_options`). A resume keeps
    every setting and repeats the same steps, so the fix is a new run."""
    changed = changed_options(config)
    fix = "lower --lr" + (f" or revisit {', '.join(changed)}" if changed else "")
    if saved_epoch == 0:
        return TrainingDiverged(
            f"the loss became {loss} at {where}, before the first checkpoint was written; "
            f"training stopped: {fix} and start again"
        )
    return TrainingDiverged(
        f"the loss became {loss} at {where}; training stopped. The checkpoint of epoch {saved_epoch} "
        f"({Path(run_dir) / CHECKPOINT}) is intact, but a resume keeps every setting and repeats the same steps: "
        f"{fix} and start a new run in another --run-dir"
    )


@contextmanager
def open_run(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool,
    keep_every: int = 0,
    map_location: str = "cpu",
    distributed: DistributedContext = SINGLE,
    generators: tuple[str, ...] = GENERATORS,
    process: Mapping[str, Any] | None = None,
    allow_process_change: bool = False,
) -> Iterator[dict | None]:
    """Lock ``run_dir`` for the ``with`` block and yield the checkpoint to resume from
    (``None`` for a new run), after removing stale temporary files.

    ``resume=True``: the checkpoint's config must equal ``config`` but for ``epochs``,
    which may not be fewer than the epochs done; the snapshots of ``keep_every`` are
    repaired, and, if epochs remain to train, the checkpoint's process settings must be
    ``process``, this process's (:func:`~pyro_vae.training.process.check_process`), unless
    ``allow_process_change``.
    ``resume=False`` refuses a folder that already holds a checkpoint.
    A second trainer of the same folder gets
    :class:`~pyro_vae.training.run_dir.RunDirBusyError`.
    """
    run_dir = Path(run_dir)
    with lock_run_dir(run_dir):
        clean_stale_temp_files(run_dir)
        checkpoint_path = run_dir / CHECKPOINT
        state = load_checkpoint(checkpoint_path, map_location=map_location, generators=generators) if resume else None
        if state is not None:
            saved = TrainConfig.from_dict({**state["config"], "epochs": config.epochs})
            require_same_config(saved, config, run_dir)
            if state["epoch"] > config.epochs:
                raise ValueError(
                    f"cannot resume {run_dir} to {config.epochs} epochs: it has already run {state['epoch']}; "
                    f"ask for at least {state['epoch']} epochs"
                )
            if config.epochs != state["config"]["epochs"] and schedule_spans_the_run(config):
                raise ValueError(
                    f"cannot resume {run_dir} to {config.epochs} epochs: its {config.lr_schedule!r} schedule spans "
                    f"the {state['config']['epochs']} epochs it was started with; resume with --epochs "
                    f"{state['config']['epochs']}, or start a new run"
                )
            distributed.check_checkpoint(state, checkpoint_path)
            if process is not None and state["epoch"] < config.epochs:  # a finished run reused trains nothing
                check_process(state.get("process"), process, run_dir, allow_process_change)
            repair_snapshots(run_dir, checkpoint_path, state["epoch"], keep_every, verify_checkpoint)
        elif checkpoint_path.exists():
            raise FileExistsError(f"{run_dir} already holds a run; pass resume=True (--resume) or use a new directory")
        yield state


def write_config(config: TrainConfig, run_dir: str | Path) -> None:
    """``run_dir/config.json``, rewritten (atomically) at every start."""
    atomic_write_json(Path(run_dir) / CONFIG, asdict(config))


def write_epoch(run_dir: str | Path, metrics: list[dict], checkpoint: dict, keep_every: int = 0) -> None:
    """Write an epoch's metrics and checkpoint (and its snapshot every ``keep_every`` epochs), each atomically."""
    run_dir, epoch = Path(run_dir), checkpoint["epoch"]
    write_csv(metrics, run_dir / METRICS)
    save_checkpoint(checkpoint, run_dir / CHECKPOINT)
    if keep_every and epoch % keep_every == 0:
        atomic_copy(run_dir / CHECKPOINT, snapshot_path(run_dir, epoch))
