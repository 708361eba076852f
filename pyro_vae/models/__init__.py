"""Probabilistic programs: networks, likelihoods, the VAE and its relatives, one file each.

Importing this package registers every built-in model in :data:`MODELS`:
``vae`` (:mod:`~pyro_vae.models.vae`), ``cvae`` (:mod:`~pyro_vae.models.cvae`),
``m2`` (:mod:`~pyro_vae.models.m2`), ``two-layer`` (:mod:`~pyro_vae.models.two_layer`),
``iaf`` (:mod:`~pyro_vae.models.iaf`), ``mog-prior`` and ``vampprior``
(:mod:`~pyro_vae.models.priors`), ``m1-m2`` (:mod:`~pyro_vae.models.stacked`), ``sbn``
(:mod:`~pyro_vae.models.sbn`), ``categorical-vae`` (:mod:`~pyro_vae.models.categorical`), and the graph
models ``vgae`` and ``gae`` (:mod:`~pyro_vae.models.vgae`).
"""

from pyro_vae.models.categorical import CategoricalVAE
from pyro_vae.models.cvae import CVAE  # noqa: I001  (registration order: the VAE first)
from pyro_vae.models.iaf import IAFVAE
from pyro_vae.models.m2 import M2
from pyro_vae.models.priors import MixturePriorVAE, VampPriorVAE
from pyro_vae.models.program import MODELS, DataSpec, build_model, register_model
from pyro_vae.models.sbn import SigmoidBeliefVAE
from pyro_vae.models.stacked import StackedM1M2
from pyro_vae.models.two_layer import TwoLayerVAE
from pyro_vae.models.vae import VAE, PosteriorMean
from pyro_vae.models.vgae import GAE, VGAE

__all__ = [
    "CVAE",
    "CategoricalVAE",
    "GAE",
    "IAFVAE",
    "M2",
    "MODELS",
    "VAE",
    "VGAE",
    "DataSpec",
    "MixturePriorVAE",
    "PosteriorMean",
    "SigmoidBeliefVAE",
    "StackedM1M2",
    "TwoLayerVAE",
    "VampPriorVAE",
    "build_model",
    "register_model",
]
