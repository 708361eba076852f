"""The K-sample importance-weighted bound (Burda et al. 2016) as a Pyro ELBO, with the
pathwise and the doubly reparameterized (Tucker et al. 2019) guide gradients."""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro.poutine as poutine
import torch
from pyro.infer.enum import get_importance_trace
from pyro.poutine.util import prune_subsample_sites

from pyro_vae.inference.log_weights import particle_plate, prior_dependencies, sum_per_datum
from pyro_vae.inference.surrogate import SurrogateELBO


class ImportanceWeighted(SurrogateELBO):
    r"""The K-sample importance-weighted bound (IWAE, Burda et al. 2016), per datum, and its gradients.

    For datum i of a minibatch of M out of N and K particles :math:`z_{ik} \sim q(z \mid x_i)`
    (all latents of the datum), :math:`\log w_{ik} = \log p(x_i, z_{ik}) - \log q(z_{ik} \mid x_i)`
    sums the unscaled log densities of every site in the data plate over the
    datum's inner plates (:mod:`pyro_vae.inference.log_weights`, as evaluation does). The bound is

    .. math::

        \mathcal L_K = \frac{N}{M} \sum_{i=1}^{M} \log \frac1K \sum_{k=1}^{K} w_{ik},

    the scale N/M taken from the sites (``total_size`` of the data plate), applied
    outside the log-mean-exp. It is :math:`\le \log p(x)`, increases with K, and equals the
    ELBO at K = 1. ``loss`` and ``loss_and_grads`` return :math:`-\mathcal L_K`.

    Gradients, with normalized weights :math:`\tilde w_{ik} = w_{ik} / \sum_{k'} w_{ik'}`:

    * ``doubly_reparameterized=False`` (IWAE): the pathwise gradient of L_K,
      sum_k w~_ik grad log w_ik for every parameter.
    * ``doubly_reparameterized=True`` (DReG, Tucker et al. 2019): the model
      parameters theta get the same sum_k w~_ik d/dtheta log p(x_i, z_ik); the guide's phi get
      sum_k w~_ik^2 (d log w_ik / dz_ik)(dz_ik / dphi), with log q's direct dependence
      on phi removed (the guide runs under :class:`~pyro_vae.inference.handlers.PathDerivative`). The surrogate is
      sum_k stop(w~) A_k + stop(w~^2) (log w_k - A_k), where A_k = log p(x_i, stop(z_ik))
      is the model replayed on detached latents (its theta-gradient cancels that of
      log p(x_i, z_ik) inside log w_k). Its expectation is the IWAE gradient, its
      guide-gradient SNR does not fall with K (Rainforth et al. 2018). Per-site stopping
      of phi is exact only when no guide latent's distribution depends on another guide
      latent, so a hierarchical guide (e.g. ``two-layer``'s q(z2|z)) is refused by name.

    A latent outside the data plate has no per-datum weight and is refused by name;
    sites of one datum must share one scale (``total_size``).
    """

    def __init__(
        self, num_particles: int, max_plate_nesting: int, data_plate_name: str, doubly_reparameterized: bool = False
    ) -> None:
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.data_plate_name = data_plate_name
        self.doubly_reparameterized = doubly_reparameterized
        self._checked = False

    def _per_datum_sum(self, trace: poutine.Trace) -> tuple[torch.Tensor, object]:
        """The per-datum log density of the sample sites of ``trace``, ``(K or 1, M)``, and their scale."""
        return sum_per_datum(
            trace, self.max_plate_nesting, self.data_plate_name, needed_by="the importance-weighted bound (iwae, dreg)"
        )

    def _check_guide(self, guide: Callable, args: tuple, kwargs: dict) -> None:
        if self._checked or not self.doubly_reparameterized:
            return
        for z, upstream in prior_dependencies(guide, args, kwargs).items():
            parents = sorted(set(upstream) - {z})
            if parents:
                raise ValueError(
                    f"dreg needs a guide whose latents depend on x only: q({z!r}) depends on the latents "
                    f"{parents}, and stopping phi per site would bias the doubly reparameterized gradient; "
                    "use iwae"
                )
        self._checked = True

    def _terms(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """``(log w, A, scale)``: log weights (K, M); A = log p(x, stop(z)) for DReG, else ``None``."""
        self._check_guide(guide, args, kwargs)
        particles = particle_plate(self.num_particles, self.max_plate_nesting)
        model_trace, guide_trace = get_importance_trace(
            "flat", self.max_plate_nesting + 1, particles(model), particles(guide), args, kwargs
        )
        log_p, scale = self._per_datum_sum(model_trace)
        log_q, _ = self._per_datum_sum(guide_trace)
        detached = None
        if self.doubly_reparameterized:
            fixed = poutine.Trace()
            for name, site in model_trace.nodes.items():
                if site["type"] == "sample" and not site["is_observed"]:
                    fixed.add_node(name, **{**site, "value": site["value"].detach()})
            replayed = poutine.trace(poutine.replay(particles(model), trace=fixed)).get_trace(*args, **kwargs)
            replayed.compute_log_prob()
            detached, _ = self._per_datum_sum(prune_subsample_sites(replayed))
        log_w = log_p - log_q
        return log_w.expand(self.num_particles, log_w.shape[-1]), detached, scale

    def _bound(self, log_w: torch.Tensor, scale) -> torch.Tensor:
        lme = torch.logsumexp(log_w, dim=0) - math.log(self.num_particles)
        return (torch.as_tensor(scale, dtype=lme.dtype, device=lme.device) * lme).sum()

    def _surrogate(self, log_w: torch.Tensor, detached, scale) -> tuple[torch.Tensor, float]:
        bound = self._bound(log_w, scale)
        if detached is None:
            return -bound, -bound.item()
        w = torch.softmax(log_w.detach(), dim=0)
        per_datum = (w * detached + w**2 * (log_w - detached)).sum(0)
        surrogate = (torch.as_tensor(scale, dtype=log_w.dtype, device=log_w.device) * per_datum).sum()
        return -surrogate, -bound.item()
