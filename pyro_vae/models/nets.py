"""Neural networks of the AEVB paper, as plain ``torch.nn`` modules.

Nothing here knows about Pyro: the encoder and decoder can be reused in any
PyTorch program. :mod:`pyro_vae.models.vae` wraps them into a Pyro model/guide pair.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast, overload

import torch
import torch.nn.functional as F
from torch import nn

from pyro_vae.registry import Registry
from pyro_vae.validation import COUNT, Rule, check_arguments, check_parameters_fit, finite, is_int

#: The largest ``init_std`` taken: wider weights saturate every unit (see :data:`INIT_STD`).
MAX_INIT_STD = 1.0
#: The range of an ``init_std`` (``None``: PyTorch's initialisation), declared once for the
#: :class:`~pyro_vae.models.vae.VAE`'s argument and ``TrainConfig``'s field.
INIT_STD: tuple[Rule, ...] = (
    finite("> 0 (or None)", lambda std: std > 0),
    Rule(
        f"be <= {MAX_INIT_STD}: weights that large saturate every unit and overflow the encoder's scale "
        "exp(log sigma^2 / 2) at the first step (the paper: 0.01)",
        lambda std: std <= MAX_INIT_STD,
    ),
)


def check_sizes(x_shape: Sequence[int], z_dim: int, hidden: Sequence[int]) -> None:
    """Raise ``ValueError`` unless every data dimension, ``z_dim`` and hidden size is an integer >= 1."""
    if not all(is_int(d) and d >= 1 for d in x_shape) or len(x_shape) == 0:
        raise ValueError(f"x_shape must be positive integers, got {tuple(x_shape)}")
    if not is_int(z_dim) or z_dim < 1:
        raise ValueError(f"z_dim must be an integer >= 1, got {z_dim!r}")
    if not all(is_int(h) and h >= 1 for h in hidden):
        raise ValueError(f"hidden layer sizes must be integers >= 1, got {tuple(hidden)}")


def mlp_weight_count(sizes: Sequence[int]) -> int:
    """Weights and biases of an MLP with layer sizes ``sizes`` (input, hidden..., output)."""
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


#: The activations of the networks' hidden layers by name (``activation=``).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


def activation(name: str) -> nn.Module:
    """Return a fresh activation module by name (one of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}") from None


#: Weight initialisations by name (``TrainConfig.init``), each applied in place to a program's
#: affine layers after it is built (:func:`initialize`); ``init_std`` is the separate N(0, std^2) start.
INITIALIZATIONS: Registry[Callable[[nn.Linear], None]] = Registry("initialization")


@INITIALIZATIONS.register("torch")
def torch_default(layer: nn.Linear) -> None:
    """PyTorch's own: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), left as built"""


@INITIALIZATIONS.register("glorot")
def glorot(layer: nn.Linear) -> None:
    """Glorot & Bengio (2010), as Burda et al. (2016): W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)); b = 0"""
    nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def initialize(module: nn.Module, name: str) -> None:
    """Re-initialise every :class:`~torch.nn.Linear` layer of ``module`` (in ``modules()`` order,
    so the draws follow the seed) by the registered initialisation ``name``."""
    init = INITIALIZATIONS[name]
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            init(layer)


