"""pythae's VAE, IWAE and VAMP on pyro_vae's binarized MNIST, for the side-by-side rows of
docs/results.md ("Peers side by side"; issue #23 items 2 and 7).

Two steps, two environments (pythae is not a dependency of pyro_vae):

1. ``export``, in pyro_vae's environment: write the training images (grey levels in [0, 1]) and
   the test images binarized once exactly as pyro_vae does (``pyro_vae.data.load_dataset``,
   ``TEST_BINARIZATION_SEED``) to one ``.pt`` file::

       uv run python docs/peers/pythae_peer.py export --data-dir /work/shared/data --out /tmp/vamp-peer/mnist.pt

2. ``train``, in a virtualenv holding pythae (``uv venv /work/pythae-venv --python 3.11 &&
   VIRTUAL_ENV=/work/pythae-venv uv pip install pythae``): one of pythae's models (``--model``),
   trained with pythae's ``BaseTrainer`` (Adam); the training images are binarized afresh
   each time they are drawn (dynamic binarization, as pyro_vae). The models:

   * ``vamp``: ``VAMP`` with pythae's default MLP encoder and decoder (784-512-z, ReLU,
     sigmoid Bernoulli decoder, ``reconstruction_loss="bce"``), ``--num-components`` pseudo-inputs;
   * ``vae``: ``VAE`` (one sample, analytic KL) with ``--hidden`` tanh layers, Burda et al.'s
     784-200-200-50 by default (the encoder's last layer gives mean and log-variance);
   * ``iwae``: ``IWAE`` on the importance-weighted bound with ``--num-particles`` samples,
     the same networks.

   Then log p(x) by importance sampling with K samples on the first N test images, with
   pythae's own ``get_nll`` (despite its name it returns the mean of log p(x) =
   log mean_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x), in chunks of 100 samples per image)
   and, as a check, with the estimator below::

       OMP_NUM_THREADS=1 /work/pythae-venv/bin/python docs/peers/pythae_peer.py train --model vamp \\
           --data /tmp/vamp-peer/mnist.pt --seed 0 --epochs 3 --out /tmp/vamp-peer/pythae-s0

It prints one JSON line with the seconds of each epoch and both estimates.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path


def export(args: argparse.Namespace) -> None:
    import torch

    from pyro_vae.data.dataset import TEST_BINARIZATION_SEED
    from pyro_vae.data.sources import load_dataset

    data = load_dataset("mnist", args.data_dir)  # the test set is binarized here, with TEST_BINARIZATION_SEED
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"train": data.train, "test": data.test, "test_binarization_seed": TEST_BINARIZATION_SEED}, out)
    print(f"wrote {out}: train {tuple(data.train.shape)}, test {tuple(data.test.shape)} "
          f"(binary: {bool(((data.test == 0) | (data.test == 1)).all())})")


def log_prior(model):
    """log p(z) of ``model`` (summed over the last dim of z): pythae's VAMP prior, an
    equal-weight mixture of q(z|u_k) over its pseudo-inputs u_k (computed once), or N(0, I)."""
    import torch

    if not hasattr(model, "pseudo_inputs"):
        return lambda z: log_normal(z, torch.zeros(()), torch.zeros(()))
    C = model.number_components
    pseudo = model.pseudo_inputs(model.idle_input).reshape((C,) + model.model_config.input_dim)
    out = model.encoder(pseudo)
    pm, plv = out.embedding, out.log_covariance  # (C, D)
    return lambda z: torch.logsumexp(log_normal(z.unsqueeze(-2), pm, plv), -1) - math.log(C)


def log_normal(z, mu, log_var):
    """log N(z; mu, diag(exp(log_var))), summed over the last dim."""
    return -0.5 * (z.shape[-1] * math.log(2 * math.pi) + (log_var + (z - mu) ** 2 / log_var.exp()).sum(-1))


def own_log_px(model, x, num_samples: int, chunk: int = 20, batch: int = 100):
    """log p(x) per image, log mean_k exp(log p(x|z_k) + log p(z_k) - log q(z_k|x)), z_k ~ q(z|x),
    with the model's encoder as proposal, its prior (:func:`log_prior`) and its Bernoulli decoder."""
    import torch
    import torch.nn.functional as F

    prior = log_prior(model)
    result = []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        flat = xb.reshape(len(xb), -1)
        out = model.encoder(xb)
        mu, lv = out.embedding, out.log_covariance  # (B, D)
        D = mu.shape[-1]
        terms = []
        for _ in range(num_samples // chunk):
            z = mu + torch.randn(chunk, *mu.shape) * (0.5 * lv).exp()  # (S, B, D)
            probs = model.decoder(z.reshape(-1, D))["reconstruction"].reshape(chunk, len(xb), -1)
            log_px_z = -F.binary_cross_entropy(probs, flat.expand_as(probs), reduction="none").sum(-1)
            terms.append(log_px_z + prior(z) - log_normal(z, mu, lv))
        terms = torch.cat(terms)  # (K, B)
        result.append(torch.logsumexp(terms, 0) - math.log(len(terms)))
    return torch.cat(result)


def mlp_networks(hidden: list[int], z_dim: int):
    """An encoder x -> (mean, log-variance) and a Bernoulli decoder z -> probabilities, tanh
    hidden layers of the sizes ``hidden`` (the decoder's in reverse), in pythae's interface."""
    from torch import nn
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    def mlp(sizes):
        layers = []
        for a, b in zip(sizes[:-2], sizes[1:-1]):
            layers += [nn.Linear(a, b), nn.Tanh()]
        return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))

    class Encoder(BaseEncoder):
        def __init__(self):
            BaseEncoder.__init__(self)
            self.net = mlp([784, *hidden, 2 * z_dim])

        def forward(self, x):
            mean, log_var = self.net(x.reshape(len(x), -1)).chunk(2, -1)
            return ModelOutput(embedding=mean, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self):
            BaseDecoder.__init__(self)
            self.net = mlp([z_dim, *reversed(hidden), 784])

        def forward(self, z):
            return ModelOutput(reconstruction=self.net(z).sigmoid().reshape(len(z), 1, 28, 28))

    return Encoder(), Decoder()


