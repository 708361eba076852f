"""Benchmarks: pyro_vae's training step and evaluation against hand-written PyTorch.

Training: both sides train the same networks (copies with identical weights) on
the same minibatch with the same optimizer (Adam). The hand-written step computes
the single-sample SGVB estimate -[log p(x|z) + log p(z) - log q(z|x)] * N/M, or
with K particles the IWAE bound -(N/M) log (1/K) sum_k w_k, in tensor code without
``torch.distributions`` and calls ``backward``; the pyro_vae step is the one
``pyro-vae train`` takes (the ``reparam`` or ``iwae`` estimator's
``loss_and_grads`` on the model and guide, then a torch Adam step; the same update
as ``SVI.step``).

Evaluation: :func:`~pyro_vae.inference.evaluate.evaluate` (the importance-sampled
log p(x) with K samples per image, in chunks) against the same log-weights in
tensor code, with the same batches and chunks.

Start-up: the CPU time (user + system, of a child process) of ``pyro-vae --help``
against ``python -c "import torch, pyro"``, the floor of any command (issue #25:
within 1.3x).

Timings alternate between the two sides in rounds so that both see the same
machine load; the medians are reported.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import pyro
import torch

from pyro_vae.inference import ALGORITHMS, make_estimator
from pyro_vae.inference.evaluate import evaluate
from pyro_vae.inference.jit import compile_estimator, compiles_by_default, data_check
from pyro_vae.models.likelihoods import bernoulli_log_prob
from pyro_vae.models.vae import VAE
from pyro_vae.training.config import TrainConfig
from pyro_vae.validation import COUNT, POSITIVE

LOG_2PI = math.log(2 * math.pi)


def _log_weights(encoder, decoder, x: torch.Tensor, num_particles: int | None) -> torch.Tensor:
    """``log p(x, z_k) - log q(z_k|x)``, shape ``(num_particles, batch)``, z_k reparameterized;
    ``num_particles=None``: one draw, shape ``(batch,)``, with no particle dimension (x and the
    logits then have equal shapes, the fastest case of ``bernoulli_log_prob``)."""
    loc, scale = encoder(x)
    particles = () if num_particles is None else (num_particles,)
    eps = torch.randn((*particles, *loc.shape), dtype=loc.dtype, device=loc.device)
    z = loc + scale * eps
    log_px = bernoulli_log_prob(decoder(z), x)  # the fastest tensor code we know for it
    # log p(z) - log q(z|x): the 2 pi terms cancel
    return log_px - 0.5 * (z**2).sum(-1) + 0.5 * (eps**2).sum(-1) + scale.log().sum(-1)


def handwritten_step(vae: VAE, lr: float, total_size: int, num_particles: int = 1) -> Callable[[torch.Tensor], float]:
    """A plain PyTorch training step on deep copies of ``vae``'s encoder and decoder:
    the ELBO (``num_particles`` = 1) or the K-particle IWAE bound."""
    encoder, decoder = copy.deepcopy(vae.encoder), copy.deepcopy(vae.decoder)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=lr, fused=True)

    def step(x: torch.Tensor) -> float:
        if num_particles == 1:
            bound = _log_weights(encoder, decoder, x, None)
        else:
            bound = torch.logsumexp(_log_weights(encoder, decoder, x, num_particles), 0) - math.log(num_particles)
        loss = -bound.sum() * (total_size / x.shape[0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def pyro_vae_step(
    vae: VAE, lr: float, total_size: int, num_particles: int = 1, jit: bool = False
) -> Callable[[torch.Tensor], float]:
    """The step ``pyro-vae train`` takes after its first (validated) one: the ``aevb``
    algorithm with the ``reparam`` estimator (``iwae`` with K > 1 particles), i.e. its
    ``loss_and_grads`` and a torch Adam step, with Pyro's validation off; with ``jit``,
    the ELBO compiled (:mod:`pyro_vae.inference.jit`)."""
    estimator = make_estimator(_estimator(num_particles), vae, num_particles)
    if jit:
        estimator = compile_estimator(estimator, data_check(vae))
    algorithm = ALGORITHMS["aevb"](vae, estimator, TrainConfig(lr=lr, num_particles=num_particles))

    def step(x: torch.Tensor) -> float:
        with pyro.validation_enabled(False):
            return algorithm.step({"x": x}, total_size)

    return step


@torch.no_grad()
def handwritten_log_px(vae: VAE, x: torch.Tensor, num_samples: int, batch_size: int, chunk_size: int) -> float:
    """Mean importance-sampled log p(x) over ``x`` in tensor code: per batch, the
    log-sum-exp of each chunk of weights, then of the chunks (as ``evaluate`` does)."""
    total = 0.0
    for batch in x.split(batch_size):
        chunks = [
            torch.logsumexp(_log_weights(vae.encoder, vae.decoder, batch, min(chunk_size, num_samples - start)), 0)
            for start in range(0, num_samples, chunk_size)
        ]
        total += (torch.logsumexp(torch.stack(chunks), 0) - math.log(num_samples)).sum().item()
    return total / x.shape[0]


def _time(step: Callable[[], object], repeats: int, cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def _alternate(variants: dict[str, Callable[[], object]], repeats: int, rounds: int, cuda: bool) -> dict[str, float]:
    """Median seconds per call of each variant over ``rounds`` alternating rounds of ``repeats`` calls."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for step in variants.values():  # warm up
        _time(step, max(1, repeats // 5), cuda)
    for _ in range(rounds):
        for name, step in variants.items():
            times[name].append(_time(step, repeats, cuda))
    result = {f"{name}_ms": 1e3 * statistics.median(ts) for name, ts in times.items()}
    result["ratio"] = result["pyro_vae_ms"] / result["handwritten_ms"]
    result["overhead_ms"] = result["pyro_vae_ms"] - result["handwritten_ms"]
    return result


def run_benchmark(
    hidden: Sequence[int] = (500,),
    z_dim: int = 20,
    batch_size: int = 100,
    steps: int = 50,
    rounds: int = 10,
    device: str = "cpu",
    lr: float = 1e-3,
    num_particles: int = 1,
    jit: bool | None = None,
) -> dict[str, float]:
    """Training: median milliseconds per step of each side, their ratio and difference;
    ``jit``: pyro_vae's step with the ELBO compiled or not; ``None``, as ``train`` chooses
    (:func:`~pyro_vae.inference.jit.compiles_by_default`). ``result["jit"]`` says which."""
    COUNT.check(z_dim=z_dim, batch_size=batch_size, steps=steps, rounds=rounds, num_particles=num_particles)
    POSITIVE.check(lr=lr)
    torch.manual_seed(0)
    vae = VAE(784, z_dim=z_dim, hidden=hidden).to(device)
    x = torch.bernoulli(torch.full((batch_size, 784), 0.2, device=device))
    if jit is None:
        jit = compiles_by_default(TrainConfig(estimator=_estimator(num_particles), num_particles=num_particles), VAE)
    variants = {
        "handwritten": handwritten_step(vae, lr, 60000, num_particles),
        "pyro_vae": pyro_vae_step(vae, lr, 60000, num_particles, jit),
    }
    result = _alternate({k: functools.partial(s, x) for k, s in variants.items()}, steps, rounds, x.is_cuda)
    return {**result, "jit": jit}


def _estimator(num_particles: int) -> str:
    """The benchmark's estimator: ``reparam`` for K = 1, else the IWAE bound."""
    return "reparam" if num_particles == 1 else "iwae"


def run_eval_benchmark(
    hidden: Sequence[int] = (200, 200),
    z_dim: int = 50,
    num_images: int = 200,
    num_samples: int = 1000,
    batch_size: int = 100,
    chunk_size: int = 500,
    rounds: int = 5,
    device: str = "cpu",
) -> dict[str, float]:
    """Evaluation: median milliseconds of ``evaluate`` and of the hand-written log-weights for
    ``num_images`` images with K = ``num_samples``, their ratio, and both estimates."""
    COUNT.check(
        z_dim=z_dim,
        num_images=num_images,
        num_samples=num_samples,
        batch_size=batch_size,
        chunk_size=chunk_size,
        rounds=rounds,
    )
    torch.manual_seed(0)
    vae = VAE(784, z_dim=z_dim, hidden=hidden).to(device)
    x = torch.bernoulli(torch.full((num_images, 784), 0.2, device=device))
    estimates: dict[str, float] = {}

    def ours() -> None:
        estimates["pyro_vae_log_px"] = evaluate(vae, x.split(batch_size), num_samples, chunk_size).log_px

    def floor() -> None:
        estimates["handwritten_log_px"] = handwritten_log_px(vae, x, num_samples, batch_size, chunk_size)

    result = _alternate({"handwritten": floor, "pyro_vae": ours}, 1, rounds, x.is_cuda)
    return {**result, **estimates}


STARTUP_COMMANDS = {
    "cli": [sys.executable, "-m", "pyro_vae", "--help"],
    "import": [sys.executable, "-c", "import torch, pyro"],
}


def child_cpu_seconds(argv: Sequence[str]) -> float:
    """User + system CPU seconds that the child process ``argv`` takes (its output discarded)."""
    proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None  # stderr=PIPE (for the type checker)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}: {stderr.decode().strip()}")
    return usage.ru_utime + usage.ru_stime


def run_startup_benchmark(rounds: int = 10) -> dict:
    """Median CPU seconds of ``pyro-vae --help`` and of ``python -c "import torch, pyro"``
    over ``rounds`` alternating runs of each, and their ratio."""
    COUNT.check(rounds=rounds)
    times: dict[str, list[float]] = {name: [] for name in STARTUP_COMMANDS}
    for _ in range(rounds):
        for name, argv in STARTUP_COMMANDS.items():
            times[name].append(child_cpu_seconds(argv))
    cli, floor = statistics.median(times["cli"]), statistics.median(times["import"])
    return {"cli_cpu_s": cli, "import_cpu_s": floor, "ratio": cli / floor, "rounds": rounds, "times": times}
