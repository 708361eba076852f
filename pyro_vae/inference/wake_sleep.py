"""Wake-sleep training of a :class:`~pyro_vae.models.vae.VAE`: the baseline of the AEVB paper's Figures 2 and 3.

The wake-sleep algorithm (Hinton, Dayan, Frey & Neal 1995) fits the same
generative model p_theta(x, z) = p(z) p_theta(x|z) and recognition model
q_phi(z|x) as AEVB, with the same networks, but optimizes two different
objectives, each by a plain stochastic gradient step on a minibatch of M of
the N training points:

* **wake phase** (generative parameters theta: decoder and likelihood)::

      z_i ~ q_phi(z|x_i)                   (no gradient flows through the sample)
      theta <- theta + grad_theta (N/M) sum_i log p_theta(x_i, z_i)

  a Monte Carlo EM step with q in place of the true posterior.

* **sleep phase** (recognition parameters phi: encoder)::

      z_i ~ p(z),  x_i ~ p_theta(x|z_i)    ("dreams"; binary x for a Bernoulli
                                            decoder, Gaussian x for a Gaussian one)
      phi <- phi + grad_phi (N/M) sum_i log q_phi(z_i|x_i)

  which minimizes E_{p_theta(x)} KL(p_theta(z|x) || q_phi(z|x)), the KL in the
  opposite direction to the one the ELBO's phi-gradient minimizes.

Neither phase follows the gradient of one objective, so wake-sleep has no
convergence guarantee; the ELBO log p(x,z) - log q(z|x) at z ~ q(z|x) is
still a valid lower bound on log p(x) and is what is reported, so curves are
comparable with AEVB's. The N/M scaling matches :mod:`pyro_vae.training.loop`, so
``weight_decay=1`` is again a N(0, I) prior on the weights. Each phase has its
own torch optimizer (Adagrad or Adam), both scheduled, scaled and clipped as the config says
(:class:`~pyro_vae.inference.stepping.Stepping`).

:class:`WakeSleepAlgorithm` (``algorithm="wake-sleep"``) and :class:`RWSAlgorithm`
(``algorithm="rws"``, Pyro's :class:`~pyro.infer.ReweightedWakeSleep`,
Bornschein & Bengio 2015; see :func:`rws_step` for what it computes on
minibatches) plug these steps into :func:`pyro_vae.training.loop.train`, which
provides the data, loop, metrics and resumable checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer import ReweightedWakeSleep

from pyro_vae.inference.algorithms import register_algorithm
from pyro_vae.inference.optim import build_optimizer, configured_optimizer
from pyro_vae.inference.stepping import Stepping
from pyro_vae.models.vae import VAE, generated_keyword


# --- parameters and optimizers ---------------------------------------------
def recognition_parameters(vae: VAE) -> list[torch.nn.Parameter]:
    """phi: the encoder's parameters."""
    return list(vae.encoder.parameters())


def generative_parameters(vae: VAE) -> list[torch.nn.Parameter]:
    """theta: every other parameter of the VAE (decoder and likelihood, e.g. a shared log sigma^2)."""
    phi = {id(p) for p in recognition_parameters(vae)}
    return [p for p in vae.parameters() if id(p) not in phi]


