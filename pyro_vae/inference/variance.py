"""Measure the variance of ELBO gradient estimators at fixed parameters.

At fixed VAE parameters and a fixed minibatch x, each estimator of
:mod:`pyro_vae.inference.estimators` is drawn R times, ``g_1 .. g_R``. For a group of
parameters (all encoder parameters, all decoder parameters, or one layer):

* ``total_variance`` = tr Cov(g) = 1/(R-1) sum_r ||g_r - mean||^2,
* ``mean_sq_norm`` = ||mean||^2,
* ``snr`` = ||mean|| / sqrt(tr Cov(g)),
* ``coord_snr`` = the average over coordinates of |mean_i| / sd_i
  (Rainforth et al. 2018's per-parameter SNR),
* ``ms_per_estimate``: wall time of one estimate.

Everything is computed from the R x R Gram matrix G G^T of the draws, which
also gives cheap bootstrap resamples: for resampling counts c,
``tr Cov = (sum_r c_r K_rr - c^T K c / R) / (R - 1)``. The ratio of an
estimator's total variance to that of ``reparam`` comes with a bootstrap
percentile interval.

Adaptive baselines (``score-baseline``, ``score-nvil``) are first adapted on
training minibatches with the VAE frozen, as they would be during training,
then held fixed while the R draws are taken on the fixed minibatch (otherwise
a decaying average would learn that very minibatch, which training never lets it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyro
import torch

from pyro_vae.inference.estimators import ESTIMATORS, Estimator, make_estimator


@dataclass
class GradientDraws:
    """R gradient draws of one estimator, summarized per parameter group."""

    estimator: str
    num_draws: int
    seconds_per_estimate: float
    grams: dict[str, torch.Tensor]  # group -> R x R Gram matrix
    sums: dict[str, torch.Tensor]  # group -> per-coordinate sum of draws
    sq_sums: dict[str, torch.Tensor]  # group -> per-coordinate sum of squares

    def total_variance(self, group: str, counts: torch.Tensor | None = None) -> torch.Tensor:
        """tr Cov of the draws (or of a bootstrap resample given by ``counts``)."""
        k = self.grams[group]
        r = self.num_draws
        c = torch.ones(r, dtype=k.dtype) if counts is None else counts.to(k.dtype)
        return ((c * k.diagonal()).sum(-1) - torch.einsum("...i,ij,...j->...", c, k, c) / r) / (r - 1)

    def summary(self, group: str) -> dict[str, float]:
        r = self.num_draws
        mean = self.sums[group] / r
        var = (self.sq_sums[group] - r * mean**2).clamp_min(0) / (r - 1)
        total = self.total_variance(group).item()
        sd = var.sqrt()
        nonzero = sd > 0
        return {
            "total_variance": total,
            "mean_sq_norm": (mean**2).sum().item(),
            "snr": ((mean**2).sum().sqrt() / max(total, 1e-300) ** 0.5).item(),
            "coord_snr": (mean[nonzero].abs() / sd[nonzero]).mean().item() if nonzero.any() else float("inf"),
            "ms_per_estimate": 1e3 * self.seconds_per_estimate,
        }


def parameter_groups(vae) -> dict[str, list[str]]:
    """``encoder`` / ``decoder`` (likelihood parameters included) and one group per layer."""
    groups: dict[str, list[str]] = {"encoder": [], "decoder": []}
    for name, _ in vae.named_parameters():
        side = "encoder" if name.startswith("encoder") else "decoder"
        groups[side].append(name)
        groups.setdefault(name.rsplit(".", 1)[0], []).append(name)
    return groups


def _zero_grads(params: Iterable[torch.Tensor]) -> None:
    for p in params:
        p.grad = None


def adapt_baseline(vae, estimator: Estimator, batches: Iterable[torch.Tensor], lr: float = 1e-2) -> None:
    """Run the estimator on ``batches`` with the VAE frozen: this updates a decaying
    average baseline, and trains a neural baseline's parameters with Adam."""
    params = list(estimator.modules.parameters())
    optimizer = torch.optim.Adam(params, lr=lr) if params else None
    for x in batches:
        estimator.elbo.loss_and_grads(vae.model, estimator.guide, x)
        if optimizer is not None:
            optimizer.step()
        _zero_grads([*vae.parameters(), *params])


