"""AEVB: stochastic variational inference with a gradient estimator (the paper's Algorithm 1).

Each step draws the estimator's surrogate loss on a minibatch (its
``loss_and_grads``, exactly what :class:`pyro.infer.SVI` calls) and steps a
torch optimizer over the parameters of the program and the estimator's own
modules: Pyro's PyTorch-native pattern, with no parameter in the global param
store. For Adam and Adagrad this is the same update as ``SVI`` with
``pyro.optim.Adam``/``Adagrad`` (both act element-wise).

A program with an ``auxiliary_loss`` (see :mod:`pyro_vae.models.program`;
M2's alpha-weighted classification term) has it added to each step's loss:
the step minimizes -bound + auxiliary and returns that sum.

The optimizer's schedule, loss scale and gradient clipping are a
:class:`~pyro_vae.inference.stepping.Stepping`'s (per epoch or per step, on the metrics for
``plateau``). With ``config.kl_warmup = W`` the latent terms of the bound are weighted by
beta = min(1, epoch / W) (:mod:`pyro_vae.inference.annealing`); the epoch is the one the
stepping counts and saves, so a resumed run keeps its place in the warm-up.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from pyro_vae.inference.algorithms import ParamScope, register_algorithm
from pyro_vae.inference.annealing import AnnealLatents, warmup_factor
from pyro_vae.inference.estimators import Estimator
from pyro_vae.inference.optim import configured_optimizer
from pyro_vae.inference.stepping import Stepping
from pyro_vae.models.program import Program, member


@register_algorithm("aevb")
class AEVB:
    """AEVB: SVI with the chosen gradient estimator (the default)."""

    anneals = True  # reads config.kl_warmup
    compiles = True  # steps estimator.elbo.loss_and_grads alone, which inference.jit can compile
    global_latents = True  # an ELBO estimator scales the data plate by N/M and the global sites by 1

    def __init__(self, program: Program, estimator: Estimator, config) -> None:
        self.program, self.estimator = program, estimator
        params = [*program.parameters(), *estimator.modules.parameters()]
        self.optimizer = configured_optimizer(params, config)
        self.stepping = Stepping([self.optimizer], config)
        self.scope = ParamScope(params)
        self.auxiliary_loss = member(program, "auxiliary_loss")
        self.kl_warmup = config.kl_warmup

    def beta(self) -> float:
        """The weight of the latent terms in this epoch (1 after the warm-up)."""
        return warmup_factor(self.stepping.epoch, self.kl_warmup)

    def step(self, batch: dict[str, torch.Tensor], total_size: int) -> float:
        beta = self.beta()
        with self.stepping.update(total_size), self.scope, AnnealLatents(beta) if beta < 1 else nullcontext():
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.estimator.elbo.loss_and_grads(
                self.program.model, self.estimator.guide, **batch, total_size=total_size
            )
            extra = self.auxiliary_loss(**batch, total_size=total_size) if self.auxiliary_loss else None
            if extra is not None:
                extra.backward()
                loss += extra.item()
            self.optimizer.step()
        return loss

    def end_epoch(self) -> None:
        self.stepping.end_epoch()

    def observe(self, row: dict) -> None:
        self.stepping.observe(row)

    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.stepping.state_dict(),
            "param_store": self.scope.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        # a checkpoint of 0.1.0 holds the state of its one epoch-wise scheduler as "scheduler"
        self.stepping.load_state_dict(
            state["schedule"] if "schedule" in state else {"schedulers": [state["scheduler"]]}
        )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scope.load_state_dict(state["param_store"])
