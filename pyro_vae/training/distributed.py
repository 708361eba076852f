"""Training on several processes: ``torchrun`` and ``torch.distributed``.

``torchrun --nproc_per_node W -m pyro_vae train ...`` (plus ``--nnodes``,
``--node_rank``, ``--rdzv_endpoint`` across machines) starts W processes per
machine and sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`session`
reads them and opens PyTorch's process group, backend ``nccl`` for a CUDA device
(process r on ``cuda:LOCAL_RANK``), ``gloo`` on the CPU. The training loop
(:func:`pyro_vae.training.loop.train`) takes the :class:`DistributedContext`;
:data:`SINGLE` is one process, whose methods do nothing.

**The data: one global minibatch split W ways.** Every process draws the same
permutation and the same dynamic binarization from the run's seeded data
generator, so the global minibatch B of M = ``batch_size`` points is exactly
the one-process run's; process r trains on B_r = B[r::W], M/W points (M must be
divisible by W). This is the assignment ``DistributedSampler`` makes (one
permutation everywhere, process r takes positions r, r + W, ...), without
its separate ``seed + epoch`` shuffle: data order and binarization stay those of
a one-process run with the same seed, the generator's state (the same on every
process) resumes as on one process, and each datum's Bernoulli draw is its own,
independent of other processes'. The price: each process binarizes all M
points of a global batch to keep its M/W (one Bernoulli per pixel, small beside
the networks).

**The gradient: averaged over processes, with total_size = N.** One process
minimizes the surrogate L = (N/M) sum_{i in B} l_i (the data plate scales by
``total_size`` N over the batch size M). Process r runs the same program on its
M/W points with the same ``total_size`` N, so Pyro scales by N/(M/W) = W N/M::

    L_r = W (N/M) sum_{i in B_r} l_i,    (1/W) sum_r L_r = (N/M) sum_{i in B} l_i = L.

So the mean over processes of their gradients is the one-process gradient of
the same global batch (up to float rounding), and each L_r alone still
estimates the data set's negative ELBO. (Summing gradients instead would need
``total_size`` N/W.) A step reports the mean of the L_r, i.e. L, on every process.

**Why not DistributedDataParallel.** DDP reduces gradients through hooks that its
wrapper's ``forward`` arms; Pyro's ELBOs run the model and guide as functions and
call ``backward`` themselves (``loss_and_grads``), and wake-sleep steps two
optimizers on two losses per minibatch, so there is no single module forward
to wrap. :class:`DistributedAlgorithm` wraps any registered algorithm instead:
a pre-step hook on each of its torch optimizers averages the gradients of the
parameters that optimizer steps, in one all-reduce of one flat bucket, just
before the step. Like DDP, the processes start from rank 0's parameters
(broadcast), and since they then apply the same averaged gradients with the same
optimizer state, the parameters stay equal on every process.

**Per-process state.** The guide's samples come from torch's RNG, which
process r > 0 reseeds with ``seed + r * 2**32``: the processes' noise is
independent, so a W-process run equals a one-process run in distribution, and
to float tolerance when the objective has no sampling noise. What an algorithm
keeps in its :class:`~pyro_vae.inference.algorithms.ParamScope`
(``TraceGraph_ELBO``'s decaying-average baselines of the ``score-baseline``
estimator) is each process's own, averaged over its own shards. A checkpoint
holds, besides the usual entries (rank 0's), ``"distributed": {"world_size": W,
"ranks": [{"rng": ..., "param_stores": [...]}, ...]}`` gathered from every
process, so a resumed run continues each process exactly; it must be resumed
with the same W.

**Files.** Rank 0 alone locks the run folder and writes config, metrics and
checkpoints; :meth:`DistributedContext.on_main` makes the others wait for it and
raises its error (busy folder, config mismatch, full disk) on every process.
Rank 0 reads the checkpoint on resume and broadcasts it, so the run folder
needs to be on rank 0's machine only. Data sets are loaded by local rank 0 first
(one download per machine).

**Evaluation.** Process r evaluates the test points r, r + W, ...; the sums of the
per-datum ELBO and log p(x) and the count are all-reduced, so every process
gets the means over the whole test set.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from pyro_vae.inference.algorithms import Algorithm, ParamScope, algorithm_member

__all__ = [
    "SINGLE",
    "DistributedAlgorithm",
    "DistributedContext",
    "launched_by_torchrun",
    "lost_peer_message",
    "session",
]

T = TypeVar("T")
ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistributedContext:
    """Process ``rank`` of ``world_size`` (``local_rank`` on its machine), talking over
    the default process group on ``device`` (``cpu`` for gloo, ``cuda:LOCAL_RANK`` for nccl).

    With ``world_size == 1`` (:data:`SINGLE`) every method is the one-process
    identity: no process group is needed.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def active(self) -> bool:
        """Whether there are other processes."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that writes files."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        """``(rank, world_size)``, for :meth:`pyro_vae.data.Dataset.train_batches`."""
        return self.rank, self.world_size

    # --- control flow ----------------------------------------------------------
    def on_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on rank 0 alone, its result broadcast to every process (the others
        wait for it); an exception it raises is raised on every process."""
        if not self.active:
            return fn()
        box: list[Any] = [(None, None)]
        if self.is_main:
            try:
                box = [(fn(), None)]
            except Exception as err:  # every process raises it below
                box = [(None, _picklable(err))]
                dist.broadcast_object_list(box, src=0)
                raise
        dist.broadcast_object_list(box, src=0)
        result, error = box[0]
        if error is not None:
            raise error
        return result

    @contextmanager
    def local_main_first(self) -> Iterator[None]:
        """The block runs on each machine's local rank 0 first, then on its other processes
        (so that one process per machine downloads or unpacks a data set)."""
        if self.active and self.local_rank != 0:
            dist.barrier()
        try:
            yield
        finally:
            if self.active and self.local_rank == 0:
                dist.barrier()

    # --- collectives ------------------------------------------------------------
    @property
    def reduce(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """:meth:`sum` where there are other processes, else ``None`` (what
        :func:`~pyro_vae.inference.evaluate.evaluate` takes as ``reduce``)."""
        return self.sum if self.active else None

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over processes (a new tensor on ``tensor``'s device)."""
        if not self.active:
            return tensor
        total = tensor.to(self.device, copy=True)
        dist.all_reduce(total)
        return total.to(tensor.device)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over processes."""
        if not self.active:
            return value
        return self.sum(torch.tensor(value, dtype=torch.float64)).item() / self.world_size

    def gather(self, obj: T) -> list[T]:
        """Every process's ``obj``, in rank order (tensors moved to the CPU first)."""
        if not self.active:
            return [obj]
        objects: list[Any] = [None] * self.world_size
        dist.all_gather_object(objects, to_device(obj, "cpu"))
        return objects

    def broadcast_modules(self, modules: Sequence[torch.nn.Module]) -> None:
        """Copy rank 0's parameters and buffers into every process's ``modules``."""
        if not self.active:
            return
        for module in modules:
            for tensor in module.state_dict().values():  # shares storage with the parameters
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Replace each ``p.grad`` by its mean over processes, in one all-reduce.

        A parameter without a gradient counts as zero on that process; one with no
        gradient on any process keeps ``None`` (the optimizer skips it, as it
        would on one process).
        """
        if not self.active or not params:
            return
        grads = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in params]
        present = torch.tensor([float(p.grad is not None) for p in params], device=grads[0].device)
        bucket = self.sum(torch.cat([*grads, present.to(grads[0].dtype)]))
        seen = bucket[-len(params) :].tolist()
        offset = 0
        for p, seen_by in zip(params, seen):
            if seen_by:
                p.grad = bucket[offset : offset + p.numel()].view_as(p).div_(self.world_size).to(p.dtype)
            offset += p.numel()

    # --- setup ------------------------------------------------------------------------
    def seed_noise(self, seed: int) -> None:
        """Give process r > 0 its own torch RNG stream (``seed + r * 2**32``), for the
        guide's samples; rank 0 keeps the one-process stream. Data order and
        binarization come from the data generator, the same on every process."""
        if self.rank > 0:
            torch.manual_seed(seed + self.rank * 2**32)

    def wrap(self, algorithm: Algorithm) -> Algorithm:
        """``algorithm`` itself on one process, else a :class:`DistributedAlgorithm` around it."""
        return DistributedAlgorithm(algorithm, self) if self.active else algorithm

    def rank_entries(self, rng: dict, algorithm: Algorithm) -> dict:
        """The checkpoint's ``"distributed"`` entry, gathered from every process
        (nothing on one process); every process must call it."""
        if not self.active:
            return {}
        assert isinstance(algorithm, DistributedAlgorithm)  # wrap made it one (for the type checker)
        mine = {"rng": rng, "param_stores": algorithm.rank_state()}
        return {"distributed": {"world_size": self.world_size, "ranks": self.gather(mine)}}

    def check_checkpoint(self, state: dict, path: os.PathLike | str) -> None:
        """Refuse to resume a checkpoint written by another number of processes."""
        saved = state.get("distributed", {}).get("world_size", 1)
        if saved != self.world_size:
            raise ValueError(
                f"cannot resume {path} on {self.world_size} process(es): it was written by a run on {saved}, "
                f"whose per-process random streams it holds; resume it with {saved} "
                f"({'torchrun --nproc_per_node ...' if saved > 1 else 'one process, without torchrun'})"
            )

    def rank_entry(self, state: dict) -> dict | None:
        """This process's part of a checkpoint's ``"distributed"`` entry (``None`` on one process)."""
        return state["distributed"]["ranks"][self.rank] if self.active else None


#: The context of a run on one process (world size 1, rank 0), whose methods do nothing.
SINGLE = DistributedContext()


class DistributedAlgorithm:
    """Any registered algorithm, its gradients averaged over processes before each optimizer step.

    The wrapped algorithm's torch optimizers and :class:`ParamScope` s are found
    among its attributes; each optimizer gets a pre-step hook that averages the
    gradients of the parameters it steps (see the module docstring for why the
    mean with ``total_size`` N is the one-process gradient). ``step`` returns the
    mean loss over processes, the same on each, so a NaN stops every process
    at the same step.
    """

    def __init__(self, algorithm: Algorithm, context: DistributedContext) -> None:
        name = type(algorithm).__name__
        if not algorithm_member(algorithm, "splits_batches"):
            raise ValueError(
                f"{name} weighs a whole minibatch at once, so splitting it over processes would change "
                "what it computes; train it on one process"
            )
        self.algorithm, self.context = algorithm, context
        attributes = vars(algorithm).values()
        optimizers = [value for value in attributes if isinstance(value, torch.optim.Optimizer)]
        if not optimizers:
            raise ValueError(
                f"{name} keeps no torch optimizer as an attribute, so its gradients cannot be averaged over processes"
            )
        self.scopes = [value for value in attributes if isinstance(value, ParamScope)]
        for optimizer in optimizers:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            optimizer.register_step_pre_hook(lambda *_, params=params: context.average_gradients(params))

    def step(self, batch: dict[str, torch.Tensor], total_size: int) -> float:
        return self.context.mean(self.algorithm.step(batch, total_size))

    def observe(self, row: dict) -> None:
        """The wrapped algorithm's ``observe(row)`` (a plateau schedule's metric), where it has one."""
        observe = algorithm_member(self.algorithm, "observe")
        if observe is not None:
            observe(row)

    def end_epoch(self) -> None:
        self.algorithm.end_epoch()

    def learning_rate(self) -> float:
        return self.algorithm.learning_rate()

    def state_dict(self) -> dict:
        return self.algorithm.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.algorithm.load_state_dict(state)

    def rank_state(self) -> list[dict[str, torch.Tensor]]:
        """What differs between processes: the baselines of each of the algorithm's param scopes."""
        return [scope.state_dict() for scope in self.scopes]

    def load_rank_state(self, states: list[dict[str, torch.Tensor]]) -> None:
        for scope, values in zip(self.scopes, states, strict=True):
            scope.load_state_dict(values)


def to_device(obj: T, device: str | torch.device) -> T:
    """``obj`` with every tensor in it on ``device``: what ``torch.load(map_location=device)``
    would give (a round trip through ``torch.save``)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, map_location=device, weights_only=True)


def _picklable(err: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__} on rank 0: {err}")


# What gloo and NCCL say when the process at the other end of a collective is gone.
PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "NCCL communicator was aborted")


def resume_command(run_dir: str | os.PathLike) -> str:
    """The command that resumes the run in ``run_dir``: under torchrun, with as many processes."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = f"torchrun --nproc_per_node {world_size} -m pyro_vae" if world_size > 1 else "pyro-vae"
    return f"{launcher} train --run-dir {run_dir} --resume"


def lost_peer_message(err: BaseException, command: str, run_dir: str | os.PathLike | None) -> str | None:
    """The one line a torchrun process prints when a collective failed because a peer
    died (killed, crashed, out of memory), with how to resume; ``None`` for any other error."""
    if not launched_by_torchrun():
        return None
    text = str(err)
    cause = next((phrase for phrase in PEER_LOST if phrase in text), None)
    if cause is None and not isinstance(err, dist.DistError):
        return None
    rank, world_size = os.environ["RANK"], os.environ["WORLD_SIZE"]
    if command == "train" and run_dir is not None and os.path.isfile(os.path.join(run_dir, "checkpoint.pt")):
        how = f"resume with {resume_command(run_dir)} (the same number of processes)"
    else:
        how = f"nothing to resume; start {command} again"
    reason = cause or (text.strip().splitlines() or [type(err).__name__])[0][:120]
    return f"process {rank} of {world_size} lost a peer process, which died or was killed ({reason}); {how}"


def launched_by_torchrun() -> bool:
    """Whether torchrun (or a launcher like it) started this process as one of several."""
    return all(name in os.environ for name in ENV) and int(os.environ["WORLD_SIZE"]) > 1


@contextmanager
def session(device: str) -> Iterator[tuple[DistributedContext, str]]:
    """``(context, device)`` for this process: :data:`SINGLE` and ``device`` unless torchrun
    started several processes; then the process group is opened for the block
    (``nccl`` with ``cuda:LOCAL_RANK`` for a CUDA ``device``, ``gloo`` with the CPU)
    and closed after it."""
    if not launched_by_torchrun():
        yield SINGLE, device
        return
    rank, world_size, local_rank = (int(os.environ[name]) for name in ENV)
    if device.startswith("cuda"):
        if device not in ("cuda", f"cuda:{local_rank}"):
            raise ValueError(
                f"--device {device}: under torchrun each process uses cuda:LOCAL_RANK (here cuda:{local_rank}); "
                "pass --device cuda"
            )
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    try:
        yield DistributedContext(rank, world_size, local_rank, device), device
        # Leave together: rank 0 still writes the figures and reports when the others are done,
        # and a process group torn down under a peer that still uses it can abort that peer.
        dist.barrier()
    finally:
        dist.destroy_process_group()
