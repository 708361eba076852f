"""The ELBO shape shared by the estimators that draw all their particles at once: the
importance-weighted bounds (``iwae``, ``dreg``), the multi-sample score functions (``vimco``,
``score-loo``) and the layer-wise Bernoulli estimators (``arm``, ``disarm``, ``disarm-k``,
``rebar``, ``relax``).

A subclass computes its terms once per call (``_terms(model, guide, args, kwargs)``) and turns
them into ``(surrogate, loss)`` (``_surrogate(*terms)``): a tensor whose gradient is the
estimator's, and the value of the negative bound's estimate, -(N/M) sum_i L_i over the
minibatch. Pyro's loop over particles one trace at a time (``_get_trace``) does not apply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro.infer import ELBO


class SurrogateELBO(ELBO):
    """``loss``, ``differentiable_loss`` and ``loss_and_grads`` of an ELBO whose subclass gives
    ``_terms`` and ``_surrogate`` (module docstring)."""

    def _terms(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> tuple:
        raise NotImplementedError

    def _surrogate(self, *terms: Any) -> tuple[torch.Tensor, float]:
        raise NotImplementedError

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError(f"{type(self).__name__} draws its particles jointly; see _terms")

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """The negative bound's estimate, -(N/M) sum_i L_i (no gradient)."""
        with torch.no_grad():
            return self._surrogate(*self._terms(model, guide, args, kwargs))[1]

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """The surrogate loss, whose gradient is the estimator's (its value is the loss only where
        the estimator's surrogate is the bound itself, as for ``iwae``)."""
        return self._surrogate(*self._terms(model, guide, args, kwargs))[0]

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """Backpropagate the surrogate; return the negative bound's estimate."""
        surrogate, loss = self._surrogate(*self._terms(model, guide, args, kwargs))
        if surrogate.requires_grad:
            surrogate.backward()
        return loss
