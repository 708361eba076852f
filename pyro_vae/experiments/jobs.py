"""Independent training runs in parallel worker processes.

A figure of the paper is a set of independent runs (one per setting and algorithm).
On a machine with several cores, ``run_jobs(fn, items, jobs)`` trains ``jobs`` of them at
once, each in its own process with this process's torch thread count. Every run seeds
itself from its config, so the results do not depend on ``jobs`` or on the order the
runs finish in.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import TypeVar

import torch
from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_jobs(fn: Callable[[T], R], items: Sequence[T], jobs: int = 1, *, progress: bool = False) -> list[R]:
    """``[fn(item) for item in items]``, with ``jobs > 1`` in that many worker processes; with
    ``progress``, a tqdm bar on stderr counts the items done (in the order of ``items``).

    Workers are started with ``spawn`` (forking a process whose torch thread pools are
    running can deadlock), so ``fn`` and the items must pickle: a module-level function
    or a :class:`functools.partial` of one. Results come back in the order of ``items``;
    the first exception of a worker is raised here, once the jobs already running end
    (those not started are dropped).

    Ctrl-C stops the workers with this process (they share its process group); a signal to
    this process alone leaves each worker to finish its current job, so stop a background
    run by its process group (``kill -- -PGID``). Runs resume from their checkpoints either way.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    bar = partial(tqdm, total=len(items), desc="runs", unit="run", disable=not progress, leave=False)
    if jobs == 1 or len(items) <= 1:
        return [fn(item) for item in bar(items)]
    context = multiprocessing.get_context("spawn")
    workers = min(jobs, len(items))
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(torch.get_num_threads(),)
    )
    try:
        return list(bar(pool.map(fn, items)))
    finally:  # after an error, the jobs not yet started are dropped
        pool.shutdown(cancel_futures=True)
