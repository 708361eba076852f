"""pyro_vae's VampPrior with pythae's pseudo-input layer, for the pythae row of docs/results.md
(issue #23 item 2: "the 0.5-nat gap at pythae's defaults").

pythae's VAMP makes the pseudo-inputs u_k = hardtanh_[0,1](W e_k + b) with a ``Linear(K, 784)``
that has a bias b and PyTorch's default initialisation (W and b uniform in +-1/sqrt(K));
pyro_vae's ``vampprior`` follows Tomczak & Welling's code: no bias, W ~ N(0.05, 0.01^2). This
script registers ``vampprior-pythae-pseudo``, the VampPrior with pythae's layer (the only
change), and trains it with the pyro_vae command line, so the two parameterisations can be
compared on the same networks, optimizer and data::

    uv run python docs/peers/vamp_pseudo_bias.py --seed 0 --batch-size 64 --lr 1e-4 --epochs 3 \\
        --threads 1 --no-progress -k 1000 --num-test 1000 --data-dir ../shared/data --run-dir runs/vamp-pb-s0

(any ``pyro-vae train`` flag; the model, its 500 components and pythae's default networks,
784-512-40 ReLU, are set here.)
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from pyro_vae.cli import main
from pyro_vae.models import register_model
from pyro_vae.models.priors import VampPriorVAE


@register_model("vampprior-pythae-pseudo")
class PythaePseudoInputs(VampPriorVAE):
    """VampPrior whose pseudo-inputs are hardtanh_[0,1](W e_k + b), W and b as ``nn.Linear``'s defaults (pythae)"""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pseudo_layer = nn.Linear(self.num_components, self.x_dim)  # with a bias, uniform init

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        u = self.pseudo_layer.weight.T + self.pseudo_layer.bias
        return nn.functional.hardtanh(u, 0.0, 1.0).reshape(self.num_components, *self.x_shape)


if __name__ == "__main__":
    sys.exit(main(["train", "--model", "vampprior-pythae-pseudo", "--model-option", "num_components=500",
                   "--hidden", "512", "--z-dim", "40", "--activation", "relu", *sys.argv[1:]]))
