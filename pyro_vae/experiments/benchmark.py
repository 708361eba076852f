"""Benchmark: one pyro_vae training step against a hand-written PyTorch step.

Both train the same networks (copies with identical weights) on the same
minibatch with the same optimizer (Adam): the hand-written step computes the
single-sample SGVB estimate -[log p(x|z) + log p(z) - log q(z|x)] * N/M with
``torch.distributions``-free tensor code and calls ``backward``; the pyro_vae
step is the one ``pyro-vae train`` takes (``Trace_ELBO.loss_and_grads`` on the
model and guide, then a torch Adam step; the same update as ``SVI.step``). Timings alternate between the two in
rounds so that both see the same machine load; the medians are reported.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from pyro_vae.inference import ALGORITHMS, make_estimator
from pyro_vae.models.vae import VAE
from pyro_vae.training.config import TrainConfig

LOG_2PI = math.log(2 * math.pi)


def handwritten_step(vae: VAE, lr: float, total_size: int) -> Callable[[torch.Tensor], float]:
    """A plain PyTorch training step on deep copies of ``vae``'s encoder and decoder."""
    encoder, decoder = copy.deepcopy(vae.encoder), copy.deepcopy(vae.decoder)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=lr)

    def step(x: torch.Tensor) -> float:
        loc, scale = encoder(x)
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        log_px = -F.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(-1)
        log_pz = -0.5 * (z**2 + LOG_2PI).sum(-1)
        log_qz = (-0.5 * (eps**2 + LOG_2PI) - scale.log()).sum(-1)
        loss = -(log_px + log_pz - log_qz).sum() * (total_size / x.shape[0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def pyro_vae_step(vae: VAE, lr: float, total_size: int) -> Callable[[torch.Tensor], float]:
    """The step ``pyro-vae train`` takes: the ``aevb`` algorithm with the ``reparam``
    estimator (``Trace_ELBO``'s loss_and_grads, then a torch Adam step)."""
    algorithm = ALGORITHMS["aevb"](vae, make_estimator("reparam", vae), TrainConfig(lr=lr))
    return lambda x: algorithm.step({"x": x}, total_size)


def _time(step: Callable[[torch.Tensor], float], x: torch.Tensor, steps: int) -> float:
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def run_benchmark(
    hidden: Sequence[int] = (500,),
    z_dim: int = 20,
    batch_size: int = 100,
    steps: int = 50,
    rounds: int = 10,
    device: str = "cpu",
    lr: float = 1e-3,
) -> dict[str, float]:
    """Median seconds per step of each variant over ``rounds`` alternating rounds."""
    for name, value in (("z_dim", z_dim), ("batch_size", batch_size), ("steps", steps), ("rounds", rounds)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    torch.manual_seed(0)
    vae = VAE(784, z_dim=z_dim, hidden=hidden).to(device)
    x = torch.bernoulli(torch.full((batch_size, 784), 0.2, device=device))
    variants = {
        "handwritten": handwritten_step(vae, lr, 60000),
        "pyro_vae": pyro_vae_step(vae, lr, 60000),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for name, step in variants.items():  # warm up
        _time(step, x, 10)
    for _ in range(rounds):
        for name, step in variants.items():
            times[name].append(_time(step, x, steps))
    result = {f"{name}_ms": 1e3 * statistics.median(ts) for name, ts in times.items()}
    result["ratio"] = result["pyro_vae_ms"] / result["handwritten_ms"]
    return result