def make_optimizers(
    vae: VAE, name: str = "adagrad", lr: float = 0.02, weight_decay: float = 0.0, **options: Any
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """``(decoder_optim, encoder_optim)``: the optimizer ``name`` (with its own keyword ``options``)
    for theta, and one for phi (:func:`~pyro_vae.inference.optim.build_optimizer`)."""
    theta, phi = generative_parameters(vae), recognition_parameters(vae)
    return build_optimizer(theta, name, lr, weight_decay, options=options), build_optimizer(
        phi, name, lr, weight_decay, options=options
    )


# --- the two phases ----------------------------------------------------------
def wake_loss(vae: VAE, x: torch.Tensor, total_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(-(N/M) sum_i log p_theta(x_i, z_i), (N/M) sum_i log q_phi(z_i|x_i))`` with z_i ~ q_phi(z|x_i).

    The guide runs without gradient, so the first value depends on theta only
    (its gradient is the wake update); the second is detached. Their sum is
    the negative single-sample ELBO estimate.
    """
    with torch.no_grad():
        guide_trace = poutine.trace(vae.guide).get_trace(x, total_size=total_size)
        log_q = torch.as_tensor(guide_trace.log_prob_sum())  # log_prob_sum is a float 0 for a trace without sites
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x, total_size=total_size)
    return -torch.as_tensor(model_trace.log_prob_sum()), log_q


def dream(vae: VAE, num_generated: int) -> poutine.Trace:
    """A trace of the model run forward, without gradient: z_i ~ p(z), x_i ~ p_theta(x|z_i)."""
    with torch.no_grad():
        return poutine.trace(vae.model).get_trace(**{generated_keyword(vae.model): num_generated})


def sleep_loss(vae: VAE, num_generated: int, total_size: int | None = None) -> torch.Tensor:
    """``-(N/M) sum_i log q_phi(z_i|x_i)`` on ``num_generated`` dreams (z_i, x_i) ~ p(z) p_theta(x|z).

    The guide is replayed on the dreamed z (``poutine.replay``), so its
    gradient is exactly the sleep update of phi.
    """
    dreams = dream(vae, num_generated)
    x = dreams.nodes[vae.site("x")]["value"]
    guide_trace = poutine.trace(poutine.replay(vae.guide, trace=dreams)).get_trace(x, total_size=total_size)
    return -torch.as_tensor(guide_trace.log_prob_sum())  # log_prob_sum is a float 0 for a trace without sites


def _minimize(loss: torch.Tensor, optim: torch.optim.Optimizer) -> None:
    optim.zero_grad(set_to_none=True)
    loss.backward()
    optim.step()


def wake_step(vae: VAE, x: torch.Tensor, decoder_optim: torch.optim.Optimizer, total_size: int | None = None) -> float:
    """One wake update of theta; returns the negative ELBO estimate before the update."""
    loss, log_q = wake_loss(vae, x, total_size)
    _minimize(loss, decoder_optim)
    return (loss + log_q).item()


def sleep_step(
    vae: VAE, num_generated: int, encoder_optim: torch.optim.Optimizer, total_size: int | None = None
) -> float:
    """One sleep update of phi on ``num_generated`` dreams; returns the sleep loss before the update."""
    loss = sleep_loss(vae, num_generated, total_size)
    _minimize(loss, encoder_optim)
    return loss.item()


def wake_sleep_step(
    vae: VAE,
    x: torch.Tensor,
    decoder_optim: torch.optim.Optimizer,
    encoder_optim: torch.optim.Optimizer,
    total_size: int | None = None,
) -> float:
    """A wake step on the batch ``x`` then a sleep step on as many dreams.

    Returns the negative ELBO estimate ``-(N/M) sum_i [log p(x_i, z_i) - log q(z_i|x_i)]``
    at the wake phase's z_i ~ q(z|x_i), on the same scale as ``SVI.step``.
    """
    loss = wake_step(vae, x, decoder_optim, total_size)
    sleep_step(vae, x.shape[0], encoder_optim, total_size)
    return loss


# --- reweighted wake-sleep with Pyro's ELBO ------------------------------------
def rws_programs(vae: VAE) -> tuple[Callable, Callable]:
    """Model and guide in the calling convention of :class:`~pyro.infer.ReweightedWakeSleep`.

    Its sleep-phi term passes the dreamed data to the guide as
    ``observations={site: value}``; both programs accept that keyword.
    """

    def model(x: torch.Tensor, observations: dict | None = None) -> torch.Tensor:
        return vae.model(x)

    def guide(x: torch.Tensor, observations: dict | None = None) -> torch.Tensor:
        if observations is not None:
            x = observations[vae.site("x")]
        return vae.guide(x)

    return model, guide


def make_rws(vae: VAE, num_particles: int = 5, insomnia: float = 1.0) -> ReweightedWakeSleep:
    """Pyro's RWS objective with K = ``num_particles`` vectorized particles.

    ``insomnia=1`` (the default) trains phi by the wake-phi term only, ``0``
    by the sleep-phi term only (then one dream per datum, since vectorized dreams
    would give the guide a batch of the wrong shape).
    """
    return ReweightedWakeSleep(
        num_particles=num_particles,
        insomnia=insomnia,
        num_sleep_particles=1,
        vectorize_particles=True,
        max_plate_nesting=vae.max_plate_nesting,
    )


def rws_step(
    vae: VAE,
    x: torch.Tensor,
    decoder_optim: torch.optim.Optimizer,
    encoder_optim: torch.optim.Optimizer,
    rws: ReweightedWakeSleep,
    total_size: int | None = None,
) -> float:
    """One step of Pyro's reweighted wake-sleep; returns its wake-theta loss scaled by N/M.

    With z^k ~ q_phi(z|x), log w_k = log p_theta(x, z^k) - log q_phi(z^k|x) and
    normalized weights w~_k, Pyro's RWS minimizes

    * for theta: ``-log (1/K) sum_k w_k`` (the IWAE bound),
    * for phi (wake-phi): ``-sum_k w~_k log q_phi(z^k|x)``, and/or (sleep-phi)
      ``-log q_phi(z|x)`` at (z, x) ~ p_theta.

    **Minibatches.** Pyro documents "Mini-batch training is not supported yet":
    it sums each particle's log-weights over *all* batch dimensions before the
    log-sum-exp, so ``x`` of M data is treated as one datum whose K particles
    are joint draws (z_1^k, ..., z_M^k)::

        log w_k = sum_i [log p(x_i, z_i^k) - log q(z_i^k|x_i)]

    That is still an unbiased estimate of prod_i p(x_i) (so a valid lower bound
    on sum_i log p(x_i)), but with M = 100 one particle gets nearly all the
    weight: the bound gains at most log K over the ELBO of the whole batch
    (instead of up to M log K) and the phi gradient is close to wake-phase
    maximum likelihood on a single draw. It is exact per-datum RWS only for
    batches of one datum. Passing ``total_size`` through the plate would
    multiply log w_k by N/M *inside* the log-sum-exp and sharpen the weights
    further, so the programs run unscaled and the gradients are multiplied by
    N/M afterwards instead (this keeps weight decay a N(0, I) prior).
    """
    model, guide = rws_programs(vae)
    for optim in (decoder_optim, encoder_optim):
        optim.zero_grad(set_to_none=True)
    theta_loss, _ = rws.loss_and_grads(model, guide, x)
    scale = 1.0 if total_size is None else total_size / x.shape[0]
    for optim in (decoder_optim, encoder_optim):
        for group in optim.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.mul_(scale)
        optim.step()
    return theta_loss * scale


# --- algorithms for the training loop -------------------------------------------
@register_algorithm("wake-sleep")
class WakeSleepAlgorithm:
    """wake-sleep (Hinton et al. 1995): two torch optimizers, theta and phi."""

    def __init__(self, program, estimator, config) -> None:
        if tuple(program.data_keys) != ("x",) or not hasattr(program, "encoder"):
            raise ValueError(
                f"{config.algorithm} trains a VAE of x alone with an encoder (its recognition model); "
                f"{type(program).__name__} takes {list(program.data_keys)}: use --algorithm aevb"
            )
        self.program = program
        self.decoder_optim = configured_optimizer(generative_parameters(program), config)
        self.encoder_optim = configured_optimizer(recognition_parameters(program), config)
        self.stepping = Stepping([self.decoder_optim, self.encoder_optim], config)

    def step(self, batch: dict[str, torch.Tensor], total_size: int) -> float:
        with self.stepping.update(total_size):
            return self.update(batch["x"], total_size)

    def update(self, x: torch.Tensor, total_size: int) -> float:
        """One update of theta and phi on the minibatch ``x`` scaled to ``total_size`` data; the loss."""
        return wake_sleep_step(self.program, x, self.decoder_optim, self.encoder_optim, total_size)

    def end_epoch(self) -> None:
        self.stepping.end_epoch()

    def observe(self, row: dict) -> None:
        self.stepping.observe(row)

    def learning_rate(self) -> float:
        return self.decoder_optim.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {
            "decoder": self.decoder_optim.state_dict(),
            "encoder": self.encoder_optim.state_dict(),
            "schedule": self.stepping.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        # a checkpoint of 0.1.0 holds its epoch-wise schedulers' states as "schedulers" (or none, before schedules)
        self.stepping.load_state_dict(state.get("schedule", {"schedulers": state.get("schedulers", [])}))
        self.decoder_optim.load_state_dict(state["decoder"])
        self.encoder_optim.load_state_dict(state["encoder"])


@register_algorithm("rws")
class RWSAlgorithm(WakeSleepAlgorithm):
    """Pyro's reweighted wake-sleep with K = num_particles (>= 2)."""

    splits_batches = False  # one importance weight per minibatch (see rws_step)

    @staticmethod
    def check_config(config) -> None:
        if config.num_particles < 2:
            raise ValueError(f"rws needs num_particles >= 2 (self-normalized weights), got {config.num_particles}")

    def __init__(self, program, estimator, config) -> None:
        super().__init__(program, estimator, config)
        self.rws = make_rws(program, config.num_particles)

    def update(self, x: torch.Tensor, total_size: int) -> float:
        return rws_step(self.program, x, self.decoder_optim, self.encoder_optim, self.rws, total_size)
