"""The training configuration: everything that defines a run (not where it runs).

Every name in it is checked against its registry (model, estimator,
algorithm, optimizer, schedule, data set), so a bad name fails before any
work starts. ``model_options`` holds a registered model's own constructor
arguments (e.g. ``{"num_components": 10}``); ``num_labels`` keeps that many
training labels, balanced over classes (the semi-supervised setting), and
``labelled_per_batch`` puts that many of them in every minibatch.

Graph models (``vgae``, ``gae``) train on graph data sets (``cora``,
``planted-partition``, ...): a model class and a data set loader may declare a
``data_kind`` (default ``"vectors"``), and the two must agree. ``split_seed`` picks
the link split of a graph (:func:`pyro_vae.data.graphs.link_split`) and, with
``validation_fraction`` > 0, the training points held out for validation
(:meth:`pyro_vae.data.Dataset.with_validation`). A model class
may define ``check_config(config)`` to refuse settings it cannot use, as an
algorithm may.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pyro_vae.data import DATASETS
from pyro_vae.inference import ALGORITHMS, ESTIMATORS, LR_SCHEDULES, OPTIMIZERS
from pyro_vae.inference.algorithms import algorithm_member
from pyro_vae.inference.estimators import check_estimator_options
from pyro_vae.inference.optim import check_optimizer_settings
from pyro_vae.inference.stepping import LOSS_SCALES, SCHEDULE_INTERVALS
from pyro_vae.models import MODELS, VAE
from pyro_vae.models.likelihoods import LIKELIHOODS
from pyro_vae.models.nets import ACTIVATIONS, INIT_STD, INITIALIZATIONS
from pyro_vae.models.program import constructor_default, member
from pyro_vae.validation import COUNT, NON_NEGATIVE, POSITIVE, Rule, at_least, check_fields, finite, one_of, rules

#: Named sets of config values from the papers (``--preset``): architecture, optimizer and batch size.
PRESETS: dict[str, dict] = {
    # Kingma & Welling (2013), Section 5 / Appendix C: MNIST.
    "paper": dict(
        hidden=(500,),
        z_dim=20,
        optimizer="adagrad",
        lr=0.02,
        init_std=0.01,
        weight_decay=1.0,
        batch_size=100,
        num_particles=1,
    ),
    # Burda et al. (2016), single stochastic layer: 784-200-200-50, Adam.
    "iwae": dict(hidden=(200, 200), z_dim=50, optimizer="adam", lr=1e-3, batch_size=100),
    # Kipf & Welling (2016): GCN 32-16, Adam 0.01, 200 full-graph steps (a graph is one batch).
    "kipf": dict(hidden=(32,), z_dim=16, optimizer="adam", lr=0.01, epochs=200),
    # The discrete-estimator papers' sigmoid belief networks (Mnih & Rezende 2016, Tucker et al. 2017,
    # Dong et al. 2020): 200 binary units, linear networks or two deterministic tanh layers of 200.
    "sbn-linear": dict(model="sbn", hidden=(), z_dim=200),
    "sbn-nonlinear": dict(model="sbn", hidden=(200, 200), z_dim=200),
}


#: A seed torch takes, with room for the per-process streams ``seed + rank * 2**32``.
SEED = Rule("lie in [-2**62, 2**62)", lambda seed: -(2**62) <= seed < 2**62)
#: Layer sizes, each >= 1.
SIZES = Rule("be sizes >= 1, one per hidden layer", lambda sizes: all(size >= 1 for size in sizes))


#: The fields a config left ``None`` takes from its model's constructor (:func:`model_default`).
MODEL_DEFAULTED = ("z_dim", "hidden", "activation")


def model_default(model: str, name: str) -> Any:
    """The default of registered model ``model``'s constructor option ``name`` (a field of
    :data:`MODEL_DEFAULTED`), or :class:`~pyro_vae.models.vae.VAE`'s where the model declares
    none (``categorical-vae``'s ``z_dim``, the code's width, follows from its other options)."""
    default = constructor_default(MODELS[model], name)
    value = constructor_default(VAE, name) if default is None else default
    return (value,) if name == "hidden" and isinstance(value, int) else value  # a graph model's one layer


#: Config entries renamed since runs were first saved, old name -> new name: a saved config
#: (a checkpoint's, a pretrained record's) with an old name is read under the new one by
#: :meth:`TrainConfig.from_dict`.
RENAMED_KEYS: dict[str, str] = {"eval_samples": "metrics_num_samples"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (not where it runs).

    Each field's range is declared with it (``metadata=rules(...)``, :func:`pyro_vae.validation.rules`)
    and checked, with its type, by :func:`~pyro_vae.validation.check_fields` when the config is made;
    then the names against their registries and the fields against each other.
    Frozen: a field cannot change after its checks
    (``config.lr = -1.0`` raises ``dataclasses.FrozenInstanceError``); make a changed copy with
    ``dataclasses.replace(config, lr=...)``, which checks it again."""

    dataset: str = "mnist"
    # None: the model's own default (model_default), e.g. categorical-vae's hidden (512, 256) and ReLU
    z_dim: int | None = field(default=None, metadata=rules(COUNT))
    hidden: tuple[int, ...] | None = field(default=None, metadata=rules(SIZES))
    activation: str | None = None
    likelihood: str | None = None  # None: the data set's own
    init_std: float | None = field(default=None, metadata=rules(*INIT_STD))
    init: str = "torch"  # the affine layers' start (models.nets.INITIALIZATIONS); init_std draws N(0, std^2) instead
    estimator: str = "reparam"
    num_particles: int = field(default=1, metadata=rules(COUNT))
    optimizer: str = "adam"
    lr: float = field(default=1e-3, metadata=rules(POSITIVE))
    lr_schedule: str = "constant"
    estimator_options: dict = field(default_factory=dict)  # a registered estimator's own keywords (a user's beta)
    optimizer_options: dict = field(default_factory=dict)  # the torch optimizer's own keywords (momentum, betas, ...)
    schedule_options: dict = field(default_factory=dict)  # the schedule's keywords (gamma, step_size, warmup, ...)
    weight_decay: float = field(default=0.0, metadata=rules(NON_NEGATIVE))
    batch_size: int = field(default=100, metadata=rules(COUNT))
    epochs: int = field(default=10, metadata=rules(COUNT))
    seed: int = field(default=0, metadata=rules(SEED))
    # z per test datum of each metrics row's test ELBO
    metrics_num_samples: int = field(default=1, metadata=rules(COUNT))
    algorithm: str = "aevb"
    # train on the first num_train points only
    num_train: int | None = field(default=None, metadata=rules(COUNT))
    model: str = "vae"
    model_options: dict = field(default_factory=dict)
    # keep this many training labels (balanced), the rest unlabelled
    num_labels: int | None = field(default=None, metadata=rules(COUNT))
    # > 0: each minibatch holds this many labelled points (data.MixedBatches)
    labelled_per_batch: int = field(default=0, metadata=rules(at_least(0)))
    # 0: a metrics row each epoch; d > 0: d rows per decade of samples (loop.EvalSchedule)
    evals_per_decade: int = field(default=0, metadata=rules(at_least(0)))
    # W > 0: the latent terms weighted by min(1, epoch / W) (inference.annealing)
    kl_warmup: int = field(default=0, metadata=rules(at_least(0)))
    # the seed of a graph's link split (data.graphs.link_split) and of the validation split
    split_seed: int = field(default=0, metadata=rules(SEED))
    # > 0: hold this part of the training set out; rows get val_elbo
    validation_fraction: float = field(
        default=0.0,
        metadata=rules(Rule("lie in [0, 1) (the part of the training set held out)", lambda part: 0 <= part < 1)),
    )
    # How the optimizer steps (inference.stepping): "step" steps the schedule after every optimizer step,
    # over the run's steps (warmup=W then counts steps), "epoch" at each epoch's end.
    schedule_interval: str = field(default="epoch", metadata=rules(one_of(SCHEDULE_INTERVALS)))
    # c > 0: the gradient rescaled to an L2 norm <= c before each optimizer step. On the default loss scale,
    # the whole-data negative ELBO, the norm is N times a per-datum one: 2e6 to 4e6 for the default VAE on MNIST.
    clip_norm: float | None = field(
        default=None, metadata=rules(finite("> 0 (or None: no clipping)", lambda norm: norm > 0))
    )
    # "sum": the gradient of the whole-data negative ELBO (N/M x the minibatch sum, the paper's Algorithm 1);
    # "mean": divided by N, the per-datum mean's, so that an SGD learning rate does not depend on N.
    loss_scale: str = field(default="sum", metadata=rules(one_of(LOSS_SCALES)))

    def __post_init__(self) -> None:
        if isinstance(self.model, str) and self.model in MODELS:  # unset: the model's own (frozen: set here)
            for name in MODEL_DEFAULTED:
                if getattr(self, name) is None:
                    object.__setattr__(self, name, model_default(self.model, name))
        check_fields(self)  # every field against its annotation and its declared rules
        if self.hidden is not None:  # None only beside an unknown model, refused below
            object.__setattr__(self, "hidden", tuple(self.hidden))  # frozen: the one normalization of a field
        for registry, name in (
            (DATASETS, self.dataset),
            (ESTIMATORS, self.estimator),
            (ALGORITHMS, self.algorithm),
            (OPTIMIZERS, self.optimizer),
            (LR_SCHEDULES, self.lr_schedule),
            (MODELS, self.model),
            (INITIALIZATIONS, self.init),
        ):
            registry.check(name)
        if self.likelihood is not None:
            LIKELIHOODS.check(self.likelihood)
        check_data_kind(self)
        if self.init != "torch" and self.init_std is not None:
            raise ValueError(f"init={self.init!r} and init_std={self.init_std} both set the weights' start; give one")
        for check in (
            member(MODELS[self.model], "check_config"),
            algorithm_member(ALGORITHMS[self.algorithm], "check_config"),
        ):
            if check is not None:
                check(self)
        if self.num_train is not None and self.num_train < self.batch_size:
            raise ValueError(f"num_train={self.num_train} is smaller than batch_size={self.batch_size}")
        if self.kl_warmup > self.epochs:
            raise ValueError(
                f"kl_warmup={self.kl_warmup} epochs is longer than the run's epochs={self.epochs}: the latent terms "
                f"would never reach their full weight; give kl_warmup <= {self.epochs} or more epochs"
            )
        if self.kl_warmup and not algorithm_member(ALGORITHMS[self.algorithm], "anneals"):
            raise ValueError(f"kl_warmup needs an algorithm that optimizes the ELBO (aevb), not {self.algorithm!r}")
        if self.labelled_per_batch and (self.num_labels is None or not 0 < self.labelled_per_batch < self.batch_size):
            raise ValueError(
                f"labelled_per_batch={self.labelled_per_batch} needs num_labels and must lie in [1, batch_size)"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; expected one of {sorted(ACTIVATIONS)}")
        check_optimizer_settings(self)
        check_estimator_options(self.estimator, self.estimator_options)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config of the entries ``d``, old names (:data:`RENAMED_KEYS`) read as their new ones."""
        if not isinstance(d, Mapping):
            raise TypeError(f"a config must be a dict of TrainConfig fields, got {d!r:.80} ({type(d).__name__})")
        d = {RENAMED_KEYS.get(key, key): value for key, value in d.items()}
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config entries {sorted(unknown, key=str)}")
        return cls(**d)


def flag(name: str) -> str:
    """The command-line flag that sets the config field ``name``: ``--lr-schedule``, and for a dict
    of options the repeatable ``--schedule-option KEY=VALUE``."""
    return "--" + (name.removesuffix("s") if name.endswith("_options") else name).replace("_", "-")


def data_kind(config: TrainConfig) -> str:
    """The kind of data ``config.model`` trains on: its class's ``data_kind``, ``"vectors"`` by default."""
    return member(MODELS[config.model], "data_kind")


def check_data_kind(config: TrainConfig) -> None:
    """Refuse a model and a data set of different kinds (a graph model on images, ...)."""
    model_kind = data_kind(config)
    dataset_kind = member(DATASETS[config.dataset], "data_kind")
    if model_kind != dataset_kind:
        fits = [name for name in DATASETS if member(DATASETS[name], "data_kind") == model_kind]
        raise ValueError(
            f"the model {config.model!r} trains on {model_kind} data and the data set {config.dataset!r} "
            f"holds {dataset_kind}; use one of the data sets {fits}"
        )


def require_same_config(saved, config, run_dir: str | Path) -> None:
    """Raise ``ValueError`` naming every field (checkpoint's value, given value) where the
    config ``config`` of a resumed run differs from the checkpoint's ``saved`` (same dataclass)."""
    if saved != config:
        diff = {k: (v, getattr(config, k)) for k, v in asdict(saved).items() if getattr(config, k) != v}
        raise ValueError(f"cannot resume {run_dir}: config differs from the checkpoint's {diff}")