class MLP(nn.Sequential):
    """Multi-layer perceptron ``in_dim -> hidden... -> out_dim``.

    The hidden layers use ``activation``; the output layer is affine. With
    ``hidden=()`` it is a single linear map. ``init_std`` draws every weight
    from N(0, init_std^2) and sets biases to zero (the paper uses 0.01);
    ``None`` keeps PyTorch's default initialisation.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        activation_name: str = "tanh",
        init_std: float | None = None,
    ) -> None:
        check_arguments(MLP.__init__, in_dim=in_dim, hidden=hidden, out_dim=out_dim, init_std=init_std)
        sizes = [in_dim, *hidden, out_dim]
        check_sizes((in_dim, out_dim), 1, hidden)
        check_parameters_fit(mlp_weight_count(sizes), f"the MLP {'-'.join(map(str, sizes))}")
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i > 0:
                layers.append(activation(activation_name))
            layers.append(nn.Linear(n_in, n_out))
        super().__init__(*layers)
        if init_std is not None:
            for layer in self:
                if isinstance(layer, nn.Linear):
                    nn.init.normal_(layer.weight, 0.0, init_std)
                    nn.init.zeros_(layer.bias)

    @overload
    def __getitem__(self, index: slice) -> nn.Sequential: ...
    @overload
    def __getitem__(self, index: int) -> nn.Module: ...
    def __getitem__(self, index: int | slice) -> nn.Module:
        """A layer, or for a slice the layers as a plain :class:`~torch.nn.Sequential`."""
        if isinstance(index, slice):
            return nn.Sequential(*list(self)[index])
        return super().__getitem__(index)

    def run(self, x: torch.Tensor, code: torch.Tensor | None = None, stop: int | None = None) -> torch.Tensor:
        """The layers ``self[:stop]`` (all by default) applied to ``x``, or to ``[x, code]``.

        With a ``code`` the input is the concatenation :func:`with_code` of ``x`` and
        ``code`` (their leading dimensions broadcast). Where the broadcast repeats ``x``
        (M2's ten enumerated classes for each image), the first affine layer is computed
        as ``W_x x + W_c code + b`` with ``W = [W_x, W_c]``, so that each ``x`` is
        multiplied once instead of once per code (M2 on MNIST: a tenth of that layer's
        multiply-adds). Otherwise one product with the concatenation is the faster.
        """
        layers = list(self)[:stop]
        if code is not None:
            if not layers:
                return with_code(x, code)
            first, *layers = layers
            assert isinstance(first, nn.Linear)  # an MLP's first layer is affine (for the type checker)
            if x.shape[-1] + code.shape[-1] != first.in_features:
                raise ValueError(
                    f"[x, code] has {x.shape[-1]} + {code.shape[-1]} features, the first layer takes {first.in_features}"
                )
            if torch.broadcast_shapes(x.shape[:-1], code.shape[:-1]) == x.shape[:-1]:
                x = first(with_code(x, code))
            else:
                w_x, w_code = first.weight.split([x.shape[-1], code.shape[-1]], dim=-1)
                x = F.linear(x, w_x, first.bias) + F.linear(code.to(w_code.dtype), w_code)
        for layer in layers:
            x = layer(x)
        return x


def with_code(h: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """``[h, code]`` along the last dimension, broadcasting their leading (batch, particle) dimensions."""
    shape = torch.broadcast_shapes(h.shape[:-1], code.shape[:-1])
    return torch.cat([h.expand(*shape, h.shape[-1]), code.expand(*shape, code.shape[-1])], dim=-1)


class GaussianEncoder(nn.Module):
    """The paper's Gaussian MLP recognition network q(z|x) = N(mu(x), diag sigma^2(x)).

    ``x`` of shape ``(..., x_dim)`` goes through an MLP whose output is split
    into ``mu`` and ``log sigma^2`` (Appendix C.2); returns ``(loc, scale)``,
    each of shape ``(..., z_dim)``, with ``scale = exp(log sigma^2 / 2)``.
    :meth:`features` exposes the last hidden layer h(x), e.g. for a flow
    conditioned on it.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden: Sequence[int] = (500,),
        activation_name: str = "tanh",
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        COUNT.check(z_dim=z_dim)
        self.z_dim = z_dim
        self.net = MLP(x_dim, hidden, 2 * z_dim, activation_name, init_std)

    @property
    def num_features(self) -> int:
        """Width of :meth:`features`."""
        return cast(nn.Linear, self.net[-1]).in_features

    def features(self, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        """h(x): the activations of the last hidden layer (``x`` itself without hidden layers);
        with a ``code``, h([x, code]) (:meth:`MLP.run`), as a conditional encoder q(z|x, y) needs."""
        return self.net.run(x, code, stop=-1)

    def head(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, scale)`` from the features h(x)."""
        loc, log_var = self.net[-1](h).split(self.z_dim, dim=-1)
        return loc, torch.exp(0.5 * log_var)

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.features(x, code))
