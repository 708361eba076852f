"""The kinds of run, by the data they train on, and building a run of any kind.

A model class declares the data it trains on in ``data_kind`` (default ``"vectors"``). Each
kind is one :class:`RunKind` in :data:`RUN_KINDS`, defined and registered here and nowhere
else; the one training loop (:func:`pyro_vae.training.loop.train`) asks it how the run is
built, which batches one epoch steps through and at what loss scale, when a metrics row is
written and what the row holds, and what the kind cannot do (several processes, ``--jit``):

* ``"vectors"`` (:class:`Minibatches`): data points, minibatches of a
  :class:`~pyro_vae.data.Dataset` in a seeded order, the loss scaled to the whole training
  set (N/M, the paper's Algorithm 1), a row per epoch or ``evals_per_decade`` rows per decade
  of samples seen (:class:`~pyro_vae.training.metrics.EvalSchedule`) with the test ELBO;
* ``"graph"`` (:class:`FullGraph`): one graph (:mod:`pyro_vae.training.graph_run`), one
  full-graph step per epoch, a row after each with the loss and validation AUC/AP.

:func:`build_run` builds the run a config describes, :func:`load_run` rebuilds the run of a
run folder from a checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

import torch
from pyro.nn import PyroModule

from pyro_vae.inference import ALGORITHMS, ESTIMATORS
from pyro_vae.models import MODELS
from pyro_vae.models.program import member
from pyro_vae.registry import Registry
from pyro_vae.training.build import PROGRAM_SOURCES, Run, build_vector_run, check_program
from pyro_vae.training.checkpoint import (
    GENERATORS,
    CheckpointError,
    check_data_fingerprint,
    load_checkpoint,
    load_module_state,
)
from pyro_vae.training.config import TrainConfig, data_kind
from pyro_vae.training.distributed import SINGLE, DistributedContext
from pyro_vae.training.folder import CHECKPOINT
from pyro_vae.training.graph_run import GraphRun, build_graph_run, graph_report
from pyro_vae.training.metrics import Clock, EvalSchedule, metrics_row
from pyro_vae.training.report import evaluate_run, report_path
from pyro_vae.validation import check_device

OnEval = Callable[[Run], dict] | None


class EpochBatches(Protocol):
    """The batches of one epoch (a :class:`~pyro_vae.data.batches.Batches`, a list): how many,
    and each a dict of the data the program takes."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]: ...


class RunKind:
    """How runs of one kind of data are built, stepped and reported (the loop's questions; see the
    module docstring). ``refuses`` declares what the kind cannot do, each with the reason given to
    the user: ``"processes"`` (training on several processes), ``"jit"``, ``"pretrained"`` (being
    shipped as an entry of weights alone), ``"figures"``, ``"probe"``, ``"variance"``.
    ``forks_rng`` restores torch's global RNG when training returns; ``generators`` are the RNG
    streams its checkpoints must hold."""

    refuses: Mapping[str, str] = MappingProxyType({})
    forks_rng: bool = False
    generators: tuple[str, ...] = GENERATORS

    def refuse(self, what: str) -> None:
        """``ValueError`` with the reason where the kind cannot do ``what`` (a key of ``refuses``)."""
        if what in self.refuses:
            raise ValueError(self.refuses[what])

    def build(self, config: TrainConfig, data_dir: str | Path | None, device: str, data: object = None) -> Run:
        """The run ``config`` describes on ``device``, torch's RNG seeded with ``config.seed``;
        ``data`` a user's own data (``train(..., data=...)``), ``None`` for the data set by name."""
        raise NotImplementedError

    def check(self, run: Run, device: str, processes: int) -> None:
        """Refuse, before any step, what the run cannot train (nothing by default)."""

    def batches(
        self, run: Run, generator: torch.Generator, device: str, distributed: DistributedContext
    ) -> EpochBatches:
        """The batches of one epoch, each a dict of the data the program takes."""
        raise NotImplementedError

    def total_size(self, run: Run) -> int:
        """The number of data the loss of one step is scaled to (the size of the data plate)."""
        raise NotImplementedError

    def schedule(self, config: TrainConfig, steps_per_epoch: int) -> EvalSchedule:
        """The global steps after which a metrics row is written."""
        return EvalSchedule(config.evals_per_decade, steps_per_epoch, config.batch_size, config.epochs)

    def row(
        self,
        run: Run,
        epoch: int,
        samples_seen: int,
        lr: float,
        clock: Clock,
        device: str,
        distributed: DistributedContext,
        on_eval: OnEval,
    ) -> dict:
        """The metrics row written after a due step (``clock`` holds the steps since the last row
        and is reset)."""
        raise NotImplementedError

    def describe(self, row: dict) -> str | None:
        """The line printed for a row while training shows progress (``None``: none)."""
        return None

    def validation_metric(self, config: TrainConfig) -> str | None:
        """The metrics column of held-out data that early stopping watches (greater is better),
        ``None`` where the run has none."""
        return None

    def report(self, run: Run, run_dir: str | Path, *, num_samples: int, **options) -> tuple[dict, Path, str]:
        """The final evaluation of a trained run on its test data: ``(report, path, line)``, the
        numbers, the file of ``run_dir`` to write them to, and the line that says them
        (``num_samples``: K importance samples per datum, for a kind that samples)."""
        raise NotImplementedError


