"""pyro_vae: the AEVB variational autoencoder (Kingma & Welling 2013) as a composable Pyro program.

Layers (imports point down): :mod:`pyro_vae.models` (probabilistic programs)
< :mod:`pyro_vae.inference` (estimators, algorithms, evaluation) <
:mod:`pyro_vae.training` (config, loop, checkpoints) <
:mod:`pyro_vae.experiments` < :mod:`pyro_vae.cli`.
"""

from pyro_vae.data import DATASETS, Dataset, load_dataset
from pyro_vae.inference import (
    ALGORITHMS,
    ESTIMATORS,
    OPTIMIZERS,
    Estimator,
    make_estimator,
    register_algorithm,
    register_estimator,
)
from pyro_vae.inference.evaluate import Evaluation, evaluate, importance_bounds, log_importance_weights
from pyro_vae.inference.variance import compare_estimators, draw_gradients
from pyro_vae.models import MODELS, VAE, DataSpec, register_model
from pyro_vae.models.likelihoods import Bernoulli, Gaussian, Likelihood, make_likelihood
from pyro_vae.models.nets import MLP, GaussianEncoder, with_code
from pyro_vae.pretrained import load_pretrained, load_pretrained_run, save_pretrained
from pyro_vae.training import Run, load_run, train
from pyro_vae.training.config import TrainConfig

__all__ = [
    "ALGORITHMS",
    "DATASETS",
    "ESTIMATORS",
    "MLP",
    "MODELS",
    "OPTIMIZERS",
    "VAE",
    "Bernoulli",
    "DataSpec",
    "Dataset",
    "Estimator",
    "Evaluation",
    "Gaussian",
    "GaussianEncoder",
    "Likelihood",
    "Run",
    "TrainConfig",
    "compare_estimators",
    "draw_gradients",
    "evaluate",
    "importance_bounds",
    "load_dataset",
    "load_pretrained",
    "load_pretrained_run",
    "save_pretrained",
    "load_run",
    "log_importance_weights",
    "make_estimator",
    "make_likelihood",
    "register_algorithm",
    "register_estimator",
    "register_model",
    "train",
    "with_code",
]
