"""pyro_vae: the AEVB variational autoencoder (Kingma & Welling 2013) as a composable Pyro program."""

from pyro_vae.data import Dataset, load_dataset
from pyro_vae.estimators import ESTIMATORS, Estimator, make_estimator
from pyro_vae.evaluate import evaluate, importance_bounds, log_importance_weights
from pyro_vae.likelihoods import Bernoulli, Gaussian, Likelihood, make_likelihood
from pyro_vae.nets import MLP, GaussianEncoder
from pyro_vae.train import Run, TrainConfig, load_run, train
from pyro_vae.vae import VAE
from pyro_vae.variance import compare_estimators, draw_gradients

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
