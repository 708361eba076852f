"""The run of a model of data points: the :class:`Run` record, the program a config describes,
and the checks before training.

:func:`build_vector_run` seeds torch's RNG, loads the data set and builds the registered
model ``config.model`` with the estimator ``config.estimator``; a run of any kind is built by
:func:`pyro_vae.training.kinds.build_run` and rebuilt from a checkpoint by
:func:`pyro_vae.training.kinds.load_run`.

A model option may name a trained program (M1 of the stacked M1 + M2): the model class lists
such options in ``program_options``, and :func:`build_program` loads each one given as a string
(:func:`load_program`: ``pretrained:NAME``, a run folder, or another scheme of
:data:`PROGRAM_SOURCES`) before the model is built, so the model layer loads no files.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro.nn
import torch
from pyro.nn import PyroModule

from pyro_vae.data import USER_DATASET, Dataset, as_dataset, load_dataset
from pyro_vae.inference import ALGORITHMS, Estimator, make_estimator
from pyro_vae.inference.algorithms import ParamScope, algorithm_member
from pyro_vae.inference.evaluate import evaluate
from pyro_vae.inference.joint import global_sites
from pyro_vae.models import MODELS, DataSpec, build_model
from pyro_vae.models.likelihoods import LIKELIHOODS, Likelihood
from pyro_vae.models.nets import initialize
from pyro_vae.models.program import member
from pyro_vae.models.vae import parameter_count
from pyro_vae.registry import Registry
from pyro_vae.training.checkpoint import CheckpointError
from pyro_vae.training.config import TrainConfig
from pyro_vae.validation import check_metrics_fit, device_memory


@dataclass
class Run:
    """A trained (or training) program with its data, estimator and history; ``folder`` is the
    run folder while the trainer writes it (``None`` for a run rebuilt elsewhere)."""

    config: TrainConfig
    dataset: Dataset
    # a registered model (a VAE or a relative) or a user's own: a torch module for the trainer and,
    # through PyroModule's __getattr__, a Program for the inference layer (typing has no intersection)
    program: pyro.nn.PyroModule  # written in full: the API reference resolves a field's type without the module's names
    estimator: Estimator
    metrics: list[dict] = field(default_factory=list)
    folder: Path | None = None

    @property
    def vae(self) -> PyroModule:
        """The old name of ``program`` (pyro_vae 0.2), kept one release with a warning."""
        warnings.warn("Run.vae is now Run.program", DeprecationWarning, stacklevel=2)
        return self.program


#: Where a trained program named by a model option comes from, by scheme: ``SCHEME:NAME`` is
#: ``PROGRAM_SOURCES[SCHEME](NAME, data_dir, device)``; a string without a registered scheme is a
#: run folder (``run``). :mod:`pyro_vae.pretrained` registers ``pretrained`` (the shipped weights).
PROGRAM_SOURCES: Registry[Callable[[str, str | Path | None, str], pyro.nn.PyroModule]] = Registry(
    "source of a trained program"
)


def _source_scheme(source: str) -> tuple[str, str] | None:
    """``(scheme, name)`` of a trained program's ``source`` of a registered scheme (``SCHEME:NAME``),
    ``None`` for a source without one: a run folder's path."""
    scheme, sep, name = source.partition(":")
    return (scheme, name) if sep and scheme in PROGRAM_SOURCES else None


def with_absolute_sources(config: TrainConfig) -> TrainConfig:
    """``config`` with each run folder that a program option names (``m1=RUN_DIR``) made
    absolute, so that the config a run saves names the same folder from any working
    directory (a resume started elsewhere on the machine finds it; ``pyro-vae train`` applies
    it to the options typed on its command line); ``SCHEME:NAME`` sources
    (``pretrained:NAME``) and options that are not sources are left as they are."""
    options = dict(config.model_options)
    for key in member(MODELS[config.model], "program_options"):
        source = options.get(key)
        if isinstance(source, str) and _source_scheme(source) is None:
            options[key] = str(Path(source).resolve())
    return config if options == config.model_options else dataclasses.replace(config, model_options=options)


