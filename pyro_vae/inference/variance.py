"""Measure the variance of ELBO gradient estimators at fixed parameters.

At fixed parameters and a fixed minibatch x, each estimator of
:mod:`pyro_vae.inference.estimators` is drawn R times, ``g_1 .. g_R``. The
parameter groups come from the program itself: ``guide`` (phi, every
parameter the guide's log density depends on), ``model`` (theta, the others)
and one group per layer. For a group:

* ``total_variance`` = tr Cov(g) = 1/(R-1) sum_r ||g_r - mean||^2,
* ``mean_sq_norm`` = ||mean||^2 - tr Cov(g) / R, the unbiased estimate of
  ||E g||^2 (the plain ||mean||^2 is inflated by tr Cov / R, which for a noisy
  estimator is most of it),
* ``snr`` = sqrt(max(mean_sq_norm, 0) / tr Cov(g)),
* ``coord_snr`` = the average over coordinates of sqrt(max(mean_i^2 - var_i / R, 0)) / sd_i
  (Rainforth et al. 2018's per-parameter SNR, with the same correction),
* ``ms_per_estimate``: wall time of one estimate.

Without the correction an SNR estimate cannot fall below about 1/sqrt(R)
(0.1 for R = 100), whatever the true value.

Everything is computed from the R x R Gram matrix G G^T of the draws, which
also gives cheap bootstrap resamples: for resampling counts c,
``tr Cov = (sum_r c_r K_rr - c^T K c / R) / (R - 1)``. The ratio of an
estimator's total variance to that of ``reparam`` comes with a bootstrap
percentile interval.

Each row also holds the bias against the reference (:mod:`pyro_vae.inference.bias`):
``sq_bias``, the unbiased estimate of ||E g - E g_ref||^2 (0 for the reference's own rows), and
``rel_bias``, its root over ||E g_ref||, with a jackknife interval. It is a bias only when the
reference is unbiased (``disarm``, ``score``, ``reparam``, ...): it is meant for the biased
relaxations ``gumbel`` and ``gumbel-st`` (:mod:`pyro_vae.inference.relaxed`) and their
``temperature``. It needs the cross-Gram of the two sets of draws: the reference's draws (R x P,
in the program's own dtype) are kept while the others are drawn, then dropped.

Adaptive baselines (``score-baseline``, ``score-nvil``) are first adapted on
training minibatches with the VAE frozen, as they would be during training,
then held fixed while the R draws are taken on the fixed minibatch (otherwise
a decaying average would learn that very minibatch, which training never lets it).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pyro.poutine as poutine
import torch

from pyro_vae.inference.algorithms import ParamScope
from pyro_vae.inference.bias import relative_bias
from pyro_vae.inference.estimators import ESTIMATORS, Estimator, make_estimator


@dataclass
class GradientDraws:
    """R gradient draws of one estimator, summarized per parameter group; ``cross`` holds the
    cross-Gram matrices against the draws of another estimator (``against`` of
    :func:`draw_gradients`), ``values`` the draws themselves when kept (``keep``)."""

    estimator: str
    num_draws: int
    seconds_per_estimate: float
    grams: dict[str, torch.Tensor]  # group -> R x R Gram matrix
    sums: dict[str, torch.Tensor]  # group -> per-coordinate sum of draws
    sq_sums: dict[str, torch.Tensor]  # group -> per-coordinate sum of squares
    cross: dict[str, torch.Tensor] = field(default_factory=dict)  # group -> R x R' Gram against the other's draws
    values: dict[str, torch.Tensor] | None = None  # parameter -> R x numel draws (in the parameter's dtype)

    def total_variance(self, group: str, counts: torch.Tensor | None = None) -> torch.Tensor:
        """tr Cov of the draws (or of a bootstrap resample given by ``counts``)."""
        k = self.grams[group]
        r = self.num_draws
        c = torch.ones(r, dtype=k.dtype) if counts is None else counts.to(k.dtype)
        return ((c * k.diagonal()).sum(-1) - torch.einsum("...i,ij,...j->...", c, k, c) / r) / (r - 1)

    def mean_sq_norm(self, group: str) -> torch.Tensor:
        """||mean||^2 - tr Cov / R, the unbiased estimate of ||E g||^2."""
        return (self.sums[group] / self.num_draws).square().sum() - self.total_variance(group) / self.num_draws

    def summary(self, group: str) -> dict[str, float]:
        r = self.num_draws
        mean = self.sums[group] / r
        var = (self.sq_sums[group] - r * mean**2).clamp_min(0) / (r - 1)
        total = self.total_variance(group).item()
        sd = var.sqrt()
        nonzero = sd > 0
        mean_sq_norm = self.mean_sq_norm(group).item()
        coord_mean_sq = (mean**2 - var / r).clamp_min(0)
        return {
            "total_variance": total,
            "mean_sq_norm": mean_sq_norm,
            "snr": (max(mean_sq_norm, 0.0) / max(total, 1e-300)) ** 0.5,
            "coord_snr": (coord_mean_sq[nonzero].sqrt() / sd[nonzero]).mean().item() if nonzero.any() else float("inf"),
            "ms_per_estimate": 1e3 * self.seconds_per_estimate,
        }


def parameter_groups(program, x: torch.Tensor, **kwargs) -> dict[str, list[str]]:
    """``guide`` (the parameters log q(latents | x) depends on, found by autograd on a
    trace of the guide), ``model`` (the others) and one group per layer."""
    named = dict(program.named_parameters())
    with ParamScope(named.values()):
        log_q = poutine.trace(program.guide).get_trace(x, **kwargs).log_prob_sum()
    grads = torch.autograd.grad(log_q, list(named.values()), allow_unused=True) if log_q.requires_grad else ()
    phi = {name for name, g in zip(named, grads) if g is not None}
    groups: dict[str, list[str]] = {"guide": [], "model": []}
    for name in named:
        groups["guide" if name in phi else "model"].append(name)
        groups.setdefault(name.rsplit(".", 1)[0], []).append(name)
    return groups


def _zero_grads(params: Iterable[torch.Tensor]) -> None:
    for p in params:
        p.grad = None


def adapt_baseline(
    program, estimator: Estimator, batches: Iterable[dict[str, torch.Tensor]], scope: ParamScope, lr: float = 1e-2
) -> None:
    """Run the estimator on ``batches`` with the program frozen: this updates a decaying
    average baseline (kept in ``scope``), and trains a neural baseline's parameters with Adam."""
    params = list(estimator.modules.parameters())
    optimizer = torch.optim.Adam(params, lr=lr) if params else None
    for batch in batches:
        with scope:
            estimator.elbo.loss_and_grads(program.model, estimator.guide, **batch)
        if optimizer is not None:
            optimizer.step()
        _zero_grads([*program.parameters(), *params])