def build_model(args: argparse.Namespace):
    """The pythae model ``args.model`` names (see the module docstring)."""
    from pythae.models import IWAE, VAE, VAMP, IWAEConfig, VAEConfig, VAMPConfig

    common = dict(input_dim=(1, 28, 28), latent_dim=args.z_dim, reconstruction_loss="bce")
    if args.model == "vamp":  # default encoder and decoder: pythae.models.nn.default_architectures
        return VAMP(VAMPConfig(**common, number_components=args.num_components, linear_scheduling_steps=0))
    encoder, decoder = mlp_networks(args.hidden, args.z_dim)
    if args.model == "iwae":
        return IWAE(IWAEConfig(**common, number_samples=args.num_particles), encoder=encoder, decoder=decoder)
    return VAE(VAEConfig(**common), encoder=encoder, decoder=decoder)


def train(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    import pythae
    from pythae.data.datasets import BaseDataset, DatasetOutput
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    class DynamicallyBinarized(BaseDataset):
        """Each image binarized afresh when drawn (torch's global RNG, seeded by the trainer)."""

        def __getitem__(self, index):
            return DatasetOutput(data=torch.bernoulli(self.data[index]), labels=self.labels[index])

    class EpochTimer(TrainingCallback):
        def __init__(self):
            self.seconds, self.start = [], None

        def on_epoch_begin(self, training_config, **kwargs):
            self.start = time.perf_counter()

        def on_epoch_end(self, training_config, **kwargs):
            self.seconds.append(time.perf_counter() - self.start)

    blob = torch.load(args.data)
    train_x = blob["train"].reshape(-1, 1, 28, 28)
    test_x = blob["test"][: args.num_test].reshape(-1, 1, 28, 28)

    torch.manual_seed(args.seed)
    model = build_model(args)
    training = BaseTrainerConfig(output_dir=args.out, num_epochs=args.epochs, learning_rate=args.lr,
                                 per_device_train_batch_size=args.batch_size, optimizer_cls="Adam",
                                 seed=args.seed, no_cuda=True)
    timer = EpochTimer()
    trainer = BaseTrainer(model, DynamicallyBinarized(train_x, torch.zeros(len(train_x))),
                          training_config=training, callbacks=[timer])
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0

    model.eval()  # the model after the last epoch (trained in place)
    with torch.no_grad():
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        nll = model.get_nll(test_x, n_samples=args.num_samples, batch_size=100)
        get_nll_seconds = time.perf_counter() - t0
        torch.manual_seed(args.seed + 1)
        t0 = time.perf_counter()
        own = own_log_px(model, test_x, args.num_samples).mean().item()
        own_seconds = time.perf_counter() - t0
    row = {"side": "pythae", "model": args.model, "pythae": getattr(pythae, "__version__", "0.1.2"),
           "torch": torch.__version__, "seed": args.seed, "epochs": args.epochs,
           "epoch_seconds": [round(s, 1) for s in timer.seconds],
           "train_seconds": round(train_seconds, 1), "K": args.num_samples, "num_test": len(test_x),
           "log_px_get_nll": round(float(nll), 2), "log_px_own": round(own, 2),
           "get_nll_seconds": round(get_nll_seconds, 1), "own_seconds": round(own_seconds, 1)}
    print(json.dumps(row), flush=True)
    with open(Path(args.out) / "result.json", "w") as f:
        json.dump(row, f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write pyro_vae's MNIST tensors (pyro_vae's environment)")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--out", required=True)
    t = sub.add_parser("train", help="train and score one of pythae's models (pythae's environment)")
    t.add_argument("--model", choices=("vae", "iwae", "vamp"), default="vamp")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--z-dim", type=int, default=40)
    t.add_argument("--hidden", type=int, nargs="+", default=[200, 200], help="vae, iwae: tanh layers")
    t.add_argument("--num-particles", type=int, default=5, help="iwae: samples of the bound")
    t.add_argument("--num-components", type=int, default=500, help="vamp: pseudo-inputs")
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("-k", "--num-samples", type=int, default=1000)
    t.add_argument("--num-test", type=int, default=1000)
    t.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    {"export": export, "train": train}[args.command](args)


if __name__ == "__main__":
    main()