def draw_gradients(
    vae, estimator: Estimator, x: torch.Tensor, num_draws: int
) -> GradientDraws:
    """``num_draws`` independent estimates of the gradient of -ELBO(x) w.r.t. the VAE's parameters."""
    if num_draws < 2:
        raise ValueError(f"need at least 2 draws to estimate a variance, got num_draws={num_draws}")
    named = dict(vae.named_parameters())
    extra = list(estimator.modules.parameters())
    store = pyro.get_param_store()
    owned = {id(p) for p in [*named.values(), *extra]}
    # State that estimators update as they run (TraceGraph_ELBO's decaying
    # averages) is reset before each draw, so that the draws are independent.
    frozen = {n: v.detach().clone() for n, v in store.named_parameters() if id(v) not in owned}
    rows: dict[str, list[torch.Tensor]] = {name: [] for name in named}
    elapsed = 0.0
    for _ in range(num_draws):
        _zero_grads([*named.values(), *extra])
        for name, value in frozen.items():
            store[name] = value
        start = time.perf_counter()
        estimator.elbo.loss_and_grads(vae.model, estimator.guide, x)
        elapsed += time.perf_counter() - start
        for name, p in named.items():
            grad = torch.zeros_like(p) if p.grad is None else p.grad
            rows[name].append(grad.detach().flatten().double().cpu())
    _zero_grads([*named.values(), *extra])
    grams, sums, sq_sums = {}, {}, {}
    for group, names in parameter_groups(vae).items():
        g = torch.cat([torch.stack(rows[n]) for n in names], dim=1)  # R x P
        grams[group], sums[group], sq_sums[group] = g @ g.T, g.sum(0), (g**2).sum(0)
    return GradientDraws(estimator.name, num_draws, elapsed / num_draws, grams, sums, sq_sums)


def variance_ratio(
    draws: GradientDraws,
    reference: GradientDraws,
    group: str,
    num_bootstrap: int = 2000,
    level: float = 0.95,
    generator: torch.Generator | None = None,
) -> tuple[float, float, float]:
    """tr Cov(draws) / tr Cov(reference) with a bootstrap percentile interval."""
    def resample(d: GradientDraws) -> torch.Tensor:
        idx = torch.randint(d.num_draws, (num_bootstrap, d.num_draws), generator=generator)
        counts = torch.zeros(num_bootstrap, d.num_draws).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float))
        return d.total_variance(group, counts)

    ratio = (draws.total_variance(group) / reference.total_variance(group)).item()
    boot = resample(draws) / resample(reference)
    alpha = (1 - level) / 2
    lo, hi = torch.nanquantile(boot, torch.tensor([alpha, 1 - alpha], dtype=boot.dtype)).tolist()
    return ratio, lo, hi


def compare_estimators(
    vae,
    x: torch.Tensor,
    estimators: Sequence[str] = ESTIMATORS,
    num_draws: int = 100,
    num_particles: int = 1,
    adapt_batches: Iterable[torch.Tensor] = (),
    reference: str = "reparam",
    generator: torch.Generator | None = None,
) -> list[dict]:
    """One row per (estimator, parameter group): the statistics of :class:`GradientDraws`
    plus ``ratio`` (with ``ratio_lo``, ``ratio_hi``) of total variance to ``reference``."""
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimators {unknown}; expected names from {list(ESTIMATORS)}")
    names = list(dict.fromkeys([reference, *estimators]))
    adapt_batches = list(adapt_batches)
    results = {}
    for name in names:
        pyro.clear_param_store()
        estimator = make_estimator(name, vae, num_particles)
        adapt_baseline(vae, estimator, adapt_batches)
        results[name] = draw_gradients(vae, estimator, x, num_draws)
    rows = []
    for name in estimators:
        for group in results[name].grams:
            ratio, lo, hi = variance_ratio(results[name], results[reference], group, generator=generator)
            rows.append(
                {"estimator": name, "params": group, "num_particles": num_particles,
                 "num_draws": num_draws, **results[name].summary(group),
                 "ratio": ratio, "ratio_lo": lo, "ratio_hi": hi}
            )
    return rows
