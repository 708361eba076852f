"""Probabilistic programs: networks, likelihoods, the VAE and its relatives.

Importing this package registers every built-in model in :data:`MODELS`.
"""

from pyro_vae.models.registry import MODELS, DataSpec, build_model, register_model
from pyro_vae.models.vae import VAE, PosteriorMean

__all__ = ["MODELS", "VAE", "DataSpec", "PosteriorMean", "build_model", "register_model"]