def draw_gradients(
    program,
    estimator: Estimator,
    x: torch.Tensor,
    num_draws: int,
    scope: ParamScope | None = None,
    *,
    keep: bool = False,
    against: GradientDraws | None = None,
    **kwargs,
) -> GradientDraws:
    """``num_draws`` independent estimates of the gradient of -ELBO(x) w.r.t. the program's parameters.

    ``scope`` holds baseline state adapted beforehand (:func:`adapt_baseline`); ``keep`` keeps the
    draws themselves (``values``, R x P in the parameters' dtype); ``against``, draws kept so,
    adds the cross-Gram matrices against them (``cross``, for :func:`relative_bias`);
    ``kwargs`` (labels) go to model and guide.
    """
    if num_draws < 2:
        raise ValueError(f"need at least 2 draws to estimate a variance, got num_draws={num_draws}")
    if against is not None and against.values is None:
        raise ValueError(
            f"the draws of {against.estimator!r} given as against= were not kept; draw them with keep=True"
        )
    named = dict(program.named_parameters())
    extra = list(estimator.modules.parameters())
    # State that estimators update as they run (TraceGraph_ELBO's decaying
    # averages) is reset before each draw, so that the draws are independent.
    owned = [*named.values(), *extra]
    frozen = (scope or ParamScope()).state_dict()
    values = {name: torch.zeros(num_draws, p.numel(), dtype=p.dtype) for name, p in named.items()}  # on the CPU
    elapsed = 0.0
    for i in range(num_draws):
        _zero_grads([*named.values(), *extra])
        draw_scope = ParamScope(owned)
        draw_scope.load_state_dict(frozen)
        start = time.perf_counter()
        with draw_scope:
            estimator.elbo.loss_and_grads(program.model, estimator.guide, x=x, **kwargs)
        elapsed += time.perf_counter() - start
        for name, p in named.items():
            if p.grad is not None:
                values[name][i] = p.grad.detach().flatten()
    _zero_grads([*named.values(), *extra])
    others = None if against is None else against.values
    stats = {name: _statistics(values[name], None if others is None else others[name]) for name in named}
    draws = GradientDraws(estimator.name, num_draws, elapsed / num_draws, {}, {}, {}, values=values if keep else None)
    for group, names in parameter_groups(program, x, **kwargs).items():
        draws.grams[group] = sum((stats[n][0] for n in names), torch.zeros(num_draws, num_draws, dtype=torch.float64))
        draws.sums[group] = torch.cat([torch.zeros(0, dtype=torch.float64), *(stats[n][2] for n in names)])
        draws.sq_sums[group] = torch.cat([torch.zeros(0, dtype=torch.float64), *(stats[n][3] for n in names)])
        if against is not None:
            zero = torch.zeros(num_draws, against.num_draws, dtype=torch.float64)
            draws.cross[group] = sum((stats[n][1] for n in names), zero)
    return draws


