"""Inference: gradient estimators, training algorithms, evaluation and variance measurement.

Importing this package registers every built-in estimator, algorithm,
optimizer and learning-rate schedule.
"""

# Importing the algorithm modules registers them, in this order (the CLI lists them so).
from pyro_vae.inference import svi  # noqa: F401, I001
from pyro_vae.inference import wake_sleep  # noqa: F401
from pyro_vae.inference import mcem  # noqa: F401
from pyro_vae.inference.ais import ais_bounds, bdmc_bounds
from pyro_vae.inference.algorithms import ALGORITHMS, Algorithm, register_algorithm
from pyro_vae.inference.amortization import amortization_gap
from pyro_vae.inference.estimators import ESTIMATORS, Estimator, make_estimator, register_estimator
from pyro_vae.inference import multi_sample  # noqa: F401  (registers vimco, score-loo after the built-ins)
from pyro_vae.inference import relaxed  # noqa: F401  (registers gumbel, gumbel-st)
from pyro_vae.inference import antithetic  # noqa: F401  (registers arm, disarm)
from pyro_vae.inference import rebar  # noqa: F401  (registers rebar)
from pyro_vae.inference.optim import OPTIMIZERS
from pyro_vae.inference.schedules import LR_SCHEDULES, register_schedule

__all__ = [
    "ALGORITHMS",
    "ESTIMATORS",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "Algorithm",
    "Estimator",
    "ais_bounds",
    "amortization_gap",
    "bdmc_bounds",
    "make_estimator",
    "register_algorithm",
    "register_estimator",
    "register_schedule",
]
