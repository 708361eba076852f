"""log p(x) of a VAE trained by Pyro's own ``examples/vae/vae.py``, on pyro_vae's binarized test
images, for the side-by-side row of docs/results.md (issue #23 item 7, "The VAE against Pyro's
examples/vae/vae.py").

Pyro's example (784-400-50, softplus, a diagonal Gaussian q(z|x) with ``scale = exp(.)``, a
sigmoid Bernoulli decoder, p(z) = N(0, I)) is run from a copy outside this repository, patched
only to run offline (MNIST from local raw files, one torch thread, no visdom), to binarize each
training minibatch afresh (``torch.bernoulli``, as pyro_vae), to print the seconds of each
training epoch and to save ``vae.state_dict()`` (see docs/results.md for the patch). This script
rebuilds its encoder and decoder (the same modules, the same parameter names), loads that state
dict and estimates, per test image,

    log p(x) ~= log (1/K) sum_k exp(log p(x|z_k) + log p(z_k) - log q(z_k|x)),  z_k ~ q(z|x),

in chunks of samples, on the first N test images of ``pyro_vae.load_dataset("mnist", ...)``
(binarized once, with ``TEST_BINARIZATION_SEED``: the same tensor pyro_vae scores)::

    uv run python docs/peers/pyro_vae_example.py --state /tmp/peer-vae/pyro-vae-s0.pt \\
        --data-dir /work/shared/data -k 1000 --num-test 1000 --threads 1

It prints one JSON line. Not a test (pytest collects tests/ only).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Encoder(nn.Module):  # Pyro's examples/vae/vae.py, unchanged
    def __init__(self, z_dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(784, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, z_dim)
        self.fc22 = nn.Linear(hidden_dim, z_dim)
        self.softplus = nn.Softplus()

    def forward(self, x):
        hidden = self.softplus(self.fc1(x.reshape(-1, 784)))
        return self.fc21(hidden), torch.exp(self.fc22(hidden))


class Decoder(nn.Module):  # the same, returning logits (sigmoid(logits) is the example's loc_img)
    def __init__(self, z_dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(z_dim, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, 784)
        self.softplus = nn.Softplus()

    def forward(self, z):
        return self.fc21(self.softplus(self.fc1(z)))


class VAE(nn.Module):
    def __init__(self, z_dim: int = 50, hidden_dim: int = 400):
        super().__init__()
        self.encoder = Encoder(z_dim, hidden_dim)
        self.decoder = Decoder(z_dim, hidden_dim)


@torch.no_grad()
def log_px(vae: VAE, x: torch.Tensor, num_samples: int, chunk: int = 100, batch: int = 100) -> torch.Tensor:
    """log p(x) per image: log-mean-exp over K samples of log p(x|z) + log p(z) - log q(z|x)."""
    out = []
    for xb in x.split(batch):
        loc, scale = vae.encoder(xb)
        q = torch.distributions.Normal(loc, scale)
        prior = torch.distributions.Normal(torch.zeros_like(loc), torch.ones_like(scale))
        weights = []
        for k in range(0, num_samples, chunk):
            z = q.sample((min(chunk, num_samples - k),))  # (S, B, z_dim)
            logits = vae.decoder(z)
            # Bernoulli log-likelihood on logits (the example's Bernoulli(probs=sigmoid(.)) in exact arithmetic)
            log_lik = -F.binary_cross_entropy_with_logits(logits, xb.expand_as(logits), reduction="none").sum(-1)
            weights.append(log_lik + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1))
        w = torch.cat(weights)  # (K, B)
        out.append(torch.logsumexp(w, 0) - math.log(num_samples))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True, help="vae.state_dict() saved by the patched example")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("-k", "--num-samples", type=int, default=1000)
    parser.add_argument("--num-test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from pyro_vae import load_dataset

    x = load_dataset("mnist", args.data_dir).test[: args.num_test]
    assert bool(((x == 0) | (x == 1)).all()), "expected the binarized test images"
    vae = VAE()
    vae.load_state_dict(torch.load(args.state, map_location="cpu"))
    vae.eval()
    t0 = time.perf_counter()
    lp = log_px(vae, x, args.num_samples)
    print(json.dumps({"state": args.state, "num_test": len(x), "K": args.num_samples,
                      "log_px": lp.mean().item(), "stderr": (lp.std() / math.sqrt(len(lp))).item(),
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
