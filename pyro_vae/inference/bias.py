"""The bias of an estimator's gradient draws against those of a reference estimator.

Two independent sets of draws at the same parameters and minibatch, R of the estimator g and R' of
the reference h (:func:`~pyro_vae.inference.variance.draw_gradients`, the reference's kept and the
other's drawn ``against`` it), give the unbiased estimate of ||E g - E h||^2 (``sq_bias``) and its
root relative to ||E h|| (``rel_bias``) with an interval, from their Gram matrices and the
cross-Gram G H^T alone (:func:`relative_bias`). It is a bias only when the reference is unbiased
(``disarm``, ``score``, ``reparam``, ...): it is meant for the relaxations ``gumbel`` and
``gumbel-st`` (:mod:`pyro_vae.inference.relaxed`), biased by design, less so as their
``temperature`` falls.
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from pyro_vae.inference.variance import GradientDraws


def relative_bias(
    draws: GradientDraws, reference: GradientDraws, group: str, level: float = 0.95
) -> tuple[float, float, float, float]:
    """``(sq_bias, rel_bias, lo, hi)``: the unbiased estimate of ||E g - E h||^2 from the independent
    draws g (``draws``, R of them) and h (``reference``, R'),

        sq_bias = ||mean(g) - mean(h)||^2 - tr Cov(g) / R - tr Cov(h) / R'
                = U(g, g) + U(h, h) - 2 U(g, h),

    U(g, g) = sum over pairs r != s of g_r . g_s / (R (R - 1)) (the unbiased ||E g||^2, ``mean_sq_norm``)
    and U(g, h) = mean over r, s of g_r . h_s, and rel_bias = sqrt(max(sq_bias, 0) / U(h, h)), NaN
    where U(h, h) <= 0. A bias only if the reference is unbiased. ``draws`` that are the
    reference's own give 0 exactly, interval [0, 0]; fewer than 3 draws give no interval (NaN).

    The interval [lo, hi] is the normal one, ``level`` wide, of the squared ratio
    theta = sq_bias / U(h, h), its variance the two-sample delete-one jackknife's (one draw of g, or
    one of h, left out; every U recomputed from the Gram matrices and the cross-Gram ``draws.cross``
    of :func:`~pyro_vae.inference.variance.draw_gradients` with ``against=reference``), then mapped by
    sqrt(max(., 0)). Not a bootstrap as :func:`~pyro_vae.inference.variance.variance_ratio`: a resample repeats draws, and the pairs of a draw with its
    own copies, ||g_r||^2 each, make a resampled sq_bias spread ~ sqrt(P_eff / R) times wider than
    the real one (P_eff = (tr Cov)^2 / tr Cov^2, the noise's effective dimension, in the thousands
    for a network's gradient); a delete-one U-statistic has no such pairs. The jackknife variance
    of a U-statistic errs only upward (Efron & Stein 1981). Where U(h, h) is within its own interval
    of 0 (the reference's mean gradient unresolved), hi is inf. On Gaussian draws of 2000
    coordinates, R = 100, the interval covered the true value in 95-100% of 200 trials where ||E h||
    was resolved; it can cover far less where it is not and the noise has few effective dimensions
    (P_eff ~ 5: the normal approximation fails), so read it beside the reference's ``snr``."""
    norm = reference.mean_sq_norm(group).item()  # U(h, h)
    if draws is reference:
        none = 0.0 if norm > 0 else math.nan
        return 0.0, none, none, none
    if group not in draws.cross:
        raise ValueError(
            f"the draws of {draws.estimator!r} hold no cross-Gram against {reference.estimator!r} for group "
            f"{group!r}; draw them with draw_gradients(..., against=<the reference's draws, kept with keep=True>)"
        )
    r, r_ref = draws.num_draws, reference.num_draws
    k, k_ref, cross = draws.grams[group], reference.grams[group], draws.cross[group]
    mean, mean_ref = draws.sums[group] / r, reference.sums[group] / r_ref
    point = (
        ((mean - mean_ref) ** 2).sum() - draws.total_variance(group) / r - reference.total_variance(group) / r_ref
    ).item()
    if norm <= 0:
        return point, math.nan, math.nan, math.nan
    if min(r, r_ref) < 3:  # leaving one draw out of two leaves no pair
        return point, max(point / norm, 0.0) ** 0.5, math.nan, math.nan
    u_g, u_h = _pair_mean(k.sum(), k.trace(), r), norm
    # leave draw r of g out; then leave draw s of h out
    u_g_out = _pair_mean(k.sum() - 2 * k.sum(1) + k.diagonal(), k.trace() - k.diagonal(), r - 1)
    theta_g = (u_g_out + u_h - 2 * (cross.sum() - cross.sum(1)) / ((r - 1) * r_ref)) / u_h
    u_h_out = _pair_mean(k_ref.sum() - 2 * k_ref.sum(1) + k_ref.diagonal(), k_ref.trace() - k_ref.diagonal(), r_ref - 1)
    theta_h = (u_g + u_h_out - 2 * (cross.sum() - cross.sum(0)) / (r * (r_ref - 1))) / u_h_out
    theta, z = point / norm, statistics.NormalDist().inv_cdf((1 + level) / 2)
    half = z * (_jackknife_variance(theta_g) + _jackknife_variance(theta_h)).sqrt().item()
    # a denominator within its own error of 0 leaves the ratio unbounded above (as Fieller's interval)
    hi = max(theta + half, 0.0) ** 0.5 if norm > z * _jackknife_variance(u_h_out).sqrt().item() else math.inf
    return point, max(theta, 0.0) ** 0.5, max(theta - half, 0.0) ** 0.5, hi


def _jackknife_variance(left_out: torch.Tensor) -> torch.Tensor:
    """(n - 1) / n sum_i (t_(-i) - mean)^2: the jackknife variance from the n leave-one-out values."""
    n = len(left_out)
    return (n - 1) / n * (left_out - left_out.mean()).square().sum()


def _pair_mean(total: torch.Tensor, diagonal: torch.Tensor, n: int) -> torch.Tensor:
    """The mean of g_r . g_s over the ordered pairs r != s of n draws, from the sum of their Gram
    matrix (``total``) and its trace (``diagonal``)."""
    return (total - diagonal) / (n * (n - 1))
