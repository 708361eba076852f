"""The training configuration: everything that defines a run (not where it runs).

Every name in it is checked against its registry (model, estimator,
algorithm, optimizer, schedule, data set), so a bad name fails before any
work starts. ``model_options`` holds a registered model's own constructor
arguments (e.g. ``{"num_components": 10}``); ``num_labels`` keeps that many
training labels, balanced over classes (the semi-supervised setting), and
``labelled_per_batch`` puts that many of them in every minibatch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from pyro_vae.data import DATASETS
from pyro_vae.inference import ALGORITHMS, ESTIMATORS, LR_SCHEDULES, OPTIMIZERS
from pyro_vae.models import MODELS
from pyro_vae.models.likelihoods import LIKELIHOODS
from pyro_vae.models.nets import ACTIVATIONS
from pyro_vae.validation import check_fields, check_train_config

PRESETS: dict[str, dict] = {
    # Kingma & Welling (2013), Section 5 / Appendix C: MNIST.
    "paper": dict(
        hidden=(500,), z_dim=20, optimizer="adagrad", lr=0.02, init_std=0.01,
        weight_decay=1.0, batch_size=100, num_particles=1,
    ),
    # Burda et al. (2016), single stochastic layer: 784-200-200-50, Adam.
    "iwae": dict(hidden=(200, 200), z_dim=50, optimizer="adam", lr=1e-3, batch_size=100),
}


@dataclass
class TrainConfig:
    """Everything that defines a training run (not where it runs)."""

    dataset: str = "mnist"
    z_dim: int = 20
    hidden: tuple[int, ...] = (500,)
    activation: str = "tanh"
    likelihood: str | None = None  # None: the data set's own
    init_std: float | None = None
    estimator: str = "reparam"
    num_particles: int = 1
    optimizer: str = "adam"
    lr: float = 1e-3
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    batch_size: int = 100
    epochs: int = 10
    seed: int = 0
    eval_samples: int = 1
    algorithm: str = "aevb"
    num_train: int | None = None  # train on the first num_train points only
    model: str = "vae"
    model_options: dict = field(default_factory=dict)
    num_labels: int | None = None  # keep this many training labels (balanced), the rest unlabelled
    labelled_per_batch: int = 0  # > 0: each minibatch holds this many labelled points (data.MixedBatches)
    evals_per_decade: int = 0  # 0: a metrics row each epoch; d > 0: d rows per decade of samples (loop.EvalSchedule)
    kl_warmup: int = 0  # W > 0: the latent terms weighted by min(1, epoch / W) (inference.annealing)

    def __post_init__(self) -> None:
        check_fields(self)  # every field against its annotation: ints are ints, counts >= 1
        self.hidden = tuple(self.hidden)
        for registry, name in (
            (DATASETS, self.dataset), (ESTIMATORS, self.estimator), (ALGORITHMS, self.algorithm),
            (OPTIMIZERS, self.optimizer), (LR_SCHEDULES, self.lr_schedule), (MODELS, self.model),
        ):
            registry.check(name)
        if self.likelihood is not None:
            LIKELIHOODS.check(self.likelihood)
        check = getattr(ALGORITHMS[self.algorithm], "check_config", None)
        if check is not None:
            check(self)
        if self.num_train is not None and self.num_train < self.batch_size:
            raise ValueError(f"num_train={self.num_train} is smaller than batch_size={self.batch_size}")
        for name in ("z_dim", "num_particles", "batch_size", "epochs", "eval_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.evals_per_decade < 0:
            raise ValueError(f"evals_per_decade must be >= 0, got {self.evals_per_decade}")
        if self.kl_warmup < 0:
            raise ValueError(f"kl_warmup must be >= 0, got {self.kl_warmup}")
        if self.kl_warmup and not getattr(ALGORITHMS[self.algorithm], "anneals", False):
            raise ValueError(f"kl_warmup needs an algorithm that optimizes the ELBO (aevb), not {self.algorithm!r}")
        if self.labelled_per_batch and (self.num_labels is None or not 0 < self.labelled_per_batch < self.batch_size):
            raise ValueError(
                f"labelled_per_batch={self.labelled_per_batch} needs num_labels and must lie in [1, batch_size)"
            )
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not isinstance(self.model_options, dict):
            raise ValueError(f"model_options must be a dict, got {self.model_options!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; expected one of {sorted(ACTIVATIONS)}")
        check_train_config(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config entries {sorted(unknown)}")
        return cls(**d)


def require_same_config(saved, config, run_dir: str | Path) -> None:
    """Raise ``ValueError`` naming every field (checkpoint's value, given value) where the
    config ``config`` of a resumed run differs from the checkpoint's ``saved`` (same dataclass)."""
    if saved != config:
        diff = {k: (v, getattr(config, k)) for k, v in asdict(saved).items() if getattr(config, k) != v}
        raise ValueError(f"cannot resume {run_dir}: config differs from the checkpoint's {diff}")