def _statistics(
    g: torch.Tensor, h: torch.Tensor | None, chunk: int = 2**22
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(G G^T, G H^T, sums, sums of squares)`` of the draws G (R x P) and H (R' x P; ``None``: no
    cross-Gram, an empty tensor), in float64, a block of about ``chunk`` numbers of G at a time (the
    draws are kept in their own dtype: a float64 copy of them all would double the memory)."""
    gram, sums, sq_sums = torch.zeros(len(g), len(g), dtype=torch.float64), [], []
    cross = torch.zeros(len(g), 0 if h is None else len(h), dtype=torch.float64)
    step = max(1, chunk // max(len(g), 1))
    for start in range(0, g.shape[1], step):
        block = g[:, start : start + step].double()
        gram += block @ block.T
        if h is not None:
            cross += block @ h[:, start : start + step].double().T
        sums.append(block.sum(0))
        sq_sums.append(block.square().sum(0))
    empty = torch.zeros(0, dtype=torch.float64)
    return gram, cross, torch.cat([empty, *sums]), torch.cat([empty, *sq_sums])


def variance_ratio(
    draws: GradientDraws,
    reference: GradientDraws,
    group: str,
    num_bootstrap: int = 2000,
    level: float = 0.95,
    generator: torch.Generator | None = None,
) -> tuple[float, float, float]:
    """tr Cov(draws) / tr Cov(reference) with a bootstrap percentile interval.

    A resample that repeats one draw only has no spread: its tr Cov is exactly 0 (not the
    rounding error of the Gram formula, which can be -1e-10 and so a ratio of -1e+17), and a
    resample of the reference without spread gives no ratio and is left out. With few draws
    (R = 3: one resample in nine repeats one draw) the interval is wide, but never negative."""

    def resample(d: GradientDraws) -> torch.Tensor:
        idx = torch.randint(d.num_draws, (num_bootstrap, d.num_draws), generator=generator)
        counts = torch.zeros(num_bootstrap, d.num_draws).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float))
        spread = (counts > 0).sum(-1) > 1
        return torch.where(spread, d.total_variance(group, counts).clamp_min(0), 0.0)

    ratio = (draws.total_variance(group) / reference.total_variance(group)).item()
    denominator = resample(reference)
    boot = resample(draws) / torch.where(denominator > 0, denominator, torch.nan)
    alpha = (1 - level) / 2
    lo, hi = torch.nanquantile(boot, torch.tensor([alpha, 1 - alpha], dtype=boot.dtype)).tolist()
    return ratio, lo, hi


def refusal(
    program, name: str, x: torch.Tensor, num_particles: int = 1, options: dict | None = None, **kwargs
) -> str | None:
    """Why the registered estimator ``name`` (with its ``options``) cannot estimate a gradient for
    ``program`` on ``x`` (a pathwise one on a discrete latent, VIMCO with one particle, an annealed
    temperature, whose draws are not alike: ``Estimator.varies``), in the estimator's own words;
    ``None`` if it can. One loss is computed, torch's RNG restored."""
    named = list(program.parameters())
    try:
        estimator = make_estimator(name, program, num_particles, options)
        if estimator.varies:
            return estimator.varies
        with torch.random.fork_rng(), torch.no_grad(), ParamScope([*named, *estimator.modules.parameters()]):
            loss = estimator.elbo.loss  # type: ignore[attr-defined]  # a Pyro ELBO's (its base class does not declare it)
            loss(program.model, estimator.guide, x, **kwargs)
    except (ValueError, NotImplementedError) as err:
        return str(err).splitlines()[0]
    return None


def compare_estimators(
    program,
    x: torch.Tensor,
    estimators: Sequence[str] | None = None,
    num_draws: int = 100,
    num_particles: int = 1,
    adapt_batches: Iterable[dict[str, torch.Tensor]] = (),
    reference: str | None = None,
    generator: torch.Generator | None = None,
    options: Mapping[str, dict] | None = None,
) -> list[dict]:
    """One row per (estimator, parameter group): the statistics of :class:`GradientDraws`
    plus ``ratio`` (with ``ratio_lo``, ``ratio_hi``) of total variance to ``reference``, the bias
    against it (:func:`relative_bias`: ``sq_bias``, the unbiased estimate of ||E g - E g_ref||^2,
    exactly 0 for the reference's own rows; ``rel_bias``, its root over the reference's ||E g_ref||,
    with ``rel_bias_lo``, ``rel_bias_hi``; a bias only when the reference is unbiased, e.g.
    ``disarm``, ``score``, ``reparam``: it is meant for the relaxations ``gumbel`` and ``gumbel-st``
    and their ``temperature``), and the ``options`` each estimator was built with (``options[name]``,
    as a run trained with ``--estimator-option``; none by default).

    ``estimators`` ``None`` means every registered estimator that can estimate this program's
    gradient (:func:`refusal`: the pathwise ones leave a discrete latent out); a named one that
    cannot is refused with its reason. ``reference`` ``None`` means ``reparam``, or for a program it
    does not apply to an error that asks for one (e.g. ``enum`` for a discrete latent)."""
    options = dict(options or {})

    @functools.cache
    def refused(name: str) -> str | None:  # each estimator tried once
        return refusal(program, name, x, num_particles, options.get(name))

    if estimators is None:
        estimators = [n for n in ESTIMATORS if refused(n) is None]
    for name in estimators:
        ESTIMATORS.check(name)
    if reference is None:
        why = refused("reparam")
        if why is not None:
            raise ValueError(
                f"the default reference estimator reparam does not apply to this program ({why}); "
                "name one that does, e.g. reference='enum' (--reference enum)"
            )
        reference = "reparam"
    names = list(dict.fromkeys([reference, *estimators]))
    for name in names:
        why = refused(name)
        if why is not None:
            role = "the reference estimator" if name == reference else "the estimator"
            raise ValueError(f"{role} {name!r} cannot be measured on this program with K = {num_particles}: {why}")
    adapt_batches = list(adapt_batches)
    results: dict[str, GradientDraws] = {}
    for name in names:  # the reference first, its draws kept for the others' cross-Gram matrices
        estimator = make_estimator(name, program, num_particles, options.get(name))
        scope = ParamScope([*program.parameters(), *estimator.modules.parameters()])
        adapt_baseline(program, estimator, adapt_batches, scope)
        results[name] = draw_gradients(
            program, estimator, x, num_draws, scope, keep=name == reference, against=results.get(reference)
        )
    results[reference].values = None
    rows = []
    for name in estimators:
        for group in results[name].grams:
            ratio, lo, hi = variance_ratio(results[name], results[reference], group, generator=generator)
            sq_bias, rel_bias, bias_lo, bias_hi = relative_bias(results[name], results[reference], group)
            rows.append(
                {
                    "estimator": name,
                    "params": group,
                    "num_particles": num_particles,
                    "num_draws": num_draws,
                    "options": dict(options.get(name) or {}),
                    "reference": reference,
                    **results[name].summary(group),
                    "ratio": ratio,
                    "ratio_lo": lo,
                    "ratio_hi": hi,
                    "sq_bias": sq_bias,
                    "rel_bias": rel_bias,
                    "rel_bias_lo": bias_lo,
                    "rel_bias_hi": bias_hi,
                }
            )
    return rows
