"""Monte Carlo EM with Hamiltonian Monte Carlo for the E-step: the AEVB paper's
third method in Figure 3.

For a minibatch x_1..x_M and the current decoder theta:

* **E-step**: draw z_i ~ p_theta(z | x_i) by Hamiltonian Monte Carlo, with
  Pyro's leapfrog integrator and one Metropolis test per datum (:func:`e_step`);
* **M-step**: one gradient step on theta maximizing (N/M) sum_i log p_theta(x_i, z_i).

MCEM has no recognition model. So that its marginal likelihood can be
estimated by importance sampling like the other methods', the encoder is fitted
as a proposal by the sleep phase of :mod:`pyro_vae.inference.wake_sleep` (it never
influences theta).
"""

from __future__ import annotations

import torch
from pyro.ops.integrator import velocity_verlet

from pyro_vae.inference.algorithms import register_algorithm
from pyro_vae.inference.wake_sleep import WakeSleepAlgorithm, sleep_step
from pyro_vae.models.vae import VAE


def log_joint(vae: VAE, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(z_i) + log p_theta(x_i | z_i) per datum, from the VAE's prior and decoder directly
    (HMC evaluates it a hundred times per E-step, so it skips Pyro's tracing)."""
    return vae.prior().log_prob(z) + vae.decode(z).log_prob(x)


def e_step(
    vae: VAE,
    x: torch.Tensor,
    step_size: float = 0.05,
    num_steps: int = 10,
    num_transitions: int = 10,
) -> torch.Tensor:
    """One draw z_i ~ p(z | x_i) per datum after ``num_transitions`` HMC transitions from z = 0.

    Each transition draws momenta r ~ N(0, I), runs Pyro's leapfrog integrator
    (:func:`pyro.ops.integrator.velocity_verlet`) for ``num_steps`` steps on the
    potential U = sum_i U_i, U_i(z_i) = -log p(z_i) - log p_theta(x_i | z_i),
    and accepts or rejects *each datum's* proposal with its own Metropolis
    probability min(1, exp(H_i - H_i')), ``H_i = U_i + |r_i|^2 / 2``. The step size
    is drawn per chain from U(0.5, 1.5) * ``step_size``: a fixed trajectory
    length can resonate with a posterior scale and then barely move.
    The M chains are thus independent, as if run one by one; a single joint
    accept/reject (Pyro's ``HMC`` kernel on the stacked z) would reject ever more
    often as M grows.
    """

    def energies(z: torch.Tensor) -> torch.Tensor:
        return -log_joint(vae, x, z)

    def potential_fn(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return energies(params["z"]).sum()

    z = torch.zeros(x.shape[0], vae.z_dim, device=x.device)
    for _ in range(num_transitions):
        r = torch.randn_like(z)
        step = step_size * (0.5 + torch.rand_like(z[:, :1]))
        with torch.no_grad():
            h = energies(z) + 0.5 * (r**2).sum(-1)
        proposal, r_new, _, _ = velocity_verlet({"z": z}, {"z": r}, potential_fn, lambda r: r, step, num_steps)
        with torch.no_grad():
            h_new = energies(proposal["z"]) + 0.5 * (r_new["z"] ** 2).sum(-1)
            accept = torch.rand_like(h).log() < h - h_new  # NaN energies are rejected
            z = torch.where(accept.unsqueeze(-1), proposal["z"], z)
    return z.detach()


@register_algorithm("mcem")
class MCEMAlgorithm(WakeSleepAlgorithm):
    """Monte Carlo EM with an HMC E-step (the encoder, fitted by sleep steps, is only the IS proposal)."""

    def update(self, x: torch.Tensor, total_size: int) -> float:
        z = e_step(self.program, x)
        loss = -log_joint(self.program, x, z).sum() * (total_size / x.shape[0])
        self.decoder_optim.zero_grad(set_to_none=True)
        loss.backward()
        self.decoder_optim.step()
        sleep_step(self.program, x.shape[0], self.encoder_optim, total_size)
        return loss.item()