def load_program(source: str, data_dir: str | Path | None = None, device: str = "cpu") -> PyroModule:
    """The trained program ``source`` names: ``pretrained:NAME`` (or ``SCHEME:NAME`` of another
    registered scheme), else a run folder, rebuilt from its config and last checkpoint
    (:func:`~pyro_vae.training.kinds.load_run`). Torch's RNG is restored afterwards (building a run seeds it), so the
    caller's random stream, e.g. the initial weights of the program being built, is unchanged."""
    scheme, name = _source_scheme(source) or ("run", source)
    with torch.random.fork_rng():
        return PROGRAM_SOURCES[scheme](name, data_dir, device)


def program_options(config: TrainConfig, data_dir: str | Path | None = None, device: str = "cpu") -> dict:
    """``config.model_options`` with each option that names a trained program (those the model
    class lists in ``program_options``) loaded by :func:`load_program` where it is a string; an
    error names the option and its value."""
    options = dict(config.model_options)
    for key in member(MODELS[config.model], "program_options"):
        source = options.get(key)
        if isinstance(source, str):
            try:
                options[key] = load_program(source, data_dir, device)
            except (ValueError, CheckpointError) as err:
                raise ValueError(f"model option {key}={source}: {err}") from err
    return options


def build_program(
    config: TrainConfig, dataset: Dataset, data_dir: str | Path | None = None, device: str = "cpu"
) -> PyroModule:
    """The registered model ``config.model`` a config describes, shaped for ``dataset``: its
    datum's shape, number of classes and likelihood (:func:`build_program_for`)."""
    spec = DataSpec(dataset.x_shape, dataset.num_classes)
    return build_program_for(config, spec, dataset.likelihood, data_dir, device)


def _bounded_decoder(name: str, x_shape: tuple[int, ...]) -> Likelihood | str:
    """The decoder of the registered likelihood ``name`` for data in [0, 1]: built with
    ``squash_mean=True`` where its class takes that option (its means squashed into (0, 1) by a
    sigmoid, e.g. :class:`~pyro_vae.models.likelihoods.Gaussian`), else ``name`` for the model to build."""
    likelihood: Callable[..., Likelihood] = LIKELIHOODS[name]  # a subclass may take options the base does not
    if "squash_mean" in inspect.signature(likelihood).parameters:
        return likelihood(x_shape, squash_mean=True)
    return name


def build_program_for(
    config: TrainConfig, spec: DataSpec, likelihood: str, data_dir: str | Path | None = None, device: str = "cpu"
) -> PyroModule:
    """The registered model ``config.model`` a config describes, for data of ``spec`` (one
    datum's shape, the number of classes) whose own decoder is ``likelihood`` (a registered
    likelihood's name; ``config.likelihood`` wins over it), without a data set: the weights are
    the model's initial ones. A trained program one of its options names is loaded
    (:func:`program_options`, a run folder's data set from ``data_dir``, onto ``device``).

    Every data set lies in [0, 1] (:class:`~pyro_vae.data.Dataset`), so a likelihood that can keep
    its means there does (``_bounded_decoder``): a Gaussian decoder squashes them into (0, 1)
    with a sigmoid, like the paper's Frey Face decoder.
    """
    decoder = _bounded_decoder(config.likelihood or likelihood, spec.x_shape)
    return build_model(
        config.model,
        spec,
        z_dim=config.z_dim,
        hidden=config.hidden,
        activation=config.activation,
        likelihood=decoder,
        init_std=config.init_std,
        **program_options(config, data_dir, device),
    )


def check_model_fits(config: TrainConfig, x_shape: Sequence[int], device: str | torch.device = "cpu") -> None:
    """Refuse a run whose training state cannot fit in ``device``'s memory.

    Counts four float tensors per weight of a VAE of ``config``'s sizes on data of ``x_shape``
    (the weight, its gradient and two optimizer moments) plus the hidden activations of one
    minibatch: a lower bound, so a run refused here could never have trained.
    """
    check_metrics_fit(config.epochs, device)
    memory = device_memory(device)
    if memory is None:
        return
    x_dim = math.prod(x_shape)
    hidden, z_dim = tuple(config.hidden or ()), config.z_dim or 0  # both set by TrainConfig (model_default)
    size = torch.tensor([], dtype=torch.get_default_dtype()).element_size()
    params = parameter_count(x_dim, z_dim, hidden)
    rows = config.batch_size * config.num_particles
    activations = rows * (2 * sum(hidden) + 2 * x_dim + 3 * z_dim)
    need = size * (4 * params + activations)
    if need > memory:
        sizes = "-".join(map(str, (x_dim, *hidden, z_dim)))
        raise ValueError(
            f"the model {sizes} (--hidden {' '.join(map(str, hidden))} --z-dim {z_dim}, "
            f"{params:,} weights, batch {config.batch_size}) needs at least {need / 2**30:,.1f} GiB to train, "
            f"more than the {memory / 2**30:,.1f} GiB of memory of {device}; choose smaller sizes"
        )


