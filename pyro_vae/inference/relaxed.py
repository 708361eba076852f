"""Relaxed gradients for binary and one-hot latents: the Gumbel-softmax / Concrete relaxation (Jang et al. 2017;
Maddison et al. 2017) and its straight-through variant, as a handler around model and guide.

A Bernoulli latent z with logits l is drawn as its relaxation at temperature tau,

    y = sigmoid((l + log u - log(1 - u)) / tau),   u ~ U(0, 1),

a reparameterized sample in (0, 1) that tends to a draw of Bernoulli(sigmoid(l)) as tau -> 0.
The decoder then sees y, and the log densities of z in model and guide are the Bernoulli ones
evaluated at y, ``y log p + (1 - y) log(1 - p)`` (:class:`SoftBernoulli`), so the objective is
E_y[log p(x|y) + log p(y) - log q(y|x)], whose pathwise gradient (``Trace_ELBO`` on the handled
program) is the estimator. It is **biased**: the objective is not the ELBO at tau > 0, and the
bias shrinks as tau does (at the price of variance; ``tests/inference/test_relaxed.py`` measures
both against the exact gradient). ``straight_through=True`` feeds the hard draw
1[y > 1/2] forward and differentiates through y (Bengio et al. 2013): the forward pass is the
discrete program, the backward one the relaxation's, so it is biased too.

The temperature anneals as Jang et al.'s: tau_t = max(min_temperature, temperature * exp(-anneal_rate
* t)) after t steps (the step count is kept with the estimator's state, so a resumed run goes on
with it). A ``OneHotCategorical`` latent relaxes the same way, y = softmax((l + g) / tau) with g
standard Gumbel and log density sum_k y_k log p_k (:class:`SoftOneHotCategorical`). A
``Categorical`` of indices cannot carry a relaxed value (its code indexes with it) and is refused
by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import cast

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistributionMixin
from pyro.infer import Trace_ELBO
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message
from pyro.poutine.util import site_is_subsample
from torch import nn
from torch.distributions import constraints

from pyro_vae.inference.estimators import Estimator, register_estimator
from pyro_vae.models.program import Program


class _Relaxation:
    """What the relaxed stand-ins share: built from logits with a ``temperature`` and a
    ``straight_through`` switch; a reparameterized draw ``relax(logits, u)`` from uniform noise u,
    or with ``straight_through`` its ``harden``-ed value forward and its gradient backward."""

    has_rsample = True
    has_enumerate_support = False

    def __init__(
        self,
        logits: torch.Tensor,
        temperature: float,
        straight_through: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(logits=logits, validate_args=validate_args)
        self.temperature, self.straight_through = temperature, straight_through

    def relax(self, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def harden(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rsample(self, sample_shape: Sequence[int] = torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        u = torch.rand(shape, dtype=self.logits.dtype, device=self.logits.device).clamp(1e-6, 1 - 1e-6)
        y = self.relax(self.logits.expand(shape), u)
        # hard + (y - stop(y)): exactly the hard value forward ((hard + y) - stop(y) would round off 1),
        # y's gradient backward
        return self.harden(y) + (y - y.detach()) if self.straight_through else y

    def expand(self, batch_shape, _instance=None):
        return type(self)(self.logits.expand(*batch_shape, *self.event_shape), self.temperature, self.straight_through)


class SoftBernoulli(_Relaxation, dist.Bernoulli):
    """Bernoulli(logits) whose draws are its relaxation at ``temperature``, sigmoid((l + logistic
    noise) / tau), and whose log density, ``y log p + (1 - y) log(1 - p)``, takes any y in [0, 1];
    ``straight_through``: the draw is 1[y > 1/2] forward, y backward."""

    arg_constraints = {"logits": constraints.real}
    support = constraints.unit_interval

    def relax(self, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((logits + u.log() - (-u).log1p()) / self.temperature)

    def harden(self, y: torch.Tensor) -> torch.Tensor:
        return (y > 0.5).to(y.dtype)


class SoftOneHotCategorical(_Relaxation, dist.OneHotCategorical):
    """OneHotCategorical(logits) whose draws are its relaxation at ``temperature``,
    ``softmax((l + g) / tau)`` with g standard Gumbel, and whose log density, ``sum_k y_k log p_k``,
    takes any point y of the simplex; ``straight_through``: the one-hot of the largest entry
    forward, y backward."""

    arg_constraints = {"logits": constraints.real_vector}
    support = constraints.simplex  # type: ignore[assignment]  # torch types a OneHotCategorical's support as one-hot only

    def relax(self, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return torch.softmax((logits - (-u.log()).log()) / self.temperature, -1)

    def harden(self, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(y.argmax(-1), y.shape[-1]).to(y.dtype)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return (value * torch.log_softmax(self.logits, -1)).sum(-1)


def _base(fn: TorchDistributionMixin) -> tuple[TorchDistributionMixin, int]:
    """``(base, event dims)``: the distribution under ``Independent`` wrappers and how many dims they add."""
    dims = 0
    while isinstance(fn, dist.Independent):
        dims += fn.reinterpreted_batch_ndims
        fn = fn.base_dist
    return fn, dims


#: The discrete families with a relaxation: ``(family, its relaxed stand-in)``.
RELAXATIONS: tuple[tuple[type, type], ...] = (
    (dist.Bernoulli, SoftBernoulli),
    (dist.OneHotCategorical, SoftOneHotCategorical),
)


class Relaxed(Messenger):
    """Handler: every latent Bernoulli or OneHotCategorical site of the program becomes its relaxed
    stand-in (:data:`RELAXATIONS`) at ``temperature()``; a latent discrete site of another family is
    refused by name."""

    def __init__(self, temperature: Callable[[], float], straight_through: bool = False) -> None:
        super().__init__()
        self.temperature, self.straight_through = temperature, straight_through

    def _pyro_sample(self, msg: Message) -> None:
        if msg["is_observed"] or site_is_subsample(msg):
            return
        base, dims = _base(cast(TorchDistributionMixin, msg["fn"]))  # a Pyro distribution (Message: any callable)
        if isinstance(base, _Relaxation):
            return
        relaxed = next((soft for family, soft in RELAXATIONS if isinstance(base, family)), None)
        if relaxed is not None:
            soft = relaxed(base.logits, self.temperature(), self.straight_through)
            msg["fn"] = soft.to_event(dims) if dims else soft
        elif base.support.is_discrete:
            raise ValueError(
                f"site {msg['name']!r} is a {type(base).__name__}, which has no relaxation here (Bernoulli and "
                "OneHotCategorical latents relax: a Categorical of indices cannot carry a relaxed value); use a "
                "score-function estimator (vimco, score-loo, score-nvil) or enum"
            )


class Temperature(nn.Module):
    """tau_t = max(min_temperature, temperature * exp(-anneal_rate * t)) after t steps; ``t`` is a
    buffer, so it is saved and restored with the estimator's state."""

    steps: torch.Tensor  # the buffer t

    def __init__(self, temperature: float, anneal_rate: float, min_temperature: float) -> None:
        super().__init__()
        for name, value in (("temperature", temperature), ("min_temperature", min_temperature)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not (isinstance(anneal_rate, (int, float)) and math.isfinite(anneal_rate) and anneal_rate >= 0):
            raise ValueError(f"anneal_rate must be a finite number >= 0, got {anneal_rate!r}")
        self.start, self.rate, self.floor = float(temperature), float(anneal_rate), float(min_temperature)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def forward(self) -> float:
        return max(self.floor, self.start * math.exp(-self.rate * int(self.steps)))


class RelaxedELBO(Trace_ELBO):
    """``Trace_ELBO`` of the relaxed program: model and guide run under :class:`Relaxed` (so any
    caller's ``elbo.loss_and_grads(program.model, program.guide, ...)`` gets the relaxed estimate);
    each ``loss_and_grads`` (a training step) counts one step of the temperature's schedule."""

    def __init__(self, temperature: Temperature, straight_through: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.schedule = temperature
        self.handler = Relaxed(temperature, straight_through)

    def _get_trace(self, model, guide, args, kwargs):
        return super()._get_trace(self.handler(model), self.handler(guide), args, kwargs)

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = super().loss_and_grads(model, guide, *args, **kwargs)
        self.schedule.steps += 1
        return loss


def _register(name: str, straight_through: bool, help: str) -> None:
    def build(
        program: Program,
        num_particles: int = 1,
        temperature: float = 1.0,
        anneal_rate: float = 0.0,
        min_temperature: float = 0.5,
    ) -> Estimator:
        schedule = Temperature(temperature, anneal_rate, min(min_temperature, temperature))
        elbo = RelaxedELBO(
            schedule,
            straight_through,
            num_particles=num_particles,
            vectorize_particles=num_particles > 1,
            max_plate_nesting=program.max_plate_nesting,
        )
        varies = (
            f"its temperature anneals (anneal_rate={anneal_rate}), so its draws differ in distribution from step "
            "to step; compare it at one temperature: temperature=T (anneal_rate=0)"
            if anneal_rate > 0 and min_temperature < temperature
            else ""
        )
        return Estimator(name, elbo, program.guide, nn.ModuleDict({"temperature": schedule}), varies=varies)

    register_estimator(name, build, help=help)


_register(
    "gumbel",
    False,
    "Gumbel-softmax / Concrete relaxation of Bernoulli latents, pathwise (Jang et al. 2017; "
    "biased, shrinking with the temperature); options temperature, anneal_rate, min_temperature",
)
_register("gumbel-st", True, "straight-through Gumbel: hard draws forward, the relaxation's gradient backward (biased)")
