"""What the tests share (imported as ``from support import ...``; ``tests/`` is on the path of
every test module, since the root ``conftest.py`` lives there).

* :data:`SMALL`: the settings of a small, fast training run on the synthetic data set;
* :func:`draws_mean_and_se`: the mean of gradient draws of an estimator and its standard
  error, per parameter group, for unbiasedness checks within statistical tolerance.
"""

from __future__ import annotations

import torch

from pyro_vae.inference import make_estimator
from pyro_vae.inference.variance import draw_gradients

SMALL = dict(dataset="synthetic", z_dim=2, hidden=(16,), batch_size=100, lr=1e-2)


def draws_mean_and_se(program, name: str, x: torch.Tensor, num_draws: int, num_particles: int = 1,
                      **kwargs) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per parameter group of :func:`~pyro_vae.inference.variance.draw_gradients` (``"guide"``,
    ``"model"``): the mean gradient of ``num_draws`` draws of estimator ``name`` and its standard
    error sqrt(var / r), the variance unbiased over the r draws."""
    draws = draw_gradients(program, make_estimator(name, program, num_particles), x, num_draws, **kwargs)
    r, out = draws.num_draws, {}
    for group in draws.sums:
        mean = draws.sums[group] / r
        var = (draws.sq_sums[group] - r * mean**2).clamp_min(0) / (r - 1)
        out[group] = mean, (var / r).sqrt()
    return out
