"""pyro_vae: the AEVB variational autoencoder (Kingma & Welling 2013) as a composable Pyro program."""

from pyro_vae.data import Dataset, load_dataset
from pyro_vae.inference.estimators import ESTIMATORS, Estimator, make_estimator
from pyro_vae.inference.evaluate import evaluate, importance_bounds, log_importance_weights
from pyro_vae.models.likelihoods import Bernoulli, Gaussian, Likelihood, make_likelihood
from pyro_vae.models.nets import MLP, GaussianEncoder
from pyro_vae.training.loop import Run, TrainConfig, load_run, train
from pyro_vae.models.vae import VAE
from pyro_vae.inference.variance import compare_estimators, draw_gradients

__all__ = [
    "ESTIMATORS",
    "MLP",
    "VAE",
    "Bernoulli",
    "Dataset",
    "Estimator",
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
    "load_run",
    "log_importance_weights",
    "make_estimator",
    "make_likelihood",
    "train",
]
