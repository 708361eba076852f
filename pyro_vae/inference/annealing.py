"""KL warm-up (Bowman et al. 2016; Sønderby et al. 2016): the latent terms of the bound
weighted by beta, rising from 1/W to 1 over the first W epochs.

With beta the ELBO becomes

    L_beta(x) = E_q[log p(x | z)] + beta * E_q[log p(z) - log q(z | x)]
              = E_q[log p(x | z)] - beta * KL(q(z | x) || p(z)),

so early in training the decoder learns to use z before the KL term pulls q(z|x) onto
the prior; VampPrior (Tomczak & Welling 2018) and the ladder VAE were trained this way.
:class:`AnnealLatents` is a Pyro effect handler that multiplies the scale of every latent
(unobserved) sample site by beta, in the model and the guide alike, as Pyro's own
examples anneal with ``poutine.scale`` around their latent sample statements (``dmm.py``);
it works with every estimator, since they all read the sites' scales.
"""

from __future__ import annotations

from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message


class AnnealLatents(Messenger):
    """Multiply the log-density of every unobserved sample site by ``beta`` (observed ones keep theirs)."""

    def __init__(self, beta: float) -> None:
        if not 0 <= beta <= 1:
            raise ValueError(f"beta must lie in [0, 1], got {beta}")
        super().__init__()
        self.beta = beta

    def _process_message(self, msg: Message) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["scale"] = self.beta * msg["scale"]


def warmup_factor(finished_epochs: int, warmup_epochs: int) -> float:
    """beta during the epoch after ``finished_epochs``: ``min(1, (finished_epochs + 1) / W)``
    for a warm-up of ``W = warmup_epochs`` epochs (1 throughout when W = 0)."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, (finished_epochs + 1) / warmup_epochs)