class Minibatches(RunKind):
    """Data points in minibatches (``"vectors"``)."""

    def build(self, config: TrainConfig, data_dir: str | Path | None, device: str, data: object = None) -> Run:
        return build_vector_run(config, data_dir, device, data)

    def check(self, run: Run, device: str, processes: int) -> None:
        check_program(run, device, processes)

    def batches(
        self, run: Run, generator: torch.Generator, device: str, distributed: DistributedContext
    ) -> EpochBatches:
        return run.dataset.train_batches(
            run.config.batch_size,
            generator,
            device,
            keys=run.program.data_keys,
            shard=distributed.shard,
            labelled_per_batch=run.config.labelled_per_batch,
        )

    def total_size(self, run: Run) -> int:
        return len(run.dataset.train)

    def row(self, run, epoch, samples_seen, lr, clock, device, distributed, on_eval) -> dict:
        return metrics_row(run, epoch, samples_seen, lr, clock, device, distributed, on_eval)

    def describe(self, row: dict) -> str:
        return (
            f"epoch {row['epoch']}, {row['samples_seen']:.3g} samples: train ELBO {row['train_elbo']:.2f}, "
            f"test ELBO {row['test_elbo']:.2f} nats ({row['train_seconds']:.1f} s)"
        )

    def validation_metric(self, config: TrainConfig) -> str | None:
        return "val_elbo" if config.validation_fraction else None

    def report(
        self,
        run: Run,
        run_dir: str | Path,
        *,
        num_samples: int,
        device: str = "cpu",
        num_test: int | None = None,
        distributed: DistributedContext = SINGLE,
        **options,
    ) -> tuple[dict, Path, str]:
        """The test ELBO and importance-sampled log p(x) with K = ``num_samples``
        (:func:`~pyro_vae.training.report.evaluate_run`, which takes ``options``)."""
        report = evaluate_run(run, num_samples, device, num_test, distributed, **options)
        num = report["num_test"]
        marginal, seed = options.get("marginal", False), options.get("seed")
        path = report_path(run_dir, report["epoch"], num_samples, num, marginal, seed)
        line = (
            f"epoch {report['epoch']}: test ELBO ({num_samples}-sample mean) {report['test_elbo']:.2f}, "
            f"{report['log_likelihood_of']} (IS, K={num_samples}) {report['test_log_px']:.2f} nats over {num} "
            "test images" + (f", test error {100 * report['test_error']:.2f}%" if "test_error" in report else "")
        )
        return report, path, line


class FullGraph(RunKind):
    """One graph, one full-graph step per epoch (``"graph"``)."""

    refuses = MappingProxyType(
        {
            "processes": "a graph model trains on one process: a graph is one datum, not split over processes",
            "jit": "--jit compiles minibatch ELBOs of fixed shape; graph models train without it",
            "pretrained": "it trains on graph data; pretrained entries hold models of data points "
            "(keep a graph model's run folder)",
            "figures": "a graph run has no image figures: its numbers are the test AUC and AP "
            "(pyro-vae evaluate RUN), its learning curve the metrics.csv of its folder",
            "probe": "probe compares codes of data points by class; a graph run's codes are judged by "
            "link prediction (pyro-vae evaluate RUN: test AUC and AP)",
            "variance": "the estimator comparison draws minibatches of data points; a graph run has one graph",
        }
    )
    forks_rng = True
    generators = ("torch",)

    def build(self, config: TrainConfig, data_dir: str | Path | None, device: str, data: object = None) -> GraphRun:
        if data is not None:
            raise ValueError("a graph model trains on a registered graph data set (--dataset); data= takes data points")
        return build_graph_run(config, data_dir, device)

    def batches(
        self, run: Run, generator: torch.Generator, device: str, distributed: DistributedContext
    ) -> EpochBatches:
        assert isinstance(run, GraphRun)  # build makes one (for the type checker)
        return [run.batch()]

    def total_size(self, run: Run) -> int:
        return 1  # the paper's pair weights scale the loss already (paper_pairs)

    def schedule(self, config: TrainConfig, steps_per_epoch: int) -> EvalSchedule:
        return EvalSchedule(0, steps_per_epoch, config.batch_size, config.epochs)

    def row(self, run, epoch, samples_seen, lr, clock, device, distributed, on_eval) -> dict:
        val = run.val_metrics()
        row = {
            "epoch": epoch,
            "loss": clock.loss / clock.steps,
            "val_auc": val["auc"],
            "val_ap": val["ap"],
            "train_seconds": clock.train_seconds,
        }
        if on_eval is not None:
            row.update(on_eval(run))
        row["wall_seconds"] = clock.wall()
        clock.reset()
        return row

    def validation_metric(self, config: TrainConfig) -> str | None:
        return "val_auc"

    def report(
        self, run: Run, run_dir: str | Path, *, num_samples: int | None = None, **options
    ) -> tuple[dict, Path, str]:
        """Test AUC and AP of the posterior means (``num_samples`` and ``options``, the evaluation
        settings of data points, do not apply)."""
        assert isinstance(run, GraphRun)  # build makes one (for the type checker)
        report, path = graph_report(run, run_dir)
        line = (
            f"epoch {report['epoch']}: test AUC {100 * report['auc']:.2f}, AP {100 * report['ap']:.2f} "
            f"({report['train_wall_seconds']:.1f} s of training)"
        )
        return report, path, line