def build_vector_run(
    config: TrainConfig, data_dir: str | Path | None = None, device: str = "cpu", data: Any = None
) -> Run:
    """Seed torch's RNG, load the data set, and build the program and estimator on ``device``:
    the run of a model of data points (minibatches of a :class:`Dataset`). ``data`` is a user's
    own data (anything :func:`~pyro_vae.data.as_dataset` takes), for a config whose dataset is
    ``"user"`` (:data:`~pyro_vae.data.USER_DATASET`); ``None`` loads ``config.dataset`` by name."""
    torch.manual_seed(config.seed)
    if data is not None and config.dataset != USER_DATASET:
        raise ValueError(
            f"data= trains on your own data, and the config names the data set {config.dataset!r}; "
            f"give TrainConfig(dataset={USER_DATASET!r}, ...) (pyro-vae train --data FILE sets it)"
        )
    dataset = load_dataset(config.dataset, data_dir) if data is None else as_dataset(data)
    if config.num_train is not None:
        if config.num_train > len(dataset.train):
            raise ValueError(
                f"num_train={config.num_train} exceeds the {len(dataset.train)} training points of {dataset.name}"
            )
        labels = None if dataset.train_labels is None else dataset.train_labels[: config.num_train]
        dataset = dataclasses.replace(dataset, train=dataset.train[: config.num_train], train_labels=labels)
    if config.validation_fraction and dataset.validation is not None:
        raise ValueError(
            f"the data hold a validation set of {len(dataset.validation)} points and validation_fraction="
            f"{config.validation_fraction} asks for another; give one of them"
        )
    if config.validation_fraction:
        dataset = dataset.with_validation(config.validation_fraction, config.split_seed)
    if config.num_labels is not None:
        dataset = dataset.with_labels(config.num_labels, config.seed)
    check_model_fits(config, dataset.x_shape, device)
    program = build_program(config, dataset, data_dir, device).to(device)
    initialize(program, config.init)
    if (start := member(program, "initialize")) is not None:  # a data-dependent start (VampPrior's pseudo_init="data")
        start(dataset.train.to(device))
    estimator = make_estimator(config.estimator, program, config.num_particles, config.estimator_options)
    estimator.modules.to(device)
    return Run(config, dataset, program, estimator)


def check_program(run: Run, device: str = "cpu", processes: int = 1) -> None:
    """Check the program on two test points before any training: what the run's algorithm,
    estimator or number of processes cannot do with a latent outside the data plate (found
    from one trace, :func:`~pyro_vae.inference.evaluate.global_sites`) is refused by name, and
    the program is evaluated with one sample, so that what evaluation refuses fails at once.
    Torch's RNG is restored afterwards: the run's numbers do not change."""
    program, config = run.program, run.config
    batch = next(iter(run.dataset.test_batches(2, device, keys=program.data_keys, num=2)))
    with torch.random.fork_rng(), ParamScope(program.parameters()):
        x = batch.pop("x")
        sites = global_sites(
            program.model,
            program.guide,
            x,
            program.max_plate_nesting,
            data_plate_name=member(program, "data_plate_name"),
            **batch,
        )
        if sites:
            refusals = {
                f"the estimator {run.estimator.name!r} (a bound per datum)": run.estimator.objective != "elbo",
                f"the algorithm {config.algorithm!r}": not algorithm_member(
                    ALGORITHMS[config.algorithm], "global_latents"
                ),
                f"{processes} processes (the joint evaluation is not sharded)": processes > 1,
            }
            for what, refused in refusals.items():
                if refused:
                    raise ValueError(
                        f"the sites {sites} lie outside the data plate (latents shared by all data), which "
                        f"{what} cannot train; train it with --algorithm aevb, an estimator of the ELBO "
                        "(e.g. reparam) and one process"
                    )
        evaluate(program, run.dataset.test_batches(2, device, keys=program.data_keys, num=2), num_samples=1)