#: The kinds of run by the data they train on (a model class's ``data_kind``).
RUN_KINDS: Registry[RunKind] = Registry("kind of data")
RUN_KINDS.register("vectors", Minibatches(), help="data points, trained in minibatches")
RUN_KINDS.register("graph", FullGraph(), help="one graph, trained a full-graph step per epoch")


def run_kind(config: TrainConfig) -> RunKind:
    """The :class:`RunKind` of ``config``'s model."""
    return RUN_KINDS[data_kind(config)]


def of_kind(registry: Registry, kind: str) -> list[str]:
    """The names in ``registry`` (models, data sets) whose entries declare the ``data_kind`` ``kind``
    (``"vectors"`` where they declare none)."""
    RUN_KINDS.check(kind)
    return [name for name in registry if member(registry[name], "data_kind") == kind]


def build_run(config: TrainConfig, data_dir: str | Path | None = None, device: str = "cpu", data: object = None) -> Run:
    """Seed torch's RNG, load the data (``data``, a user's own, or ``config.dataset`` by name), and
    build the program and estimator on ``device``, as the run's kind builds them (:data:`RUN_KINDS`)."""
    check_device(device)  # before the data load: one line naming the device, not torch's list of twenty types
    return run_kind(config).build(config, data_dir, device, data=data)


def load_run(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    device: str = "cpu",
    checkpoint: str | Path | None = None,
    data: object = None,
) -> Run:
    """Rebuild the program of a run directory (its recorded model class) from its last
    (or the given) checkpoint. A user's model must be registered first (import its module).
    A run on a user's own data needs the same ``data`` again (the checkpoint's fingerprint
    refuses other data)."""
    path = Path(checkpoint or Path(run_dir) / CHECKPOINT)
    state = load_checkpoint(path, map_location=device)
    for kind, registry in (("model", MODELS), ("estimator", ESTIMATORS), ("algorithm", ALGORITHMS)):
        name = state["config"].get(kind)
        if name is not None and name not in registry:
            raise CheckpointError(
                f"{path} holds a run of the {kind} {name!r}, which is not registered here; import the module "
                f"that registers it first (pyro-vae --import MODULE ...). Registered: {registry.names()}"
            )
    try:
        config = TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError) as err:  # hand-made or mixed up: the file is named, not only the field
        raise CheckpointError(f"checkpoint {path} holds an invalid config: {err}") from None
    run = build_run(config, data_dir, device, data)
    check_data_fingerprint(state, getattr(run.dataset, "fingerprint", None), path)
    load_module_state(run.program, state["model"], "model", path)
    load_module_state(run.estimator.modules, state["estimator"], "estimator", path)
    run.metrics = state["metrics"]
    return run


def _run_folder_program(path: str, data_dir: str | Path | None, device: str) -> PyroModule:
    """The program of the run folder ``path``."""
    if not (Path(path) / CHECKPOINT).is_file():
        raise ValueError(
            f"{path} is no run folder with a checkpoint (no {Path(path) / CHECKPOINT}); "
            "give a trained run's folder or pretrained:NAME"
        )
    return load_run(path, data_dir, device).program


PROGRAM_SOURCES.register("run", _run_folder_program, help="a run folder: its last checkpoint")
